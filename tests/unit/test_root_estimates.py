"""Pelvis estimates made by ctxpose: a multi-view model's ``ctxpose eval`` output is ContextPose's
``pred_results_path`` as is, for any selection of frames (matched by sample ids, not by row order).

The multi-view model here is a stand-in whose output is known: it finds the white disc the fixtures draw at
the projected pelvis in every view and triangulates it (DLT over the views) -- a real multi-view estimate
from the images and projections the dataset returns, within a few mm of the ground-truth pelvis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from ctxpose.data.datasets import Human36MDataset
from ctxpose.data.loaders import make_eval_loader
from ctxpose.data.predictions import load_root_predictions
from ctxpose.engine.evaluator import PoseEvaluator, save_eval
from ctxpose.errors import DataError
from tests.unit import dataset_fixtures as F

SK = F.SK
#: the stand-in puts joint j at the pelvis + (j - root) * this, so only the root joint is the pelvis itself
JOINT_STEP = np.array([10.0, -4.0, 7.0])


@dataclass
class _Output:
    keypoints_3d: torch.Tensor


class DiscTriangulator(nn.Module):
    """Triangulates the brightest blob of each view (the drawn pelvis disc) with the views' projections."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))  # the evaluator reads the model's dtype from a parameter

    def forward(self, images: torch.Tensor, proj_matrices: torch.Tensor, root_points: torch.Tensor | None = None,
                rotation_angles: torch.Tensor | None = None) -> _Output:
        b, v = images.shape[:2]
        poses = []
        for i in range(b):
            rows = []
            for j in range(v):
                bright = images[i, j].double().sum(0)
                ys, xs = torch.nonzero(bright >= bright.max() - 0.5, as_tuple=True)
                u, w = xs.double().mean(), ys.double().mean()
                P = proj_matrices[i, j].double()
                rows += [u * P[2] - P[0], w * P[2] - P[1]]
            _, _, vh = torch.linalg.svd(torch.stack(rows))
            x = vh[-1, :3] / vh[-1, 3]
            steps = torch.arange(SK.num_joints, dtype=torch.float64)[:, None] - SK.root
            poses.append(x + steps * torch.as_tensor(JOINT_STEP))
        return _Output(torch.stack(poses).float())


