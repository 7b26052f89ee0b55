"""Facts about the MPI-INF-3DHP test set (``mpi_inf_3dhp_test_set.zip`` of the release).

Layout::

    mpi_inf_3dhp_test_set/TS1 .. TS6/
        annot_data.mat               MATLAB v7.3 (HDF5): annot2, annot3, univ_annot3, valid_frame,
                                     activity_annotation, bb_crop (see ``annotations``)
        imageSequence/img_%06d.jpg   one image per annotated frame, numbered from 1 (frame i -> img_{i+1})

TS1-TS4 are 2048x2048 frames of the studio camera (TS1-2 with green screen, TS3-4 without), TS5-TS6
1920x1080 frames of an outdoor GoPro with lens distortion. The annotations are in each sequence's camera
frame (mm); the evaluation uses the valid frames only (protocol: :mod:`ctxpose.metrics.mpi_inf_3dhp`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctxpose.errors import DataError
from ctxpose.skeleton import CONTEXTPOSE_TO_3DHP, MPI_INF_3DHP

SEQUENCES = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6")
TEST_SET_DIR = "mpi_inf_3dhp_test_set"
ANNOTATION_FILE = "annot_data.mat"
IMAGE_DIR = "imageSequence"
#: Valid frames per sequence in the release (``sum(valid_frame)``; 2,929 in all), for reference in reports.
OFFICIAL_VALID_FRAMES = {"TS1": 603, "TS2": 540, "TS3": 505, "TS4": 553, "TS5": 276, "TS6": 452}

#: Activity labels 1..7 of ``activity_annotation`` (``mpii_get_activity_name.m``).
ACTIVITIES = ("Standing/Walking", "Exercising", "Sitting", "Reaching/Crouching", "On The Floor", "Sports",
              "Miscellaneous")
#: Scenes of the test sequences (frame-weighted summaries): green screen, studio without it, outdoor.
SCENES = (("green screen", ("TS1", "TS2")), ("studio", ("TS3", "TS4")), ("outdoor", ("TS5", "TS6")))


def image_relpath(sequence: str, frame: int) -> str:
    """Image of 0-based annotation frame ``frame`` relative to the test-set folder (``TS1/imageSequence/img_000001.jpg``
    for frame 0)."""
    return f"{sequence}/{IMAGE_DIR}/img_{frame + 1:06d}.jpg"


def scene_of(sequence: str) -> str:
    """"green screen", "studio" or "outdoor"."""
    for name, members in SCENES:
        if sequence in members:
            return name
    raise DataError(f"unknown MPI-INF-3DHP sequence {sequence!r}; expected one of {SEQUENCES}")


def find_test_set(root: str | Path) -> Path:
    """The folder holding TS1..TS6: ``root`` itself or ``root/mpi_inf_3dhp_test_set``.

    Raises:
        DataError: neither holds a ``TS*/annot_data.mat``.
    """
    root = Path(root)
    for candidate in (root, root / TEST_SET_DIR):
        if any((candidate / s / ANNOTATION_FILE).is_file() for s in SEQUENCES):
            return candidate
    raise DataError(f"{root}: no {'/'.join(('TS1', ANNOTATION_FILE))} (or under {TEST_SET_DIR}/); expected the "
                    "MPI-INF-3DHP test set layout TS1..TS6/annot_data.mat")


def root_relative_3dhp(keypoints: np.ndarray, joint_order: str = "contextpose17") -> np.ndarray:
    """Poses in the 3DHP joint order with the pelvis at the origin (what ``inference_data.mat`` holds).

    Args:
        keypoints: (N, 17, 3) poses, mm, in ``joint_order`` ("contextpose17" or "mpi_inf_3dhp17").
        joint_order: the order of ``keypoints``.

    Returns:
        (N, 17, 3) float64, 3DHP order, minus the pelvis (3DHP joint 14).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (MPI_INF_3DHP.num_joints, 3):
        raise ValueError(f"expected (N, {MPI_INF_3DHP.num_joints}, 3) poses, got {kp.shape}")
    if joint_order == "contextpose17":
        kp = kp[:, list(CONTEXTPOSE_TO_3DHP)]
    elif joint_order != MPI_INF_3DHP.name:
        raise ValueError(f"joint_order {joint_order!r}: expected 'contextpose17' or {MPI_INF_3DHP.name!r}")
    return kp - kp[:, MPI_INF_3DHP.root : MPI_INF_3DHP.root + 1]
