"""``ctxpose synthesize 3dhp``: a small synthetic MPI-INF-3DHP test set in the release's exact layout.

``<out>/mpi_inf_3dhp_test_set/TS1..TS6/annot_data.mat`` (MATLAB v7.3 with the 512-byte header and
``MATLAB_class`` attributes, variables and shapes as in ``annotations``) and ``imageSequence/img_%06d.jpg``.

The body is the synthetic Human3.6M walker (``ctxpose.data.h36m.synthetic_body``: 32 joints, shaded
coloured limbs) seen by a camera placed 4.5 m (studio, TS1-4) or 5.5 m (outdoor, TS5-6) away, rendered
through the real test cameras (``cameras.load_3dhp_camera``) including the GoPro's lens distortion for
TS5-6, at the real 2048x2048 / 1920x1080 sizes or smaller (``size``). Per sequence:

* ``annot3``: the 17 3DHP joints of the walker in the camera frame, mm, on a 1/64 mm grid (so that a
  test's shifted prediction is exact in floating point); ``univ_annot3``: the same pose scaled about the
  pelvis by a per-sequence factor (0.90 + 0.04 k, k = 0..5), standing in for the release's rescaling to
  the universal skeleton;
* ``annot2``: ``annot3`` projected with ``cv2.projectPoints`` through the camera (distorted pixels);
* ``valid_frame``: 0 for every 5th frame from the 3rd (i % 5 == 2); those frames' annotations are
  deliberately wrong (80 mm / 40 px off), as unreliable annotations the evaluation must skip;
* ``activity_annotation``: the valid frames split into 7 runs, one per activity (all 7 with >= 7 valid
  frames), the order rotated per sequence; invalid frames take their predecessor's label;
* ``bb_crop``: the release does not document it; written with its shape (MATLAB 34xN) holding ``annot2``.

The motion is the walker's for every activity label: the labels exercise the per-activity tables, not
the poses of those activities.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ctxpose.data.h36m.synthetic_body import background_texture, render_frame, walking_poses
from ctxpose.data.mpi_inf_3dhp import metadata
from ctxpose.data.mpi_inf_3dhp.annotations import SequenceAnnotations, write_annotations
from ctxpose.data.mpi_inf_3dhp.cameras import load_3dhp_camera, nominal_image_hw
from ctxpose.geometry.cameras import Camera, world_to_camera
from ctxpose.skeleton import MPI_INF_3DHP
from ctxpose.utils.io import atomic_write_bytes

logger = logging.getLogger(__name__)

GRID_MM = 1.0 / 64.0
_DISTANCE_MM = {"green screen": 4500.0, "studio": 4500.0, "outdoor": 5500.0}
_CAMERA_HEIGHT_MM = 1000.0
_INVALID_OFFSET_MM = np.array([80.0, -60.0, 50.0])
_INVALID_OFFSET_PX = 40.0


@dataclass
class Synthesis3DHPReport:
    """What :func:`synthesize_3dhp` wrote.

    Attributes:
        test_set: the ``mpi_inf_3dhp_test_set`` folder.
        sequences: names written.
        files: paths written, relative to ``test_set``.
        annotations: sequence -> the annotations written.
        world_poses: sequence -> (N, 32, 3) walker poses in its synthetic world, mm (rendered frames).
    """

    test_set: Path
    sequences: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    annotations: dict[str, SequenceAnnotations] = field(default_factory=dict)
    world_poses: dict[str, np.ndarray] = field(default_factory=dict)


def _world_to_camera(scene: str, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) of a level camera looking along the world's +y at the walker's circle (world z up)."""
    base = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # x right, y down, z forward
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # about the vertical
    R = base @ turn.T
    centre = turn @ np.array([0.0, -_DISTANCE_MM[scene], _CAMERA_HEIGHT_MM])
    return R, -R @ centre


