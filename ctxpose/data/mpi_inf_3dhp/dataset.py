"""MPI-INF-3DHP test samples over a processed folder, interchangeable with ``Human36MDataset`` items.

Each kept frame is one single-view sample. The annotations are in the test camera's frame (x right, y down,
z forward, mm); the samples' "world" is that frame turned upright (:data:`WORLD_TO_CAMERA`: world x = camera
x, world y = camera z, world z = -camera y, so z points up as in Human3.6M, whose cuboids, rotation axis and
learned volumes assume it). ``keypoints_3d``, ``root`` and ``R`` are in that world; :meth:`to_camera` turns
world points (predictions) back into the camera frame, which the official evaluation and the export use. The
cuboid's root is the ground-truth pelvis of ``annot3`` (the zero-shot protocol) or comes from an estimates
file (a camera-frame ``predictions.npz`` of ``ctxpose eval --dataset 3dhp``, matched by the sample ids and
names, so it may cover more frames or sequences in any order). The test set has one camera per sequence, so
these estimates are single-view (keyed by frame and camera); there is no multi-view 3DHP data here.

Ids: ``subject_idx`` indexes ``subject_names`` = TS1..TS6 (always all six, so ``subject_idx`` = TS number
- 1), ``action_idx`` indexes the 7 activity names (activity - 1), ``camera_idx`` the cameras ("cam_8" for
TS1-4, "GOPR0046" for TS5-6), ``trial`` is 0, ``frame`` the 0-based annotation frame.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from ctxpose.data import transforms as T
from ctxpose.data.mpi_inf_3dhp import metadata
from ctxpose.data.mpi_inf_3dhp.cameras import camera_name
from ctxpose.data.mpi_inf_3dhp.labels import load_3dhp_labels
from ctxpose.data.predictions import load_root_predictions
from ctxpose.errors import DataError
from ctxpose.geometry.cameras import projection_matrix
from ctxpose.skeleton import H36M_CONTEXTPOSE

logger = logging.getLogger(__name__)

GROUND_TRUTH_COLUMNS = {"univ_annot3": "keypoints_3d_univ", "annot3_nonstandard": "keypoints_3d"}

#: World -> test camera rotation of the samples (``x_cam = R @ x_world``): the camera frame turned upright.
WORLD_TO_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


class MPIInf3DHPDataset(Dataset):
    """The processed MPI-INF-3DHP test set.

    Args:
        root: folder written by ``ctxpose preprocess 3dhp``.
        image_shape: (H, W) of the returned crops (resized when the stored crops differ); default the crops'.
        sequences: "TS1".."TS6" to use (default all in the folder).
        include_invalid: also the frames preprocessed with ``--all-frames`` whose ``valid_frame`` is 0 (never
            part of the evaluation).
        root_estimates: None for the ground-truth pelvis (``annot3``); else our ``predictions.npz`` whose
            ``keypoints_3d`` pelvis becomes the cuboid root, matched by sample ids (any superset, any order;
            see :func:`ctxpose.data.predictions.load_root_predictions`).

    Items are dicts of numpy arrays with the keys, shapes and dtypes of ``Human36MDataset`` items, V = 1:
    ``images`` (1, 3, H, W) float32 normalised BGR; ``proj_matrices`` (1, 3, 4) world mm -> crop px; ``K``
    (1, 3, 3), ``R`` (1, 3, 3) = :data:`WORLD_TO_CAMERA`, ``t`` (1, 3) = 0; ``camera_indices`` (1,);
    ``keypoints_3d`` (17, 3) float32 ``annot3`` in the contextpose17 order, upright world mm; ``validity`` (17,)
    ones; ``root`` (3,) world mm; ``rotation`` () 0; ``index``, ``subject_idx``, ``action_idx``, ``trial``,
    ``camera_idx``, ``frame`` int64.

    Raises:
        DataError: not a processed 3DHP folder, unknown sequences, or estimates that do not fit.
    """

    split = "test"

    def __init__(self, root: str | Path, image_shape: tuple[int, int] | None = None,
                 sequences: tuple[str, ...] | None = None, include_invalid: bool = False,
                 root_estimates: str | Path | None = None) -> None:
        self.root = Path(root)
        cols, self.meta = load_3dhp_labels(self.root / "labels.npz")
        present = [s for s in metadata.SEQUENCES if s in set(cols["sequence"].tolist())]
        wanted = list(sequences) if sequences else present
        missing = [s for s in wanted if s not in present]
        if missing:
            raise DataError(f"{self.root}: sequences {missing} are not in the labels (found {present})")
        keep = np.isin(cols["sequence"], wanted) & (cols["valid"] | include_invalid)
        order = np.flatnonzero(keep)
        order = order[np.lexsort((cols["frame"][order], [metadata.SEQUENCES.index(s) for s in
                                                          cols["sequence"][order]]))]
        self._rows = {k: np.ascontiguousarray(v[order]) for k, v in cols.items()}
        self.subject_names: list[str] = list(metadata.SEQUENCES)
        self.action_names: list[str] = list(metadata.ACTIVITIES)
        self.camera_names: list[str] = list(dict.fromkeys(camera_name(s) for s in metadata.SEQUENCES))
        self.image_shape = tuple(int(v) for v in image_shape) if image_shape else (int(self.meta["image_size"]),) * 2
        seq = np.array([self.subject_names.index(s) for s in self._rows["sequence"]], dtype=np.int64)
        cams = np.array([self.camera_names.index(camera_name(s)) for s in self.subject_names], dtype=np.int64)
        self._ids = {"subject_idx": seq, "action_idx": self._rows["activity"].astype(np.int64) - 1,
                     "trial": np.zeros(len(seq), np.int64), "camera_idx": cams[seq],
                     "frame": self._rows["frame"].astype(np.int64)}
        self.skeleton = H36M_CONTEXTPOSE  # labels hold our joint order (and the 3DHP one beside it)
        self.root_source = "annot3" if root_estimates is None else str(root_estimates)
        self._roots = None
        if root_estimates is not None:  # the file is in the camera frame (what `ctxpose eval` writes for 3DHP)
            self._roots = self.to_world(load_root_predictions(root_estimates, self)).astype(np.float32)
        logger.info("MPI-INF-3DHP: %d samples of %s from %s (root: %s)", len(self), wanted, self.root,
                    self.root_source)

    # ------------------------------------------------------------------ frames

    @staticmethod
    def to_camera(points_world: np.ndarray) -> np.ndarray:
        """(..., 3) upright-world points -> the test camera's frame (``x_cam = R x_world``), mm."""
        return np.asarray(points_world, dtype=np.float64) @ WORLD_TO_CAMERA.T

    @staticmethod
    def to_world(points_camera: np.ndarray) -> np.ndarray:
        """(..., 3) camera-frame points -> the samples' upright world, mm."""
        return np.asarray(points_camera, dtype=np.float64) @ WORLD_TO_CAMERA

    # ------------------------------------------------------------------ columns

    def __len__(self) -> int:
        return len(self._rows["frame"])

    @property
    def sequence(self) -> np.ndarray:
        """(N,) "TS1".. per sample."""
        return self._rows["sequence"]

    @property
    def activity(self) -> np.ndarray:
        """(N,) int64 activity 1..7 per sample."""
        return self._rows["activity"].astype(np.int64)

    def ground_truth(self, kind: str = "univ_annot3", index: np.ndarray | None = None) -> np.ndarray:
        """(N, 17, 3) float64 ground truth in the contextpose17 order, camera mm.

        Args:
            kind: "univ_annot3" (the official evaluation's) or "annot3_nonstandard".
            index: sample indices (e.g. a ``predictions.npz`` ``index``); default all samples.
        """
        if kind not in GROUND_TRUTH_COLUMNS:
            raise DataError(f"ground truth {kind!r}: expected one of {sorted(GROUND_TRUTH_COLUMNS)}")
        values = self._rows[GROUND_TRUTH_COLUMNS[kind]].astype(np.float64)
        return values if index is None else values[np.asarray(index, dtype=np.int64)]

    def image_paths(self) -> np.ndarray:
        """(N,) str path of each sample's crop, relative to :attr:`root`."""
        return self._rows["image"].astype(str)

    def sample_ids(self) -> dict[str, np.ndarray]:
        """(N,) int64 ids per sample: subject_idx, action_idx, trial, camera_idx, frame."""
        return {k: v.copy() for k, v in self._ids.items()}

    def split_frame_positions(self) -> tuple[np.ndarray, int]:
        """Not applicable: the released Human3.6M results (``.pkl``) are not 3DHP estimates."""
        raise DataError("MPI-INF-3DHP root estimates must be a predictions.npz (index, keypoints_3d), not the "
                        "released Human3.6M results")

    # ------------------------------------------------------------------ items

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        path = self.root / str(self._rows["image"][index])
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{path}: image missing or unreadable")
        K = self._rows["K"][index]
        if image.shape[:2] != self.image_shape:
            image, K = T.crop_and_resize(image, K, None, self.image_shape)
        K = np.asarray(K, np.float64)[None]
        R, t = WORLD_TO_CAMERA[None], np.zeros((1, 3))
        keypoints = self.to_world(self._rows["keypoints_3d"][index]).astype(np.float32)
        root = self._roots[index] if self._roots is not None else keypoints[self.skeleton.root]
        ids = {k: int(v[index]) for k, v in self._ids.items()}
        return {
            "images": T.normalize_to_tensor(image)[None],
            "proj_matrices": projection_matrix(K, R, t).astype(np.float32),
            "K": K.astype(np.float32), "R": R.astype(np.float32), "t": t.astype(np.float32),
            "camera_indices": np.array([ids["camera_idx"]], dtype=np.int64), "keypoints_3d": keypoints,
            "validity": np.ones(len(keypoints), np.float32), "root": np.asarray(root, np.float32),
            "rotation": np.float32(0.0), "index": np.int64(index), **{k: np.int64(v) for k, v in ids.items()},
        }
