"""Human3.6M dataset over processed crops (ours) or the original repository's processed layout.

Layouts (chosen by ``format``; ``"auto"`` picks ours when ``<root>/labels.npz`` exists):

- ``"ctxpose"``: ``<root>/labels.npz`` (:mod:`ctxpose.data.labels`, one row per (frame, camera)) and square
  undistorted crops ``<root>/images/...``; an item is ``cv2.imread`` + normalisation (+ a resize when the
  crop size differs from ``image_shape``).
- ``"original"``: ``<root>/<S>/<Action-trial>/imageSequence[-undistorted]/<camera>/img_%06d.jpg`` full frames
  and ``human36m-multiview-labels-GTbboxes.npy`` (one row per frame, all cameras). Each view is loaded as the
  original ``Human36MMultiViewDataset`` does: box TLBR -> LTRB, ``scale_bbox``, crop (zero padding),
  INTER_AREA resize to ``image_shape``; an empty box means the view is missing.

Sample selection mirrors the original: the split's subjects; ``with_damaged_actions=False`` drops S9
Greeting-2, SittingDown-2 and Waiting-1; ``retain_every_n_frames_in_test`` keeps every n-th frame of the
val split; ``ignore_cameras`` drops views. With ``max_n_views == 1`` (the paper setting, the original's
``Human36MSingleViewDataset``) each (frame, camera) is one sample with V=1, ordered by frame then camera.
Otherwise a sample is a frame (the original's ``Human36MMultiViewDataset``) with V views: with
``randomize_n_views`` V is drawn per epoch in ``min_n_views..max_n_views`` (so a batch has one V, as the
original's collate) and the views are a random subset of the frame's cameras; without it V is
``max_n_views`` (``None``: every camera not ignored) and the views are the first V cameras in camera
order. A frame with fewer cameras than V (S11 Directions-2 lacks camera 54138969) repeats its own views
to fill V (the original instead cuts the whole batch to its smallest view count, so a frame's result
would depend on its batch neighbours); one with fewer cameras than ``min_n_views`` is left out (e.g. 2
for the triangulation models, which need two distinct views). All randomness (views, the training cuboid
rotation) comes from a generator seeded with (seed, epoch, sample index), never from workers or processes.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ctxpose.config import ExperimentConfig
from ctxpose.data import transforms as T
from ctxpose.data.h36m.metadata import damaged_ground_truth
from ctxpose.data.predictions import load_npy_object, load_root_predictions
from ctxpose.errors import DataError
from ctxpose.geometry.cameras import projection_matrix
from ctxpose.skeleton import H36M_CONTEXTPOSE, Skeleton, get_skeleton

logger = logging.getLogger(__name__)

ORIGINAL_LABELS_NAME = "human36m-multiview-labels-GTbboxes.npy"


def _subject_key(name: str) -> tuple[int, str]:
    return (int(name[1:]), name) if name[1:].isdigit() else (10**6, name)


def _codes(values: np.ndarray, names: list[str]) -> np.ndarray:
    """Index of each value in ``names`` (vectorised ``names.index``)."""
    uniq, inverse = np.unique(values, return_inverse=True)
    return np.array([names.index(str(u)) for u in uniq], dtype=np.int64)[inverse.reshape(-1)]


def _read_ctxpose(root: Path, skeleton: Skeleton) -> dict[str, Any]:
    from ctxpose.data.labels import load_labels

    lab = load_labels(root / "labels.npz")
    made_with = lab.meta.get("skeleton", H36M_CONTEXTPOSE.name)  # labels that predate the key used this one
    if made_with != skeleton.name or lab.keypoints_3d.shape[1] != skeleton.num_joints:
        raise DataError(f"{root / 'labels.npz'}: labels of skeleton {made_with!r} with "
                        f"{lab.keypoints_3d.shape[1]} joints, expected {skeleton.name!r} with {skeleton.num_joints} "
                        "(model.skeleton); preprocess again with that skeleton")
    subjects = sorted(set(lab.subject.tolist()), key=_subject_key)
    actions = sorted(set(lab.action.tolist()))
    cams = dict(zip(lab.camera_index.tolist(), lab.camera.tolist(), strict=True))
    camera_names = [cams.get(i, f"camera{i}") for i in range(max(cams) + 1)] if cams else []
    return {
        "subject_names": subjects, "action_names": actions, "camera_names": camera_names,
        "subject_idx": _codes(lab.subject, subjects), "action_idx": _codes(lab.action, actions),
        "trial": lab.trial, "camera_idx": lab.camera_index, "frame": lab.frame,
        "keypoints_3d": lab.keypoints_3d, "bbox": np.zeros((len(lab), 4), np.int64),
        "K": lab.K, "R": lab.R, "t": lab.t, "image": lab.image,
    }


def _read_original(root: Path, labels_path: Path, undistort: bool, scale: float,
                   skeleton: Skeleton) -> dict[str, Any]:
    lab = load_npy_object(labels_path)
    try:
        table, cameras = lab["table"], lab["cameras"]
        subjects, cam_names = list(lab["subject_names"]), list(lab["camera_names"])
        seq_names = list(lab["action_names"])
        tlbr_all = table["bbox_by_camera_tlbr"]
        rows, cams = np.nonzero(tlbr_all[..., 3] - tlbr_all[..., 1] != 0)  # empty box: missing view
        kp, frame = table["keypoints"][rows], table["frame_idx"][rows].astype(np.int64)
        s_idx, seq_idx = table["subject_idx"][rows].astype(np.int64), table["action_idx"][rows].astype(np.int64)
        tlbr = table["bbox_by_camera_tlbr"][rows, cams].astype(np.int64)
        cam = cameras[s_idx, cams]
        K, R, t = cam["K"], cam["R"], cam["t"].reshape(-1, 3)
    except (KeyError, ValueError, IndexError, TypeError) as e:
        raise DataError(f"{labels_path}: not an original labels file ({type(e).__name__}: {e}); expected a dict "
                        "with subject_names, camera_names, action_names, table, cameras") from None
    bases = [n.rpartition("-")[0] or n for n in seq_names]
    actions = list(dict.fromkeys(bases))
    trials = np.array([int(n.rpartition("-")[2]) if n.rpartition("-")[2].isdigit() else 1 for n in seq_names])
    if kp.ndim != 3 or kp.shape[1:] != (skeleton.num_joints, 3):
        raise DataError(f"{labels_path}: table keypoints have shape {kp.shape[1:]}, expected "
                        f"({skeleton.num_joints}, 3) (skeleton {skeleton.name})")
    # image paths are built per item (a path column for ~600k rows would cost ~150 MB)
    folder = "imageSequence" + "-undistorted" * undistort
    template = [f"{{}}/{n}/{folder}/{{}}/img_{{:06d}}.jpg" for n in seq_names]
    bbox = T.scale_bbox(tlbr[:, [1, 0, 3, 2]], scale)  # TLBR -> LTRB, then scaled
    return {
        "subject_names": subjects, "action_names": actions, "camera_names": cam_names,
        "subject_idx": s_idx, "action_idx": np.array([actions.index(b) for b in bases])[seq_idx],
        "trial": trials[seq_idx], "camera_idx": cams.astype(np.int64), "frame": frame,
        "keypoints_3d": kp, "bbox": bbox, "K": K, "R": R, "t": t, "seq_idx": seq_idx, "template": template,
    }


def _tilt_world(keypoints: np.ndarray, root: np.ndarray, R: np.ndarray, t: np.ndarray, centre: np.ndarray,
                rng: np.random.Generator, max_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sample in a world turned about ``centre`` by W: an angle uniform in [-max_deg, max_deg] about a
    horizontal axis (z is vertical) of uniform direction. A world point X becomes X' = W (X - c) + c; the
    cameras follow (R' = R W^T, t' = t + R c - R' c), so every camera-frame point and pixel is unchanged.

    Args:
        keypoints: (J, 3) world mm. root: (3,) world mm. R: (V, 3, 3). t: (V, 3) mm. centre: (3,) world mm.

    Returns:
        keypoints (float32), root, R, t in the turned world.
    """
    heading, angle = rng.uniform(0.0, 2 * math.pi), math.radians(rng.uniform(-max_deg, max_deg))
    axis = np.array([math.cos(heading), math.sin(heading), 0.0])
    W = cv2.Rodrigues(axis * angle)[0]
    c = np.asarray(centre, np.float64)
    R64 = np.asarray(R, np.float64)
    R_new = R64 @ W.T
    t_new = np.asarray(t, np.float64) + R64 @ c - R_new @ c
    turn = lambda x: (np.asarray(x, np.float64) - c) @ W.T + c  # noqa: E731
    return turn(keypoints).astype(np.float32), turn(root), R_new, t_new


