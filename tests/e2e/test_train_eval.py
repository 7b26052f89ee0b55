"""End to end on the real pieces: synthesize -> preprocess -> train (tiny, CPU) -> checkpoint -> eval; files read
back with independent readers, metrics recomputed from predictions.npz with loops. (Stop and bit-for-bit resume:
tests/e2e/test_signals.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from ctxpose.cli.app import app
from ctxpose.config import config_to_dict, load_config
from ctxpose.data.datasets import Human36MDataset
from ctxpose.engine.trainer import initial_model, train
from tests.e2e.engine_data import ROOT, tiny_overrides

pytestmark = pytest.mark.slow


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_train_resume_eval(processed: Path, tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs/tiny_cpu.yaml", tiny_overrides(processed))
    # 2 epochs x 2 steps, validation after each epoch
    full = train(cfg, initial_model(cfg), Human36MDataset.from_config(cfg, "train"),
                 Human36MDataset.from_config(cfg, "val"), tmp_path / "full", "cpu")
    run = tmp_path / "full"
    # run folder, read back independently
    assert yaml.safe_load((run / "config.yaml").read_text()) == config_to_dict(cfg)
    metrics = json.loads((run / "metrics.json").read_text())
    assert [m["epoch"] for m in metrics] == [0, 1] and [m["step"] for m in metrics] == [2, 4]
    assert all(np.isfinite(m["val"]["mpjpe"]) and m["val"]["n_samples"] == 8 for m in metrics)
    assert set(metrics[0]["train"]) >= {"total", "keypoints", "volumetric_ce", "global_attention"}
    scalars = [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines()]
    assert [s["step"] for s in scalars if "train/loss/total" in s] == [1, 2, 3, 4]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"images": 0}).Reload()
    assert len(events.Scalars("train/loss/total")) == 4 and len(events.Images("train/keypoints")) == 2
    assert events.Scalars("val/mpjpe")[-1].value == pytest.approx(metrics[-1]["val"]["mpjpe"], rel=1e-6)

    assert full.steps == 4 and full.epochs_completed == 2

    # eval through the CLI on the run folder
    out = tmp_path / "eval"
    r = CliRunner().invoke(app, ["eval", str(run), "--device", "cpu", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Walking" in r.output
    pred = np.load(out / "predictions.npz")  # numpy reader, no pickle
    payload = json.loads((out / "metrics.json").read_text())
    n = len(pred["index"])
    assert n == 8 and sorted(set(pred["index"].tolist())) == pred["index"].tolist()
    # slow reference: per-pose mean of joint distances, then averaged
    per_pose = [np.mean([np.sqrt(sum((pred["keypoints_3d"][i, j, c] - pred["keypoints_3d_gt"][i, j, c]) ** 2
                                     for c in range(3))) for j in range(pred["keypoints_3d"].shape[1])])
                for i in range(n)]
    assert payload["overall"]["mpjpe"] == pytest.approx(float(np.mean(per_pose)), rel=1e-5)
    assert payload["overall"]["mpjpe"] == pytest.approx(metrics[-1]["val"]["mpjpe"], rel=1e-4)
    assert list(pred["subject_names"][pred["subject_idx"]]) == ["S9"] * n
    # predictions are the model's: recompute one sample by hand
    model = initial_model(cfg, initial_weights=False)
    model.load_state_dict(_weights(full.checkpoint))
    model.eval()
    item = Human36MDataset.from_config(cfg, "val")[int(pred["index"][3])]
    with torch.no_grad():
        out3 = model(*(torch.as_tensor(item[k])[None] for k in ("images", "proj_matrices", "root")))
    np.testing.assert_allclose(out3.keypoints_3d[0].numpy(), pred["keypoints_3d"][3], atol=1e-3)
    np.testing.assert_allclose(item["keypoints_3d"], pred["keypoints_3d_gt"][3], atol=1e-4)


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    import cv2

    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--out", str(out), "--epochs", "1", "--frames", "24", "--set",
                                 "train.n_objects_per_epoch=16", "--set", "val.retain_every_n_frames_in_test=12"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "demo_data.json").read_text())["frames"] == 24
    payload = json.loads((out / "eval" / "metrics.json").read_text())
    mpjpe = payload["overall"]["mpjpe"]
    # S9's 24 frames, every 12th, x 4 actions x 4 cameras
    assert f"trained {mpjpe:.1f} mm" in r.output and payload["overall"]["n_samples"] == 2 * 4 * 4
    image = cv2.imread(str(out / "eval" / "overlay.png"))
    # 4 crops of 64 px drawn at 256 px side by side (2 px gaps) under their titles and a legend
    assert image is not None and image.shape[1] == 4 * 256 + 5 * 2 and image.shape[0] > 256
    assert json.loads((out / "run" / "metrics.json").read_text())[0]["step"] == 2
    # the zero-shot MPI-INF-3DHP step: every valid synthetic frame of TS1-TS6, the official tables
    three = json.loads((out / "eval_3dhp" / "metrics.json").read_text())
    assert three["mpi_inf_3dhp"]["overall"]["n_frames"] == len(np.load(out / "eval_3dhp" / "predictions.npz")["index"])
    assert list(three["mpi_inf_3dhp"]["per_sequence"]) == [f"TS{i}" for i in range(1, 7)]
    assert "MPI-INF-3DHP zero-shot (synthetic): PCK" in r.output and "6/6" in r.output
    # the infer step: S9's videos through the infer path, boxes from a COCO results file, truth from the CDFs
    rows = json.loads((out / "infer" / "measured.json").read_text())["rows"]
    assert [(x["method"], x["camera"]) for x in rows] == [("given", "true"), ("rootnet", "true"), ("rootnet", "fov"),
                                                          ("bones", "true"), ("bones", "fov")]
    assert all(x["frames"] == 4 * 3 and np.isfinite(x["pelvis_median"]) for x in rows)
    assert rows[0]["pelvis_median"] < 50  # the cuboid on the true pelvis: the network keeps it near the centre
    assert "ctxpose infer on held-out synthetic videos" in r.output
    # every visualize mode on the demo's real files
    viz = tmp_path / "viz"
    for args, made in (
        (["dataset", str(out / "processed"), "--subject", "S9", "--frames", "0:20:10", "--raw", str(out / "raw")],
         "contact_sheet.png"),
        (["predictions", str(out / "eval"), "--dataset", str(out / "processed"), "--samples", "2", "--worst", "4"],
         "worst.png"),
        (["model", str(out / "config.yaml"), "--checkpoint", str(out / "run" / "checkpoints" / "last.pt"),
          "--sample", "3", "--device", "cpu"], "attention.png"),
        (["run", str(out / "run")], "curves.png"),
    ):
        r = CliRunner().invoke(app, ["visualize", *args, "--size", "128", "--out", str(viz / args[0])])
        assert r.exit_code == 0, (args[0], r.output)
        assert cv2.imread(str(viz / args[0] / made)) is not None, args[0]
    # predictions.npz carries its crops' paths: the pictures need nothing but the eval folder
    pred = np.load(out / "eval" / "predictions.npz")
    assert str(pred["skeleton"]) == "contextpose17" and tuple(pred["image_shape"]) == (64, 64)
    assert (Path(str(pred["dataset_root"])) / str(pred["image_paths"][0])).is_file()
    r = CliRunner().invoke(app, ["visualize", "predictions", str(out / "eval"), "--samples", "1", "--size", "128",
                                 "--out", str(viz / "alone")])
    assert r.exit_code == 0 and "no image_paths" not in r.output, r.output
    # a second demo into the same folder reuses the data; a folder with foreign data is refused
    (tmp_path / "other" / "raw").mkdir(parents=True)
    r = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "other")])
    assert r.exit_code != 0 and "use an empty --out folder" in str(r.exception)