def _activities(valid: np.ndarray, shift: int) -> np.ndarray:
    labels = np.ones(len(valid), dtype=np.int64)
    rows = np.flatnonzero(valid)
    for k, i in enumerate(rows):
        labels[i] = 1 + (k * len(metadata.ACTIVITIES) // len(rows) + shift) % len(metadata.ACTIVITIES)
    for i in range(1, len(valid)):
        if not valid[i]:
            labels[i] = labels[i - 1]
    return labels


def _image_hw(sequence: str, size: int | None) -> tuple[int, int]:
    h, w = nominal_image_hw(sequence)
    return (h, w) if size is None else (max(2, int(round(h * size / w))), int(size))


def _synthesize_sequence(test_set: Path, index: int, sequence: str, n_frames: int, size: int | None, seed: int,
                         jpeg_quality: int, report: Synthesis3DHPReport) -> None:
    scene = metadata.scene_of(sequence)
    poses32 = walking_poses(n_frames, seed=seed * 1000 + index)
    R, t = _world_to_camera(scene, yaw=0.3 * (index - 2.5))
    quantise = lambda a: np.round(a / GRID_MM) * GRID_MM  # noqa: E731
    annot3 = quantise(MPI_INF_3DHP.from_h36m32(world_to_camera(poses32, R, t)))
    pelvis = annot3[:, MPI_INF_3DHP.root : MPI_INF_3DHP.root + 1]
    univ = quantise(pelvis + (0.90 + 0.04 * index) * (annot3 - pelvis))
    hw = _image_hw(sequence, size)
    camera = load_3dhp_camera(sequence, hw)
    uv, _ = cv2.projectPoints(annot3.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), camera.K, camera.dist)
    annot2 = uv.reshape(n_frames, -1, 2)
    valid = np.arange(n_frames) % 5 != 2
    annot3[~valid] += _INVALID_OFFSET_MM
    univ[~valid] += _INVALID_OFFSET_MM
    annot2[~valid] += _INVALID_OFFSET_PX
    ann = SequenceAnnotations(annot2=annot2, annot3=annot3, univ_annot3=univ, valid=valid,
                              activity=_activities(valid, index))
    seq_dir = test_set / sequence
    write_annotations(seq_dir / metadata.ANNOTATION_FILE, ann, bb_crop=annot2.reshape(n_frames, -1))
    report.files.append(f"{sequence}/{metadata.ANNOTATION_FILE}")
    viewer = Camera(R=R, t=t, K=camera.K, dist=camera.dist, name=camera.name, dist_model=camera.dist_model)
    background = background_texture(hw, seed * 7919 + index)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    for i, pose in enumerate(poses32):
        frame = render_frame(background, viewer.project, pose, lambda p: world_to_camera(p, R, t)[:, 2],
                             float(camera.K[0, 0]))
        ok, buf = cv2.imencode(".jpg", frame, params)
        if not ok:
            raise RuntimeError(f"cannot JPEG-encode frame {i} of {sequence}")
        rel = metadata.image_relpath(sequence, i)
        atomic_write_bytes(test_set / rel, buf.tobytes())
        report.files.append(rel)
    report.annotations[sequence] = ann
    report.world_poses[sequence] = poses32


def synthesize_3dhp(out_dir: str | Path, sequences: tuple[str, ...] | list[str] = metadata.SEQUENCES,
                    n_frames: int = 21, size: int | None = None, seed: int = 0, jpeg_quality: int = 95,
                    progress: Callable[[str], None] | None = None) -> Synthesis3DHPReport:
    """Write a synthetic MPI-INF-3DHP test set (see the module docstring).

    Args:
        out_dir: destination; the sequences go to ``out_dir/mpi_inf_3dhp_test_set/``.
        sequences: which of TS1..TS6.
        n_frames: annotated frames per sequence (>= 9 gives every sequence all 7 activities).
        size: image width, px (height keeps the real aspect); None = the real 2048 / 1920.
        seed: motion and texture seed.
        jpeg_quality: 0..100.
        progress: called with each finished sequence name.

    Returns:
        :class:`Synthesis3DHPReport` with the annotations written.

    Raises:
        ValueError: unknown sequence, ``n_frames < 1`` or ``size < 16``.
    """
    unknown = [s for s in sequences if s not in metadata.SEQUENCES]
    if unknown:
        raise ValueError(f"unknown sequences {unknown}; expected some of {metadata.SEQUENCES}")
    if n_frames < 1 or (size is not None and size < 16):
        raise ValueError(f"n_frames must be >= 1 and size >= 16, got {n_frames} and {size}")
    test_set = Path(out_dir) / metadata.TEST_SET_DIR
    report = Synthesis3DHPReport(test_set=test_set)
    for sequence in sequences:
        _synthesize_sequence(test_set, metadata.SEQUENCES.index(sequence), sequence, n_frames, size, seed,
                             jpeg_quality, report)
        report.sequences.append(sequence)
        logger.debug("synthesized %s (%d frames)", sequence, n_frames)
        if progress:
            progress(sequence)
    return report
