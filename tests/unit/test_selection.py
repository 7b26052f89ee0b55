"""The original's frame selection (``--selection original``) against slow references written here."""

from __future__ import annotations

import numpy as np
import pytest

from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.selection import (
    frame_table,
    motion_frames,
    original_frames,
    original_row_order,
    original_test_table,
    sequence_frames,
)
from ctxpose.errors import DataError

#: the original table's sequence order (learnable-triangulation generate-labels-npy-multiview.py), written out
ORIGINAL_ACTION_NAMES = [
    "Directions-1", "Directions-2", "Discussion-1", "Discussion-2", "Eating-1", "Eating-2", "Greeting-1",
    "Greeting-2", "Phoning-1", "Phoning-2", "Posing-1", "Posing-2", "Purchases-1", "Purchases-2", "Sitting-1",
    "Sitting-2", "SittingDown-1", "SittingDown-2", "Smoking-1", "Smoking-2", "TakingPhoto-1", "TakingPhoto-2",
    "Waiting-1", "Waiting-2", "Walking-1", "Walking-2", "WalkingDog-1", "WalkingDog-2", "WalkingTogether-1",
    "WalkingTogether-2"]
ORIGINAL_SUBJECTS = ["S1", "S5", "S6", "S7", "S8", "S9", "S11"]


def reference_motion_frames(poses):
    """process_h36m.py's loop, one frame at a time."""
    kept, prev = [], None
    for i, joints in enumerate(poses):
        if prev is not None:
            max_move = ((joints - prev) ** 2).sum(axis=-1).max()
            if max_move < 40 ** 2:
                continue
        prev = joints
        kept.append(i)
    return kept


def _walk(n, seed, dtype=np.float32):
    """Joint trajectories with pauses, jumps and slow drifts (mm)."""
    rng = np.random.default_rng(seed)
    speed = rng.choice([0.0, 2.0, 15.0, 45.0, 120.0], size=(n, 1, 1), p=[0.2, 0.3, 0.3, 0.15, 0.05])
    steps = rng.normal(size=(n, 32, 3)) * speed
    return (np.cumsum(steps, axis=0) + rng.normal(size=(1, 32, 3)) * 300).astype(dtype)


@pytest.mark.parametrize("seed", range(6))
def test_motion_rule_matches_the_original_loop(seed):
    poses = _walk(3000 if seed else 10, seed)
    np.testing.assert_array_equal(motion_frames(poses), reference_motion_frames(poses))


def test_motion_rule_boundary_and_last_kept_frame():
    poses = np.zeros((7, 32, 3), np.float32)
    poses[1, 3, 0] = 39.0  # below 40 mm: skipped
    poses[2, 3, 0] = 40.0  # exactly 40 mm from frame 0: kept (the original skips only when < 40**2)
    poses[3, 3, 0] = 79.0  # 39 mm from the last KEPT frame (2), although 79 mm from frame 0: skipped
    poses[4, 3, 0] = 79.0
    poses[5, 3, 0] = 80.5  # 40.5 mm from frame 2: kept
    poses[6] = poses[5]
    assert motion_frames(poses).tolist() == [0, 2, 5] == reference_motion_frames(poses)
    assert motion_frames(np.zeros((0, 32, 3))).tolist() == []


def test_test_subjects_take_every_64th_frame_and_training_needs_poses():
    s9 = metadata.sequence("S9", "Walking-1")
    assert original_frames(s9).tolist() == list(range(0, s9.num_frames, 64))
    s1 = metadata.sequence("S1", "Walking-1")
    with pytest.raises(DataError, match="D3_Positions_mono_universal/Walking 1.54138969.cdf"):
        sequence_frames(s1, "original", 5, 5, None)
    assert sequence_frames(s1, "stride", 3, 5) == tuple(range(0, s1.num_frames, 3))
    # frames counted in the pose file (a shorter or synthetic file) replace the official count
    assert sequence_frames(s1, "stride", 3, 5, n_frames=10) == (0, 3, 6, 9)
    assert sequence_frames(s9, "original", 5, 5, n_frames=129) == (0, 64, 128)
    with pytest.raises(DataError, match="--selection 'every'"):
        sequence_frames(s1, "every", 5, 5)


def test_original_test_table_counts_and_order():
    """2,181 frames = karfly#125's val.pkl; 2,107 without the damaged S9 sequences (the other count in #125)."""
    table = original_test_table()
    rows = []  # slow reference: the original's nested loops over subjects, its action list, frames
    for subject in ("S9", "S11"):
        for name in ORIGINAL_ACTION_NAMES:
            seq = metadata.sequence(subject, name)
            rows += [(subject, seq.action, seq.trial, f) for f in range(0, seq.num_frames, 64)]
    assert len(table) == len(rows) == 2181
    assert list(zip(table.subject, table.action, table.trial.tolist(), table.frame.tolist(), strict=True)) == rows
    damaged = {("S9", "Greeting", 2), ("S9", "SittingDown", 2), ("S9", "Waiting", 1)}
    assert sum((s, a, t) not in damaged for s, a, t, _ in rows) == 2107
    s11_dir2 = (table.subject == "S11") & (table.action == "Directions") & (table.trial == 2)
    assert table.cameras[s11_dir2].tolist() == [[False, True, True, True]] * int(s11_dir2.sum())
    assert table.cameras[~s11_dir2].all()


def test_row_order_is_the_original_tables():
    rng = np.random.default_rng(0)
    n = 400
    subject = rng.choice(ORIGINAL_SUBJECTS, n)
    seq = rng.choice(ORIGINAL_ACTION_NAMES, n)
    action = np.array([s.rsplit("-", 1)[0] for s in seq])
    trial = np.array([int(s.rsplit("-", 1)[1]) for s in seq])
    frame = rng.integers(0, 50, n)
    order = original_row_order(subject, action, trial, frame)
    keys = [(ORIGINAL_SUBJECTS.index(subject[i]), ORIGINAL_ACTION_NAMES.index(seq[i]), frame[i]) for i in order]
    assert keys == sorted(keys)
    # frame_table: distinct frames of a split in that order, with their cameras
    camera = rng.choice(metadata.camera_ids(), n)
    table = frame_table(subject, action, trial, camera, frame, ["S1", "S5"])
    expected = sorted({(ORIGINAL_SUBJECTS.index(subject[i]), ORIGINAL_ACTION_NAMES.index(seq[i]), frame[i])
                       for i in range(n) if subject[i] in ("S1", "S5")})
    got = [(ORIGINAL_SUBJECTS.index(s), ORIGINAL_ACTION_NAMES.index(f"{a}-{t}"), f)
           for s, a, t, f in zip(table.subject, table.action, table.trial, table.frame, strict=True)]
    assert got == expected
    for k, (s, a, t, f) in enumerate(zip(table.subject, table.action, table.trial, table.frame, strict=True)):
        cams = {camera[i] for i in range(n) if (subject[i], action[i], trial[i], frame[i]) == (s, a, t, f)}
        assert {c for c, on in zip(metadata.camera_ids(), table.cameras[k], strict=True) if on} == cams
