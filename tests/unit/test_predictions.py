"""Restricted unpickling and root predictions (released results pickle, our predictions.npz)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from ctxpose.data.datasets import Human36MDataset
from ctxpose.data.predictions import load_npy_object, load_pickle, load_root_predictions
from ctxpose.errors import DataError
from tests.unit import dataset_fixtures as F

SK = F.SK


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "results.pkl"
    path.write_bytes(pickle.dumps({"keypoints_3d": np.zeros((1, 2, 3)), "x": _Evil(str(marker))}))
    with pytest.raises(DataError) as e:
        load_pickle(path)
    message = str(e.value)
    assert "results.pkl" in message and "system" in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_pickle_loads(tmp_path, protocol):
    data = {"keypoints_3d": np.arange(12.0).reshape(2, 2, 3), "indexes": np.array([1, 0]),
            "names": ["a", ("b", 1)], "structured": np.zeros(2, dtype=[("k", np.float32, (2, 3))]),
            "scalar": np.float32(1.5)}
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    out = load_pickle(path)
    np.testing.assert_array_equal(out["keypoints_3d"], data["keypoints_3d"])
    assert out["names"] == ["a", ("b", 1)] and out["structured"].dtype == data["structured"].dtype
    assert out["scalar"] == np.float32(1.5)


def test_original_labels_npy_loads_without_unsafe_pickle(original):
    _, labels_path = original
    restricted = load_npy_object(labels_path)
    reference = np.load(labels_path, allow_pickle=True).item()  # unsafe reader, for comparison only
    assert restricted["subject_names"] == reference["subject_names"]
    np.testing.assert_array_equal(restricted["table"], reference["table"])


def _split_frames(subjects):
    """(seq_idx, frame) of the split's frames in the original table order."""
    return [(s, f) for s, (subj, _, _) in enumerate(F.SEQUENCES) if subj in subjects for f in F.FRAMES]


def _released(path, subjects, rng, offset=np.array([10.0, -20.0, 5.0])):
    frames = _split_frames(subjects)
    kp = np.stack([F.pose(s, f) + offset for s, f in frames])
    perm = rng.permutation(len(frames))  # stored in any order, sorted by 'indexes' on load
    with open(path, "wb") as fh:
        pickle.dump({"keypoints_3d": kp[perm], "indexes": np.arange(len(frames))[perm]}, fh)
    return offset


@pytest.mark.parametrize("layout", ["ours", "original"])
def test_released_results_map_to_every_view_of_their_frame(layout, ours, original, tmp_path):
    root, labels = (ours, None) if layout == "ours" else original
    rng = np.random.default_rng(0)
    offset = _released(tmp_path / "val.pkl", ["S9", "S11"], rng)
    # filtering (damaged actions, every 2nd frame, a camera) happens after the file is indexed by frame
    ds = Human36MDataset(root, "val", labels_path=labels, image_shape=(32, 32), with_damaged_actions=False,
                         retain_every_n_frames_in_test=2, ignore_cameras=(2,),
                         use_gt_pelvis=False, pred_results_path=tmp_path / "val.pkl")
    ids = ds.sample_ids()
    for i in range(len(ds)):
        seq = next(s for s, (subj, act, tr) in enumerate(F.SEQUENCES)
                   if subj == ds.subject_names[ids["subject_idx"][i]] and act == ds.action_names[ids["action_idx"][i]]
                   and tr == ids["trial"][i])
        np.testing.assert_allclose(ds[i]["root"], F.pose(seq, ids["frame"][i])[SK.root] + offset, atol=1e-3)
    gt = Human36MDataset(root, "val", labels_path=labels, image_shape=(32, 32), with_damaged_actions=False,
                         retain_every_n_frames_in_test=2, ignore_cameras=(2,))
    np.testing.assert_allclose(gt[0]["root"] + offset, ds[0]["root"], atol=1e-3)