class Human36MDataset(Dataset):
    """Human3.6M samples for ContextPose.

    Args:
        root: processed folder; default ``config.dataset.root``.
        split: ``"train"`` or ``"val"``; selects subjects and the ``config.train``/``config.val`` options.
        config: experiment config supplying every option not given explicitly.
        format: ``"auto"``, ``"ctxpose"`` or ``"original"`` (layout of ``root``).
        labels_path: original layout only: the labels ``.npy`` (default ``<root>/../extra/`` or ``<root>/``).
        subjects: subjects to use (default the config's train/val subjects).
        image_shape: (H, W) of the returned crops, px.
        use_gt_pelvis: cuboid root from the ground-truth pelvis (True) or from ``pred_results_path`` (False);
            default ``config.model.volume_net.use_gt_pelvis``.
        pred_results_path: root estimates (released ``.pkl`` or our ``predictions.npz``), read when
            ``use_gt_pelvis`` is false; default the split's ``pred_results_path``.
        skeleton: joint order of the labels (a name or a :class:`~ctxpose.skeleton.Skeleton`); default
            ``config.model.skeleton``.
        seed: base of the (seed, epoch, index) generators.
        root_jitter_mm: train split only (the val split ignores it): ``root`` moves by a random offset,
            uniform in [-j, j] mm on each world axis, drawn from the sample's generator; default
            ``config.train.root_jitter_mm``.
        world_tilt_deg: train split only: the sample's world turns about its pelvis by an angle uniform in
            [-a, a] degrees about a random horizontal axis (``keypoints_3d``, ``root``, ``R``, ``t`` and
            ``proj_matrices`` together: every pixel stays where it was), drawn after the root jitter; default
            ``config.train.world_tilt_deg``.
        max_n_views: views per sample (1: each (frame, camera) is a sample); default the split's, whose null
            means every camera not ignored. More than the labels' cameras is refused (:class:`DataError`).
        min_n_views: fewest distinct cameras of a sample (frames with fewer are left out) and, with
            ``randomize_n_views``, the fewest views drawn per epoch; default the split's (null: 1).
        Other options mean what they mean in the original (see the module docstring).

    Items are dicts of numpy arrays (``default_collate`` stacks them): ``images`` (V, 3, H, W) float32
    normalised BGR; ``proj_matrices`` (V, 3, 4) world mm -> crop px; ``K`` (V, 3, 3), ``R`` (V, 3, 3),
    ``t`` (V, 3) mm; ``camera_indices`` (V,); ``keypoints_3d`` (J, 3) world mm; ``validity`` (J,);
    ``root`` (3,) world mm (the cuboid centre: the pelvis, plus the root jitter in training); ``rotation`` ()
    radians about the vertical axis (train only, else 0);
    ``index``, ``subject_idx``, ``action_idx``, ``trial``, ``camera_idx``, ``frame`` int64: the ids of
    :meth:`sample_ids` (``camera_idx`` is the frame's first camera in camera order; ``camera_indices`` are
    the views' cameras, the same camera first unless ``randomize_n_views`` shuffles them).
    """

    def __init__(self, root: str | Path | None = None, split: Literal["train", "val"] = "train",
                 config: ExperimentConfig | None = None, *, format: str | None = None,
                 labels_path: str | Path | None = None, subjects: tuple[str, ...] | None = None,
                 image_shape: tuple[int, int] | None = None, with_damaged_actions: bool | None = None,
                 retain_every_n_frames_in_test: int | None = None, ignore_cameras: tuple[int, ...] | None = None,
                 undistort_images: bool | None = None, scale_bbox: float | None = None, crop: bool | None = None,
                 randomize_n_views: bool | None = None, min_n_views: int | None = None,
                 max_n_views: int | None = None, use_gt_pelvis: bool | None = None,
                 pred_results_path: str | Path | None = None, skeleton: Skeleton | str | None = None,
                 seed: int | None = None, root_jitter_mm: float | None = None,
                 world_tilt_deg: float | None = None) -> None:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        cfg = config or ExperimentConfig()
        sc = cfg.train if split == "train" else cfg.val

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        self.split = split
        self.root = Path(pick(root, cfg.dataset.root))
        self.image_shape = tuple(int(v) for v in pick(image_shape, cfg.model.image_shape))
        self.randomize_n_views = bool(pick(randomize_n_views, sc.randomize_n_views))
        self.min_n_views = int(pick(min_n_views, sc.min_n_views) or 1)
        max_views = max_n_views if max_n_views is not None else sc.max_n_views  # None: every camera
        self.seed = int(pick(seed, cfg.train.seed))
        self.crop = pick(crop, sc.crop)
        skeleton = pick(skeleton, cfg.model.skeleton)
        self.skeleton = skeleton if isinstance(skeleton, Skeleton) else get_skeleton(skeleton)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()  # seen by persistent workers
        ignore = tuple(pick(ignore_cameras, sc.ignore_cameras))
        subjects = tuple(pick(subjects, cfg.dataset.train_subjects if split == "train" else cfg.dataset.val_subjects))
        fmt = pick(format, cfg.dataset.format)
        if fmt == "auto":
            fmt = "ctxpose" if (self.root / "labels.npz").is_file() else "original"
        self.format = fmt
        if fmt == "ctxpose":
            cols = _read_ctxpose(self.root, self.skeleton)
        elif fmt == "original":
            lp = pick(labels_path, cfg.dataset.train_labels_path if split == "train" else cfg.dataset.val_labels_path)
            lp = Path(lp) if lp else next((p for p in (self.root.parent / "extra" / ORIGINAL_LABELS_NAME,
                                                       self.root / ORIGINAL_LABELS_NAME) if p.is_file()), None)
            if lp is None:
                raise DataError(f"{self.root}: no labels.npz (our layout) and no {ORIGINAL_LABELS_NAME} beside it; "
                                "set dataset.format and dataset.train_labels_path/val_labels_path")
            cols = _read_original(self.root, lp, pick(undistort_images, sc.undistort_images),
                                  pick(scale_bbox, sc.scale_bbox), self.skeleton)
        else:
            raise DataError(f"dataset.format: {fmt!r} is not one of 'auto', 'ctxpose', 'original'")
        self.subject_names: list[str] = cols["subject_names"]
        self.action_names: list[str] = cols["action_names"]
        self.camera_names: list[str] = cols["camera_names"]
        self._templates: list[str] = cols.get("template", [])
        bad = [c for c in ignore if not 0 <= c < len(self.camera_names)]
        if bad:
            raise DataError(f"{split}.ignore_cameras: {bad} are not camera indices 0..{len(self.camera_names) - 1}")
        self.max_n_views = self._check_views(max_views, ignore)
        self._select(cols, subjects, pick(with_damaged_actions, sc.with_damaged_actions),
                     int(pick(retain_every_n_frames_in_test, sc.retain_every_n_frames_in_test)), ignore)
        short = int((self._counts < self.max_n_views).sum()) if self.max_n_views > 1 else 0
        if short:
            logger.info("%s split: %d of %d frames have fewer than %d cameras; they repeat their own views",
                        split, short, len(self), self.max_n_views)
        self.use_gt_pelvis = bool(pick(use_gt_pelvis, cfg.model.volume_net.use_gt_pelvis))
        self.root_jitter_mm = float(pick(root_jitter_mm, cfg.train.root_jitter_mm)) if split == "train" else 0.0
        self.world_tilt_deg = float(pick(world_tilt_deg, cfg.train.world_tilt_deg)) if split == "train" else 0.0
        self._roots = None
        if self.use_gt_pelvis:
            if pred_results_path is not None:
                logger.warning("%s: unused, use_gt_pelvis is true (the ground-truth pelvis is the cuboid root)",
                               pred_results_path)
        else:
            pred = pick(pred_results_path, sc.pred_results_path)
            if not pred:
                raise DataError(f"{split}.pred_results_path: not set, but use_gt_pelvis is false (the cuboid root "
                                "must come from estimates); set the path or use_gt_pelvis: true")
            self._roots = load_root_predictions(pred, self).astype(np.float32)
        logger.info("%s %s split: %d samples from %s (%s layout)", type(self).__name__, split, len(self),
                    self.root, fmt)

    # ------------------------------------------------------------------ selection

    def _check_views(self, max_views: int | None, ignore: tuple[int, ...]) -> int:
        """The views per sample (``max_n_views``, None: every camera left), refused when the labels lack them."""
        cameras = len(self.camera_names) - len(set(ignore))
        views = cameras if max_views is None else int(max_views)
        if not 1 <= self.min_n_views <= views or views > cameras:
            shown = "null (every camera)" if max_views is None else f"{max_views} views"
            raise DataError(f"{self.split}.max_n_views: {shown} (min_n_views {self.min_n_views}), but the "
                            f"labels have {len(self.camera_names)} cameras ({len(set(ignore))} in "
                            f"{self.split}.ignore_cameras); expected 1 <= min_n_views <= max_n_views <= {cameras}")
        return views

    def _select(self, cols: dict[str, Any], subjects: tuple[str, ...], with_damaged: bool, retain: int,
                ignore: tuple[int, ...]) -> None:
        unknown = [s for s in subjects if s not in self.subject_names]
        if len(unknown) == len(subjects):
            raise DataError(f"{self.root}: none of the {self.split} subjects {list(subjects)} is in the labels "
                            f"(found {self.subject_names})")
        if unknown:
            logger.warning("%s: %s subjects %s are not in the labels; using the others", self.root, self.split,
                           unknown)
        wanted = [self.subject_names.index(s) for s in subjects if s in self.subject_names]
        keep = np.isin(cols["subject_idx"], wanted)
        cols = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in cols.items()}
        # frames in the original table order: subject, action, trial, frame
        keys = np.stack([cols["subject_idx"], cols["action_idx"], cols["trial"], cols["frame"]], 1).astype(np.int64)
        uniq, frame_code = np.unique(keys, axis=0, return_inverse=True)
        frame_code = frame_code.reshape(-1)
        self._num_split_frames = len(uniq)
        mask = np.ones(len(frame_code), dtype=bool)
        if not with_damaged:
            for subj, seq in damaged_ground_truth():
                action, _, trial = seq.rpartition("-")
                if subj in self.subject_names and action in self.action_names:
                    mask &= ~((cols["subject_idx"] == self.subject_names.index(subj))
                              & (cols["action_idx"] == self.action_names.index(action))
                              & (cols["trial"] == int(trial)))
        if self.split == "val" and retain > 1:
            kept_frames = np.unique(frame_code[mask])[::retain]
            mask &= np.isin(frame_code, kept_frames)
        mask &= ~np.isin(cols["camera_idx"], list(ignore))
        order = np.nonzero(mask)[0]
        order = order[np.lexsort((cols["camera_idx"][order], frame_code[order]))]
        self._rows = {k: np.ascontiguousarray(v[order]) for k, v in cols.items() if isinstance(v, np.ndarray)}
        self._frame_code = frame_code[order]
        if self.max_n_views == 1:
            self._starts = np.arange(len(order), dtype=np.int64)
            self._counts = np.ones(len(order), dtype=np.int64)
        else:
            starts = np.nonzero(np.diff(self._frame_code))[0] + 1
            starts = np.r_[0, starts].astype(np.int64) if len(order) else np.zeros(0, np.int64)
            counts = np.diff(np.r_[starts, len(order)])
            enough = counts >= self.min_n_views  # a sample never has fewer distinct cameras than min_n_views
            if not enough.all():
                logger.warning("%s split: %d frames with fewer than min_n_views=%d cameras left out", self.split,
                               int((~enough).sum()), self.min_n_views)
            self._starts, self._counts = starts[enough], counts[enough]

    # ------------------------------------------------------------------ protocol for predictions

    def image_paths(self) -> np.ndarray | None:
        """(N,) str path of each sample's first-view crop, relative to :attr:`root`; None for the original's layout
        (its files are full frames, cropped at load time)."""
        return None if self._templates else self._rows["image"][self._starts]

    def sample_ids(self) -> dict[str, np.ndarray]:
        """(N,) int64 ids of each sample's first view: subject_idx, action_idx, trial, camera_idx, frame."""
        return {k: self._rows[k][self._starts].astype(np.int64)
                for k in ("subject_idx", "action_idx", "trial", "camera_idx", "frame")}

    def split_frame_positions(self) -> tuple[np.ndarray, int]:
        """Per sample, the rank of its frame among the split's frames in the original table order (the rows of
        the released results sorted by ``indexes``), and the number of such frames."""
        return self._frame_code[self._starts].astype(np.int64), self._num_split_frames

    # ------------------------------------------------------------------ items

    def __len__(self) -> int:
        return len(self._starts)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the (seed, epoch, index) generators (visible to running workers)."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def n_views(self) -> int:
        """V, the views of every sample of the current epoch (drawn per epoch with ``randomize_n_views``)."""
        if self.max_n_views == 1 or not self.randomize_n_views:
            return self.max_n_views
        epoch_rng = np.random.default_rng([self.seed, self.epoch, 2**31])
        return int(epoch_rng.integers(self.min_n_views, self.max_n_views + 1))

    def _views(self, index: int, rng: np.random.Generator) -> np.ndarray:
        start, count = int(self._starts[index]), int(self._counts[index])
        rows = np.arange(start, start + count)
        if self.max_n_views == 1:
            return rows
        n = self.n_views()
        chosen = rng.permutation(rows)[:n] if self.randomize_n_views else rows[:n]
        return np.resize(chosen, n)  # a frame with fewer views than n repeats its own (missing cameras)

    def _load_view(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        if self._templates:
            name = self._templates[self._rows["seq_idx"][row]].format(
                self.subject_names[self._rows["subject_idx"][row]], self.camera_names[self._rows["camera_idx"][row]],
                int(self._rows["frame"][row]) + 1)
        else:
            name = str(self._rows["image"][row])
        path = self.root / name
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(f"{path}: image missing or unreadable")
        K = self._rows["K"][row]
        if self.format == "original":
            image, K = T.crop_and_resize(image, K, self._rows["bbox"][row] if self.crop else None, self.image_shape)
        elif image.shape[:2] != self.image_shape:
            image, K = T.crop_and_resize(image, K, None, self.image_shape)
        return T.normalize_to_tensor(image), K

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        rows = self._views(index, rng)
        images, Ks = zip(*(self._load_view(r) for r in rows), strict=True)
        K = np.stack(Ks)
        R, t = self._rows["R"][rows], self._rows["t"][rows]
        first = int(self._starts[index])  # the sample's ids: its frame's first camera (views may be shuffled)
        keypoints = self._rows["keypoints_3d"][first].astype(np.float32)
        root = self._roots[index] if self._roots is not None else keypoints[self.skeleton.root]
        rotation = rng.uniform(0.0, 2 * math.pi) if self.split == "train" else 0.0
        if self.root_jitter_mm > 0:  # train only; drawn after the rotation, so 0 keeps every other draw
            root = np.asarray(root, np.float64) + rng.uniform(-self.root_jitter_mm, self.root_jitter_mm, 3)
        if self.world_tilt_deg > 0:  # train only; drawn last, so 0 keeps every other draw
            keypoints, root, R, t = _tilt_world(keypoints, root, R, t, keypoints[self.skeleton.root], rng,
                                                self.world_tilt_deg)
        return {
            "images": np.stack(images), "proj_matrices": projection_matrix(K, R, t).astype(np.float32),
            "K": K.astype(np.float32), "R": R.astype(np.float32), "t": t.astype(np.float32),
            "camera_indices": self._rows["camera_idx"][rows].astype(np.int64),
            "keypoints_3d": keypoints, "validity": np.ones(len(keypoints), np.float32),
            "root": np.asarray(root, np.float32), "rotation": np.float32(rotation), "index": np.int64(index),
            **{k: np.int64(self._rows[k][first]) for k in ("subject_idx", "action_idx", "trial", "camera_idx",
                                                            "frame")},
        }

    @classmethod
    def from_config(cls, config: ExperimentConfig, split: Literal["train", "val"],
                    **kwargs: Any) -> Human36MDataset:
        """The ``split`` dataset as ``config`` describes it (keyword arguments override)."""
        return cls(None, split, config, **kwargs)
