"""Several views end to end through the command line: train ContextPose with 2..3 random views per sample, evaluate
it on every camera of each frame, and use that multi-view evaluation as the single-view protocol's pelvis
estimates (``pred_results_path``) without any other file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ctxpose.config import load_config
from tests.cli.in_process import run_in_process
from tests.e2e.engine_data import ROOT, tiny_overrides

pytestmark = pytest.mark.slow


def _sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def test_train_and_eval_with_several_views_then_their_pelvis_roots_the_single_view_eval(processed, tmp_path):
    config = str(ROOT / "configs/tiny_cpu.yaml")
    views = ["train.n_epochs=1", "train.max_n_views=3", "train.min_n_views=2", "val.max_n_views=null",
             "val.randomize_n_views=false"]
    r = run_in_process("train", config, "--device", "cpu", "--logdir", str(tmp_path / "runs"), "--no-val",
                       *_sets([*tiny_overrides(processed), *views]))
    assert r.returncode == 0, r.stdout + r.stderr
    [run] = list((tmp_path / "runs").iterdir())
    out = tmp_path / "eval4"
    r = run_in_process("eval", str(run), "--device", "cpu", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "learnable-triangulation protocol" in r.stdout
    with np.load(out / "predictions.npz", allow_pickle=False) as z:
        pred = {k: z[k] for k in z.files}
    n = len(pred["index"])
    assert n == 2 and pred["camera_indices"].tolist() == [[0, 1, 2, 3]] * n  # 6 S9 frames, every 3rd, 4 views
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["learnable_triangulation"]["overall"]["n_samples"] == n

    # the prediction is the model's on the 4 views: recomputed by hand from the dataset item
    from ctxpose.data.datasets import Human36MDataset
    from ctxpose.models import model_from_config

    cfg = load_config(run / "config.yaml")
    model = model_from_config(cfg)
    model.load_state_dict(torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"])
    model.eval()
    item = Human36MDataset.from_config(cfg, "val")[int(pred["index"][1])]
    assert item["images"].shape[0] == 4
    with torch.no_grad():
        again = model(*(torch.as_tensor(item[k])[None] for k in ("images", "proj_matrices", "root")))
    np.testing.assert_allclose(again.keypoints_3d[0].numpy(), pred["keypoints_3d"][1], atol=1e-3)

    # the paper protocol: single-view samples, cuboid centred on those multi-view pelvis estimates
    single = tmp_path / "eval1"
    estimates = ["model.volume_net.use_gt_pelvis=false", f"val.pred_results_path={out / 'predictions.npz'}",
                 f"train.pred_results_path={out / 'predictions.npz'}", "val.max_n_views=1"]
    r = run_in_process("eval", str(run / "config.yaml"), "--checkpoint", str(run / "checkpoints" / "last.pt"),
                       "--device", "cpu", "--out", str(single), *_sets(estimates))
    assert r.returncode == 0, r.stdout + r.stderr
    with np.load(single / "predictions.npz", allow_pickle=False) as z:
        assert len(z["index"]) == 4 * n and z["camera_indices"].shape == (4 * n, 1)
    roots = Human36MDataset.from_config(load_config(run / "config.yaml", estimates), "val")
    for i in range(len(roots)):
        frame = roots[i]["frame"]
        row = int(np.flatnonzero(pred["frame"] == frame)[0])
        np.testing.assert_allclose(roots[i]["root"], pred["keypoints_3d"][row, 6], atol=1e-3)


def test_algebraic_model_trains_on_four_views_and_its_eval_is_contextposes_pelvis_estimates(processed, tmp_path):
    """The paper protocol without a pickle: learnable-triangulation's algebraic model (tiny) trained and evaluated
    on every camera of each frame, on both splits; ContextPose then centres its cuboid on those pelvises."""
    data = [f"dataset.root={processed}", f"dataset.limb_length_path={processed}/mean_and_std_limb_length.h5",
            "train.batch_size=2", "train.n_objects_per_epoch=2", "train.n_epochs=1", "train.vis_freq=0",
            "val.batch_size=2", "val.retain_every_n_frames_in_test=3"]
    r = run_in_process("train", str(ROOT / "configs/tiny_cpu_alg.yaml"), "--device", "cpu", "--logdir",
                       str(tmp_path / "runs"), "--no-val", *_sets(data))
    assert r.returncode == 0, r.stdout + r.stderr
    [run] = list((tmp_path / "runs").iterdir())
    for split in ("train", "val"):
        r = run_in_process("eval", str(run), "--device", "cpu", "--split", split, "--out", str(tmp_path / split))
        assert r.returncode == 0, r.stdout + r.stderr
        with np.load(tmp_path / split / "predictions.npz", allow_pickle=False) as z:
            assert z["camera_indices"].shape == (len(z["index"]), 4)
            assert np.isfinite(z["keypoints_3d"]).all()
    metrics = json.loads((tmp_path / "val" / "metrics.json").read_text())
    assert metrics["learnable_triangulation"]["overall"]["n_samples"] == 2

    ctx = [*tiny_overrides(processed), "model.volume_net.use_gt_pelvis=false",
           f"train.pred_results_path={tmp_path / 'train' / 'predictions.npz'}",
           f"val.pred_results_path={tmp_path / 'val' / 'predictions.npz'}", "train.n_epochs=1"]
    r = run_in_process("train", str(ROOT / "configs/tiny_cpu.yaml"), "--device", "cpu", "--logdir",
                       str(tmp_path / "ctx"), "--no-val", *_sets(ctx))
    assert r.returncode == 0, r.stdout + r.stderr
    from ctxpose.data.datasets import Human36MDataset

    with np.load(tmp_path / "train" / "predictions.npz", allow_pickle=False) as z:
        pelvis = {int(f): kp[6] for f, kp in zip(z["frame"], z["keypoints_3d"], strict=True)}
    train = Human36MDataset.from_config(load_config(ROOT / "configs/tiny_cpu.yaml", ctx), "train")
    assert len(train) == 4 * len(pelvis)  # single-view samples: every camera of every frame
    for i in range(len(train)):
        np.testing.assert_allclose(train[i]["root"], pelvis[int(train[i]["frame"])], atol=1e-3)