def test_released_results_count_mismatch_is_one_clear_line(ours, tmp_path):
    _released(tmp_path / "s9.pkl", ["S9"], np.random.default_rng(1))  # made without S11
    with pytest.raises(DataError) as e:
        Human36MDataset(ours, "val", image_shape=(32, 32), use_gt_pelvis=False, pred_results_path=tmp_path / "s9.pkl")
    msg = str(e.value)
    n_s9, n_val = len(_split_frames(["S9"])), len(_split_frames(["S9", "S11"]))
    assert f"s9.pkl (val.pred_results_path): has {n_s9} poses" in msg and f"split has {n_val} frames" in msg
    assert "--selection original" in msg and "\n" not in msg
    ds = Human36MDataset(ours, "val", subjects=("S9",), image_shape=(32, 32), use_gt_pelvis=False,
                         pred_results_path=tmp_path / "s9.pkl")
    assert len(ds) == 4 * n_s9
    with open(tmp_path / "dup.pkl", "wb") as fh:
        pickle.dump({"keypoints_3d": np.zeros((n_val, SK.num_joints, 3)), "indexes": np.zeros(n_val, int)}, fh)
    with pytest.raises(DataError, match="not a permutation"):
        Human36MDataset(ours, "val", image_shape=(32, 32), use_gt_pelvis=False, pred_results_path=tmp_path / "dup.pkl")


def test_our_npz_predictions_are_matched_by_index_and_ids_checked(ours, tmp_path):
    ds = Human36MDataset(ours, "val", image_shape=(32, 32))
    n = len(ds)
    rng = np.random.default_rng(2)
    perm = rng.permutation(n)
    kp = rng.normal(size=(n, SK.num_joints, 3)) * 100
    ids = ds.sample_ids()
    np.savez(tmp_path / "predictions.npz", index=perm, keypoints_3d=kp[perm],
             **{k: v[perm] for k, v in ids.items()})
    roots = load_root_predictions(tmp_path / "predictions.npz", ds)
    np.testing.assert_allclose(roots, kp[:, SK.root])
    bad = ids["frame"].copy()
    bad[3] += 1
    np.savez(tmp_path / "wrong_ids.npz", index=np.arange(n), keypoints_3d=kp, frame=bad)
    with pytest.raises(DataError, match="frame of sample 3 is"):
        load_root_predictions(tmp_path / "wrong_ids.npz", ds)
    np.savez(tmp_path / "short.npz", index=np.arange(n - 1), keypoints_3d=kp[:-1])
    with pytest.raises(DataError, match=f"has {n - 1} predictions .* has {n} samples"):
        load_root_predictions(tmp_path / "short.npz", ds)
    np.savez(tmp_path / "joints.npz", index=np.arange(n), keypoints_3d=kp[:, :5])
    with pytest.raises(DataError, match="'keypoints_3d' has shape"):
        load_root_predictions(tmp_path / "joints.npz", ds)
    with pytest.raises(DataError, match="not found"):
        load_root_predictions(tmp_path / "absent.npz", ds)


def test_use_gt_pelvis_decides_the_root_in_both_directions(ours, tmp_path, caplog):
    """The flag, from the config or the argument, decides; a path it does not use is named in a warning."""
    import logging

    from ctxpose.config import load_config

    offset = _released(tmp_path / "val.pkl", ["S9", "S11"], np.random.default_rng(2))
    common = [f"dataset.root={ours}", "model.image_shape=[32,32]", f"val.pred_results_path={tmp_path / 'val.pkl'}",
              f"train.pred_results_path={tmp_path / 'val.pkl'}"]
    estimated = Human36MDataset.from_config(load_config(None, [*common, "model.volume_net.use_gt_pelvis=false"]),
                                            "val")
    with caplog.at_level(logging.WARNING):
        truth = Human36MDataset.from_config(load_config(None, [*common, "model.volume_net.use_gt_pelvis=true"]),
                                            "val")
    assert "pred_results_path: unused" in caplog.text
    for i in (0, len(truth) - 1):
        np.testing.assert_allclose(truth[i]["root"], truth[i]["keypoints_3d"][SK.root], atol=1e-4)
        np.testing.assert_allclose(estimated[i]["root"], truth[i]["root"] + offset, atol=1e-3)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        explicit = Human36MDataset(ours, "val", image_shape=(32, 32), use_gt_pelvis=True,
                                   pred_results_path=tmp_path / "val.pkl")
    assert "val.pkl: unused, use_gt_pelvis is true" in caplog.text
    np.testing.assert_allclose(explicit[0]["root"], truth[0]["root"])
    with pytest.raises(DataError, match="val.pred_results_path: not set, but use_gt_pelvis is false"):
        Human36MDataset(ours, "val", image_shape=(32, 32), use_gt_pelvis=False)


