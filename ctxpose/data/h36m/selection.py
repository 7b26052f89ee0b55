"""Which pose frames of each Human3.6M sequence a processed folder keeps, and in which order.

Two rules (``ctxpose preprocess h36m --selection``):

``stride`` (default)
    every n-th pose frame, ``--train-every`` / ``--test-every`` per split.

``original``
    the frames of the original's label table, so the released algebraic-model pelvis estimates
    (learnable-triangulation ``results/train.pkl``, ``results/val.pkl``) index our labels row for row.
    The table was made in two steps:

    1. ``process_h36m.py`` (anibali/h36m-fetch ``process_all.py``, copied into ContextPose as
       ``mvn/datasets/human36m_preprocessing/process_dataset/process_h36m.py``) extracts only some frames
       per (sequence, camera), ``select_frame_indices_to_include`` on that camera's
       ``D3_Positions_mono_universal`` poses:

       * test subjects S9, S11: every 64th pose frame, ``arange(0, N, 64)``;
       * training subjects: frame 0, then each frame in which some joint is at least 40 mm away from where
         it was in the last kept frame (squared distance compared with 40**2; ``<`` skips, so exactly
         40 mm keeps). The arithmetic is the poses' own float32, as pycdf returns them.

    2. ``generate-labels-npy-multiview.py`` (learnable-triangulation) builds one row per frame: subjects in
       the order S1, S5, S6, S7, S8, S9, S11; sequences in the order Directions-1, Directions-2,
       Discussion-1, ... WalkingTogether-2 (the 15 actions as ``metadata.xml`` numbers them, trials 1, 2);
       frames ascending, taken from the FIRST camera folder present (54138969, or 55011271 for
       S11 Directions-2 whose 54138969 video is broken). So the motion rule runs on camera 54138969's
       universal poses and the other cameras' crops are taken at the same frames.

    The released files are the algebraic model's output over that table: ``indexes`` sorted give the
    split's rows in table order. Row counts measured from the official frame counts: test 2,181 frames
    (2,107 without the damaged S9 sequences), exactly what karfly/learnable-triangulation-pytorch#125
    reports for ``val.pkl``; the training count (159,181 in ``train.pkl``, #107) needs the real universal
    poses.

Everything here is a pure function of poses and frame counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctxpose.data.h36m import metadata
from ctxpose.errors import DataError

SELECTIONS = ("stride", "original")
#: the original's test-subject stride and training motion threshold (process_h36m.py)
ORIGINAL_TEST_STEP = 64
ORIGINAL_MOTION_MM = 40.0
#: the raw kind whose poses the motion rule reads
UNIVERSAL_KIND = "D3_Positions_mono_universal"


def motion_frames(poses: np.ndarray, threshold_mm: float = ORIGINAL_MOTION_MM) -> np.ndarray:
    """Frames kept by the original's motion rule.

    Frame 0 is kept; a later frame is kept when the largest per-joint squared displacement from the last
    kept frame is not below ``threshold_mm ** 2``. Computed in the dtype of ``poses`` (float32 for the
    real files, as the original).

    Args:
        poses: (N, J, 3) joint positions, mm.
        threshold_mm: displacement that triggers a new frame.

    Returns:
        (K,) int64 ascending frame indices.
    """
    poses = np.asarray(poses)
    n = len(poses)
    if n == 0:
        return np.zeros(0, np.int64)
    threshold = threshold_mm ** 2
    kept = [0]
    last, start, window = 0, 1, 64
    while start < n:
        stop = min(n, start + window)
        moved = ((poses[start:stop] - poses[last]) ** 2).sum(axis=-1).max(axis=-1)  # (w,)
        hits = np.flatnonzero(~(moved < threshold))
        if len(hits):
            last = start + int(hits[0])
            kept.append(last)
            start, window = last + 1, 64
        else:
            start, window = stop, min(window * 2, 4096)
    return np.asarray(kept, dtype=np.int64)


def motion_camera(seq: metadata.Sequence) -> str:
    """The camera whose frames the original table uses: the first one with a video."""
    return next(c for c in metadata.camera_ids() if not metadata.is_missing_video(seq.subject, seq.name, c))


def original_frames(seq: metadata.Sequence, universal_poses: np.ndarray | None = None,
                    n_frames: int | None = None) -> np.ndarray:
    """The original table's frames of one sequence.

    Args:
        seq: the sequence.
        universal_poses: (N, 32, 3) ``D3_Positions_mono_universal`` poses of :func:`motion_camera`; needed
            for training subjects only.
        n_frames: pose frames of the sequence for the test rule when no poses are given (default: the
            official count).

    Returns:
        (K,) int64 ascending 0-based pose frames.

    Raises:
        DataError: a training sequence without its universal poses.
    """
    if metadata.split_of(seq.subject) == "test":
        if universal_poses is not None:
            n_frames = len(universal_poses)
        n = seq.num_frames if n_frames is None else n_frames
        return np.arange(0, n, ORIGINAL_TEST_STEP, dtype=np.int64)
    if universal_poses is None:
        raise DataError(f"{seq.key}: --selection original needs "
                        f"{metadata.raw_relpath(UNIVERSAL_KIND, seq.subject, seq.base_name, motion_camera(seq))} "
                        f"(in Poses_{UNIVERSAL_KIND}_{seq.subject}.tgz): training frames are chosen by motion")
    return motion_frames(universal_poses)


def needs_universal_poses(seq: metadata.Sequence, selection: str) -> bool:
    """Whether :func:`sequence_frames` reads the universal poses of ``seq``."""
    return selection == "original" and metadata.split_of(seq.subject) == "train"


def universal_relpath(seq: metadata.Sequence) -> str:
    """Raw path of the universal poses the motion rule reads for ``seq``."""
    return metadata.raw_relpath(UNIVERSAL_KIND, seq.subject, seq.base_name, motion_camera(seq))


def sequence_frames(seq: metadata.Sequence, selection: str, train_every: int, test_every: int,
                    universal_path: Path | None = None, n_frames: int | None = None) -> tuple[int, ...]:
    """Frames a processed folder keeps of ``seq``.

    Args:
        seq: the sequence.
        selection: "stride" or "original".
        train_every, test_every: strides of the "stride" rule.
        universal_path: the file :func:`universal_relpath` names (original rule, training subjects).
        n_frames: pose frames in the sequence's pose file (default: the official count); the stride and
            the test rule count from it.

    Raises:
        DataError: unknown selection, or the universal poses are missing or unreadable.
    """
    if selection == "stride":
        step = train_every if metadata.split_of(seq.subject) == "train" else test_every
        return tuple(range(0, seq.num_frames if n_frames is None else n_frames, step))
    if selection != "original":
        raise DataError(f"--selection {selection!r}: expected one of {SELECTIONS}")
    poses = None
    if needs_universal_poses(seq, selection):
        from ctxpose.data.h36m.raw import read_cdf_poses

        if universal_path is None:
            original_frames(seq, None)  # raises naming the file
        poses = read_cdf_poses(universal_path, dtype=None)
    return tuple(int(f) for f in original_frames(seq, poses, n_frames))


def selection_meta(selection: str, train_every: int, test_every: int) -> dict:
    """What ``labels.npz`` meta records about the rule."""
    base = {"rule": selection, "train_subjects": metadata.train_subjects(), "test_subjects": metadata.test_subjects()}
    if selection == "original":
        return {**base, "train": f"motion >= {ORIGINAL_MOTION_MM:g} mm on {UNIVERSAL_KIND} of the first camera",
                "test": f"every {ORIGINAL_TEST_STEP}th frame",
                "source": "anibali/h36m-fetch process_all.py (= ContextPose process_h36m.py) select_frame_indices_"
                          "to_include; learnable-triangulation generate-labels-npy-multiview.py"}
    return {**base, "train_every": train_every, "test_every": test_every}


# ---------------------------------------------------------------------- the original table's order


def original_sequence_order() -> list[str]:
    """The original table's sequence order: "Directions-1", "Directions-2", ... "WalkingTogether-2"."""
    return [f"{a}-{t}" for a in metadata.actions() for t in (1, 2)]


