"""``preprocess_h36m(selection="original")`` on synthetic raw data: the rows are the original's frames.

The motion rule is checked against a per-frame loop written here over the universal poses read back with
cdflib; the test rule against ``range(0, N, 64)``; the released-results loader against estimates made for
exactly those frames.
"""

from __future__ import annotations

import pickle

import cdflib
import numpy as np
import pytest

from ctxpose.data.datasets import Human36MDataset
from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m
from ctxpose.data.h36m.synthesize import synthesize_h36m
from ctxpose.data.labels import load_labels
from ctxpose.errors import DataError
from ctxpose.skeleton import get_skeleton
from tests.unit.test_selection import reference_motion_frames


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw_sel")
    synthesize_h36m(root, subjects=["S1"], actions=["Walking-1"], n_frames=40, size=160, seed=5)
    synthesize_h36m(root, subjects=["S9"], actions=["TakingPhoto-2"], n_frames=70, size=160, seed=6)
    return root


@pytest.fixture(scope="module")
def processed(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("processed_sel")
    report = preprocess_h36m(raw, out, PreprocessOptions(image_size=32, selection="original", bbox_source="poses"))
    assert report.ok, report.failed
    return out


def test_rows_are_the_original_frames(raw, processed):
    labels = load_labels(processed / "labels.npz")
    assert labels.meta["selection"]["rule"] == "original"
    s1 = metadata.sequence("S1", "Walking-1")
    cdf = raw / metadata.raw_relpath("D3_Positions_mono_universal", "S1", s1.base_name, "54138969")
    universal = np.asarray(cdflib.CDF(str(cdf)).varget("Pose")).reshape(-1, 32, 3)  # float32 as stored
    assert universal.dtype == np.float32
    expected = {"S1": reference_motion_frames(universal), "S9": [0, 64]}
    assert 1 < len(expected["S1"]) < 40  # the rule actually skips frames of the synthetic walk
    for subject, frames in expected.items():
        rows = labels.subject == subject
        for cam in metadata.camera_ids():
            got = labels.frame[rows & (labels.camera == cam)]
            assert got.tolist() == frames, (subject, cam)


def test_released_estimates_index_the_labels_row_for_row(processed, tmp_path):
    rng = np.random.default_rng(0)
    frames = [0, 64]
    kp = rng.normal(size=(2, get_skeleton("contextpose17").num_joints, 3)) * 100 + 1000
    perm = np.array([1, 0])
    path = tmp_path / "val.pkl"
    path.write_bytes(pickle.dumps({"keypoints_3d": kp[perm], "indexes": perm}))
    ds = Human36MDataset(processed, "val", image_shape=(32, 32), use_gt_pelvis=False, pred_results_path=path)
    ids = ds.sample_ids()
    assert len(ds) == 8
    for i in range(len(ds)):
        root = get_skeleton("contextpose17").root
        np.testing.assert_allclose(ds[i]["root"], kp[frames.index(int(ids["frame"][i])), root], rtol=1e-6)
    path.write_bytes(pickle.dumps({"keypoints_3d": kp[:1], "indexes": np.array([0])}))
    with pytest.raises(DataError, match="has 1 poses.*split has 2 frames.*--selection original"):
        Human36MDataset(processed, "val", image_shape=(32, 32), use_gt_pelvis=False, pred_results_path=path)


def test_dry_run_and_refused_combinations(raw, tmp_path):
    report = preprocess_h36m(raw, tmp_path / "dry", PreprocessOptions(selection="original", dry_run=True))
    planned = {p["sequence"]: (p["frames"], p["crops"], p["frames_from"]) for p in report.planned}
    s9 = metadata.sequence("S9", "TakingPhoto-2")
    on_disk = len(cdflib.CDF(str(raw / metadata.raw_relpath("D3_Positions", "S9", s9.base_name))).varget("Pose")[0])
    assert on_disk == 70 < s9.num_frames  # dry runs count the frames in the pose file, not the official count
    assert planned == {"S1/Walking-1": (None, None, "pose file"),  # None: chosen by motion, known once read
                       "S9/TakingPhoto-2": (len(range(0, on_disk, 64)), 4 * len(range(0, on_disk, 64)), "pose file")}
    with pytest.raises(DataError, match="apply to --selection stride"):
        preprocess_h36m(raw, tmp_path / "x", PreprocessOptions(selection="original", train_every=2))
    with pytest.raises(DataError, match="--selection 'motion'"):
        preprocess_h36m(raw, tmp_path / "x", PreprocessOptions(selection="motion"))


def test_missing_universal_poses_fail_that_sequence_only(raw, tmp_path):
    import shutil

    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    (copy / metadata.raw_relpath("D3_Positions_mono_universal", "S1", "Walking 1", "54138969")).unlink()
    report = preprocess_h36m(copy, tmp_path / "out", PreprocessOptions(image_size=32, selection="original",
                                                                       bbox_source="poses"))
    assert list(report.failed) == ["S1/Walking-1"] and "D3_Positions_mono_universal" in report.failed["S1/Walking-1"]
    assert [r.key for r in report.done] == ["S9/TakingPhoto-2"]


def test_universal_poses_are_read_from_the_official_archive(tmp_path):
    raw = tmp_path / "raw"
    synthesize_h36m(raw, subjects=["S1"], actions=["Walking-1"], n_frames=12, size=160, seed=2, archives=True)
    assert (raw / "Poses_D3_Positions_mono_universal_S1.tgz").is_file() and not (raw / "S1").exists()
    report = preprocess_h36m(raw, tmp_path / "out", PreprocessOptions(image_size=32, selection="original",
                                                                      bbox_source="poses"))
    assert report.ok and [r.key for r in report.done] == ["S1/Walking-1"]
    assert load_labels(tmp_path / "out" / "labels.npz").frame[:1].tolist() == [0]