def test_the_skeleton_reaches_the_dataset_and_the_root_estimates(ours, tmp_path, monkeypatch):
    """A skeleton with another root joint: the dataset's root and the released estimates' joint follow it."""
    import dataclasses

    from ctxpose import skeleton as skeleton_module

    other = dataclasses.replace(SK, name="root_at_hip", root=2)
    monkeypatch.setitem(skeleton_module.SKELETONS, other.name, other)
    with pytest.raises(DataError, match="labels of skeleton 'contextpose17'"):  # labels record their skeleton
        Human36MDataset(ours, "val", image_shape=(32, 32), skeleton=other)
    import json

    from ctxpose.data.labels import load_labels

    labels = load_labels(ours / "labels.npz")
    labels.meta = {**labels.meta, "skeleton": other.name}
    (tmp_path / "images").symlink_to(ours / "images", target_is_directory=True)
    labels.save(tmp_path / "labels.npz")
    ds = Human36MDataset(tmp_path, "val", image_shape=(32, 32), skeleton=other.name)
    np.testing.assert_allclose(ds[0]["root"], ds[0]["keypoints_3d"][2])
    _released(tmp_path / "val.pkl", ["S9", "S11"], np.random.default_rng(3), offset=np.zeros(3))
    est = Human36MDataset(tmp_path, "val", image_shape=(32, 32), skeleton=other, use_gt_pelvis=False,
                          pred_results_path=tmp_path / "val.pkl")
    np.testing.assert_allclose(est[0]["root"], ds[0]["keypoints_3d"][2], atol=1e-3)
    assert json.loads(str(np.load(tmp_path / "labels.npz")["meta"]))["skeleton"] == other.name


class _TableDataset:
    """RootDataset over frames of the original test table (one camera), optionally with our labels' meta."""

    def __init__(self, split, subjects, actions, trials, frames, root=None):
        self.split, self.format, self.root = split, "ctxpose" if root else "original", root
        self.skeleton = SK
        self.subject_names = sorted(set(subjects), key=lambda s: int(s[1:]))
        self.action_names = sorted(set(actions))
        self.camera_names = ["55011271"]
        self.cols = (np.array(subjects), np.array(actions), np.array(trials), np.array(frames))

    def __len__(self):
        return len(self.cols[0])

    def sample_ids(self):
        s, a, t, f = self.cols
        return {"subject_idx": np.array([self.subject_names.index(x) for x in s]),
                "action_idx": np.array([self.action_names.index(x) for x in a]), "trial": t,
                "camera_idx": np.zeros(len(s), np.int64), "frame": f}

    def split_frame_positions(self):
        return np.arange(len(self)), len(self)


def test_released_val_file_is_checked_frame_by_frame_against_the_original_test_table(tmp_path):
    from ctxpose.data.h36m.selection import original_test_table

    table = original_test_table()
    kp = np.random.default_rng(0).normal(size=(len(table), SK.num_joints, 3))
    path = tmp_path / "val.pkl"
    path.write_bytes(pickle.dumps({"keypoints_3d": kp, "indexes": np.arange(len(table))}))
    good = _TableDataset("val", table.subject, table.action, table.trial, table.frame)
    np.testing.assert_allclose(load_root_predictions(path, good), kp[:, SK.root])
    stride = table.frame.copy()
    stride[5] += 1  # same count, another frame (as labels made with another selection would have)
    bad = _TableDataset("val", table.subject, table.action, table.trial, stride)
    with pytest.raises(DataError, match=r"counts agree but 1 samples are other frames.*sample 5 is S9/"
                                        r"Directions-1 frame 321, row 5 of the file is S9/Directions-1 frame 320.*"
                                        r"--selection original"):
        load_root_predictions(path, bad)


def test_released_train_file_on_stride_labels_is_refused_even_when_counts_agree(tmp_path):
    import json

    meta = {"format": "ctxpose-labels", "version": 1, "selection": {"rule": "stride", "train_every": 2}}
    np.savez(tmp_path / "labels.npz", meta=np.array(json.dumps(meta)))
    n = 6
    ds = _TableDataset("train", ["S1"] * n, ["Walking"] * n, [1] * n, np.arange(n) * 2, root=tmp_path)
    path = tmp_path / "train.pkl"
    path.write_bytes(pickle.dumps({"keypoints_3d": np.zeros((n, SK.num_joints, 3)), "indexes": np.arange(n)}))
    with pytest.raises(DataError, match=r"counts agree \(6 frames\) but the labels were made with --selection "
                                        r"stride.*--selection original"):
        load_root_predictions(path, ds)
    meta["selection"] = {"rule": "original"}
    np.savez(tmp_path / "labels.npz", meta=np.array(json.dumps(meta)))
    assert load_root_predictions(path, ds).shape == (n, 3)