def original_row_order(subject: np.ndarray, action: np.ndarray, trial: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Permutation that sorts frames into the original table's order (subject, sequence, frame).

    Args:
        subject, action, trial, frame: (N,) columns as in ``labels.npz`` ("S1", "Directions", 1, 0).

    Returns:
        (N,) int64 indices, stable.
    """
    subjects = {s: i for i, s in enumerate(metadata.subjects())}
    seqs = {s: i for i, s in enumerate(original_sequence_order())}
    try:
        s_code = np.array([subjects[str(s)] for s in subject], dtype=np.int64)
        q_code = np.array([seqs[f"{a}-{int(t)}"] for a, t in zip(action, trial, strict=True)], dtype=np.int64)
    except KeyError as e:
        raise DataError(f"not a Human3.6M subject/sequence of the original table: {e.args[0]}") from None
    return np.lexsort((np.asarray(frame, np.int64), q_code, s_code)).astype(np.int64)


@dataclass(frozen=True)
class FrameTable:
    """Frames of one split in the original table's order, with the cameras each frame has.

    Attributes:
        subject, action, trial, frame: (F,) columns ("S9", "Walking", 1, 64).
        cameras: (F, C) bool, camera ``metadata.camera_ids()[c]`` has a view of the frame.
    """

    subject: np.ndarray
    action: np.ndarray
    trial: np.ndarray
    frame: np.ndarray
    cameras: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)


def original_test_table() -> FrameTable:
    """The test split's frames of the original table, from the official frame counts alone (the test rule
    does not depend on the poses): every 64th frame of every S9/S11 sequence, damaged ones included."""
    cams = metadata.camera_ids()
    cols: dict[str, list] = {"subject": [], "action": [], "trial": [], "frame": [], "cameras": []}
    for seq in metadata.sequences(metadata.test_subjects()):
        frames = original_frames(seq)
        present = [not metadata.is_missing_video(seq.subject, seq.name, c) for c in cams]
        cols["subject"] += [seq.subject] * len(frames)
        cols["action"] += [seq.action] * len(frames)
        cols["trial"] += [seq.trial] * len(frames)
        cols["frame"] += frames.tolist()
        cols["cameras"] += [present] * len(frames)
    table = FrameTable(np.array(cols["subject"], "<U8"), np.array(cols["action"], "<U32"),
                       np.array(cols["trial"], np.int64), np.array(cols["frame"], np.int64),
                       np.array(cols["cameras"], bool).reshape(-1, len(cams)))
    order = original_row_order(table.subject, table.action, table.trial, table.frame)
    return FrameTable(*(getattr(table, k)[order] for k in ("subject", "action", "trial", "frame", "cameras")))


def frame_table(subject: np.ndarray, action: np.ndarray, trial: np.ndarray, camera: np.ndarray,
                frame: np.ndarray, subjects: list[str]) -> FrameTable:
    """The distinct frames of the given subjects among per-(frame, camera) rows, in the original table's order.

    Args:
        subject, action, trial, camera, frame: (N,) columns of ``labels.npz``.
        subjects: subjects to keep (a split).
    """
    keep = np.isin(subject, subjects)
    subject, action, trial, camera, frame = (np.asarray(c)[keep] for c in (subject, action, trial, camera, frame))
    keys = np.char.add(np.char.add(np.char.add(subject.astype(str), "/"), np.char.add(action.astype(str), "-")),
                       np.char.add(np.char.add(trial.astype(str), "/"), frame.astype(str)))
    uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    cams = metadata.camera_ids()
    present = np.zeros((len(uniq), len(cams)), bool)
    cam_idx = np.array([cams.index(str(c)) if str(c) in cams else -1 for c in camera], np.int64)
    ok = cam_idx >= 0
    present[inverse.reshape(-1)[ok], cam_idx[ok]] = True
    order = original_row_order(subject[first], action[first], trial[first], frame[first])
    sel = first[order]
    return FrameTable(subject[sel].astype("<U8"), action[sel].astype("<U32"), trial[sel].astype(np.int64),
                      frame[sel].astype(np.int64), present[order])