def _read(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _frame_keys(data: dict[str, np.ndarray]) -> list[tuple[str, str, int, int]]:
    """(subject, action, trial, frame) of each row, decoded with the file's own names."""
    return [(str(data["subject_names"][s]), str(data["action_names"][a]), int(t), int(f))
            for s, a, t, f in zip(data["subject_idx"], data["action_idx"], data["trial"], data["frame"], strict=True)]


@pytest.fixture(scope="module")
def multiview_predictions(ours, tmp_path_factory):
    """The files ``ctxpose eval`` writes (its evaluator and ``save_eval``) for the stand-in on 4-view val samples:
    the predictions.npz path."""
    ds = Human36MDataset(ours, "val", image_shape=(64, 64), max_n_views=4, randomize_n_views=False)
    evaluator, model = PoseEvaluator(ds), DiscTriangulator()
    for batch in make_eval_loader(ds, batch_size=4):
        evaluator.process(batch, model(batch["images"], batch["proj_matrices"], batch["root"]))
    out = tmp_path_factory.mktemp("alg_eval")
    save_eval(evaluator.summarize(), out)
    return out / "predictions.npz"


def test_eval_writes_multiview_pelvis_estimates_keyed_by_frame(multiview_predictions):
    data = _read(multiview_predictions)
    assert data["camera_indices"].shape == (len(data["index"]), 4)
    truth = {(subject, action, trial, frame): F.pose(s, frame)[SK.root]
             for s, (subject, action, trial) in enumerate(F.SEQUENCES) for frame in F.FRAMES}
    keys = _frame_keys(data)
    assert sorted(keys) == sorted(k for k in truth if k[0] in ("S9", "S11"))
    pelvis = data["keypoints_3d"][:, SK.root]
    error = np.linalg.norm(pelvis - np.array([truth[k] for k in keys]), axis=-1)
    # the disc is drawn at the rounded pixel (up to 0.7 px off, 39 mm/px at 5 m); other frames' pelvises are
    # ~370 mm away on average, and each row is nearest to its own frame's
    assert error.max() < 40.0
    distances = np.linalg.norm(pelvis[:, None] - np.array([truth[k] for k in keys])[None], axis=-1)
    assert distances.argmin(axis=1).tolist() == list(range(len(keys)))


def test_contextpose_reads_them_for_a_shuffled_subset_of_frames(ours, multiview_predictions, tmp_path):
    """Rows shuffled, frames dropped (another stride, one subject): each single-view ContextPose sample's
    cuboid centre is its frame's written pelvis, whatever its camera."""
    data = _read(multiview_predictions)
    rng = np.random.default_rng(3)
    keep = rng.permutation(np.flatnonzero(data["subject_names"][data["subject_idx"]] == "S9"))
    per_row = [k for k, v in data.items() if v.ndim and len(v) == len(data["index"])]
    subset = {k: (v[keep] if k in per_row else v) for k, v in data.items()}
    np.savez(tmp_path / "subset.npz", **subset)
    pelvis = dict(zip(_frame_keys(subset), subset["keypoints_3d"][:, SK.root], strict=True))
    ds = Human36MDataset(ours, "val", subjects=("S9",), image_shape=(32, 32), max_n_views=1,
                         retain_every_n_frames_in_test=2, ignore_cameras=(1,), use_gt_pelvis=False,
                         pred_results_path=tmp_path / "subset.npz")
    assert len(ds) == 5 * 3  # every 2nd of S9's 10 frames, cameras 0, 2, 3
    cameras = set()
    for i in range(len(ds)):
        item = ds[i]
        key = ("S9", ds.action_names[item["action_idx"]], int(item["trial"]), int(item["frame"]))
        np.testing.assert_allclose(item["root"], pelvis[key], atol=1e-3)
        cameras.add(int(item["camera_idx"]))
    assert cameras == {0, 2, 3}


def test_frames_the_file_lacks_are_one_line_naming_the_first(ours, multiview_predictions, tmp_path):
    data = _read(multiview_predictions)
    drop = next(i for i, k in enumerate(_frame_keys(data)) if k[:2] == ("S11", "Eating"))
    rows = np.arange(len(data["index"])) != drop
    np.savez(tmp_path / "short.npz", **{k: (v[rows] if v.ndim and len(v) == len(rows) else v)
                                        for k, v in data.items()})
    ds = Human36MDataset(ours, "val", image_shape=(32, 32))
    with pytest.raises(DataError, match=r"short.npz \(val.pred_results_path\): 3 of .* val samples have no estimate "
                                        r"\(first S11/Eating-2//\d+\); the file covers \d+ frames; evaluate"):
        load_root_predictions(tmp_path / "short.npz", ds)


def test_single_view_predictions_serve_only_their_own_camera(ours, tmp_path):
    """A one-view model's file is keyed by (frame, camera): another camera's samples have no estimate."""
    ds = Human36MDataset(ours, "val", image_shape=(32, 32), ignore_cameras=(1, 2, 3))
    ids = ds.sample_ids()
    kp = np.random.default_rng(0).normal(size=(len(ds), SK.num_joints, 3)) * 100
    order = np.random.default_rng(1).permutation(len(ds))
    np.savez(tmp_path / "cam0.npz", index=np.arange(len(ds))[order], keypoints_3d=kp[order],
             camera_indices=ids["camera_idx"][order, None], subject_names=np.array(ds.subject_names),
             action_names=np.array(ds.action_names), camera_names=np.array(ds.camera_names),
             skeleton=np.array(SK.name), **{k: v[order] for k, v in ids.items()})
    np.testing.assert_allclose(load_root_predictions(tmp_path / "cam0.npz", ds), kp[:, SK.root])
    s9 = Human36MDataset(ours, "val", subjects=("S9",), image_shape=(32, 32), ignore_cameras=(1, 2, 3))
    np.testing.assert_allclose(load_root_predictions(tmp_path / "cam0.npz", s9), kp[:len(s9), SK.root])
    other = Human36MDataset(ours, "val", image_shape=(32, 32), ignore_cameras=(0, 2, 3))
    with pytest.raises(DataError, match=r"no estimate \(first S9/Directions-1/55011271/0\).* \(frame, camera\)s"):
        load_root_predictions(tmp_path / "cam0.npz", other)


def test_metrics_json_has_learnable_triangulations_numbers_beside_ours(multiview_predictions):
    """The same eval's metrics.json: the protocol's MPJPE by the slow reference, S9 Greeting-2 (damaged) out of
    the absolute numbers only."""
    from tests.unit.test_metrics_triangulation import DAMAGED, _check, reference

    metrics = json.loads((multiview_predictions.parent / "metrics.json").read_text())
    data = _read(multiview_predictions)
    keys = _frame_keys(data)
    ref = reference(data["keypoints_3d"].tolist(), data["keypoints_3d_gt"].tolist(), [k[0] for k in keys],
                    [f"{k[1]}-{k[2]}" for k in keys], SK.root, set(DAMAGED))
    got = metrics["learnable_triangulation"]
    _check(got, ref)
    assert got["overall"]["n_samples"] == 15 and got["overall"]["n_samples_absolute"] == 10
    ours = np.linalg.norm(data["keypoints_3d"] - data["keypoints_3d_gt"], axis=-1).mean()  # Greeting-2 kept
    assert metrics["overall"]["mpjpe"] == pytest.approx(ours, rel=1e-6)
    assert abs(ours - got["overall"]["mpjpe_absolute_all_poses"]) > 0.1
