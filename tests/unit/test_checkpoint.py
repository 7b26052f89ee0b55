"""Run checkpoints: weights-only format, atomic writes, bit-for-bit resume (CPU, stand-in model)."""

from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from ctxpose.config import load_config
from ctxpose.engine import checkpoint as ckpt
from ctxpose.engine.runs import resolve_resume
from ctxpose.engine.trainer import train
from ctxpose.errors import CheckpointError
from ctxpose.utils.seed import get_rng_state
from tests.unit.engine_standins import StandinModel, standin_components

ROOT = Path(__file__).resolve().parents[2]


def _cfg(*extra: str):
    # 12 objects / batch 4 = 3 steps per epoch; MultiStepLR at epoch 1 so the lr changes mid-run.
    return load_config(ROOT / "configs/tiny_cpu.yaml", [
        "train.n_objects_per_epoch=12", "train.n_epochs=3", "train.batch_size=4",
        "train.backbone_lr_step=[1]", "train.volume_net_lr_step=[1]", "train.vis_freq=0", *extra])


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def test_checkpoint_round_trip_is_weights_only(tmp_path: Path) -> None:
    model = StandinModel()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(2, 1, 3, 8, 8), torch.zeros(2, 1, 3, 4), torch.zeros(2, 3)).keypoints_3d.sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [1], 0.5)
    state = ckpt.TrainState(epoch=2, epoch_step=1, step=7, nan_steps=1)
    rng = [get_rng_state(), get_rng_state()]  # two ranks
    path = ckpt.save_run_checkpoint(tmp_path / "c" / "last.pt", model, {"volume": opt}, {"volume": sched}, None,
                                    state, {"train": {"seed": 3}}, rng)
    raw = _state(path)  # an independent reader: plain torch.load with weights_only=True
    assert raw["format"] == "ctxpose-run" and raw["step"] == 7 and raw["config"] == {"train": {"seed": 3}}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(raw["model"][k], v, rtol=0, atol=0)
    assert len(raw["rng"]) == raw["world_size"] == 2 and set(raw["rng"][1]) >= {"python", "numpy", "torch"}
    model2 = StandinModel()
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.1)
    sched2 = torch.optim.lr_scheduler.MultiStepLR(opt2, [1], 0.5)
    got = ckpt.restore_run_checkpoint(ckpt.read_run_checkpoint(path), model2, {"volume": opt2},
                                      {"volume": sched2}, None)
    assert (got.epoch, got.epoch_step, got.step, got.nan_steps) == (2, 1, 7, 1)
    exp_avg = opt.state_dict()["state"][0]["exp_avg"]
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"], exp_avg, rtol=0, atol=0)


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = StandinModel()
    path = tmp_path / "last.pt"
    ckpt.save_run_checkpoint(path, model, {}, {}, None, ckpt.TrainState(step=1), {}, [get_rng_state()])

    def full_disk(obj, f, *a, **k):  # as torch does it: the OSError hides behind "unexpected pos"
        f.write(b"partial")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as e:
        ckpt.save_run_checkpoint(path, model, {}, {}, None, ckpt.TrainState(step=2), {}, [get_rng_state()])
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(path))  # names the file, not the temp name
    assert _state(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_unreadable_or_foreign_file_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: not a torch weights file") as e:
        ckpt.read_run_checkpoint(bad)
    assert "\n" not in str(e.value)
    plain = tmp_path / "weights.pt"
    torch.save(StandinModel().state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a ctxpose run checkpoint"):
        ckpt.read_run_checkpoint(plain)


def test_resume_auto_picks_latest_run_folder(tmp_path: Path) -> None:
    for name in ("tiny_cpu_a", "tiny_cpu_b", "tiny_cpu_c"):
        ckpt.save_run_checkpoint(tmp_path / name / "checkpoints" / "last.pt", StandinModel(), {}, {}, None,
                                 ckpt.TrainState(), {}, [get_rng_state()])
    for name in ("tiny_cpu_a", "tiny_cpu_b"):
        (tmp_path / name / "run_info.json").write_text('{"ctxpose": "0.1.0"}')
    os.utime(tmp_path / "tiny_cpu_a" / "checkpoints" / "last.pt", (1, 1))
    # c is newest but is not a run folder of ours (no run_info.json)
    assert resolve_resume("auto", tmp_path, "tiny_cpu") == (tmp_path / "tiny_cpu_b" / "checkpoints" / "last.pt",
                                                             tmp_path / "tiny_cpu_b")
    with pytest.raises(CheckpointError, match="not found"):
        resolve_resume(str(tmp_path / "nope"), tmp_path, "x")


def test_rng_states_are_restored_per_rank(tmp_path: Path) -> None:
    torch.manual_seed(1)
    first = get_rng_state()
    torch.manual_seed(2)
    second = get_rng_state()
    payload = {"rng": [first, second]}
    torch.manual_seed(99)
    assert ckpt.restore_rng(payload, rank=1, world_size=2)
    assert torch.equal(torch.get_rng_state(), second["torch"])
    assert not ckpt.restore_rng(payload, rank=0, world_size=3)  # another world size: nothing restored


def test_resume_mid_epoch_is_bit_for_bit(tmp_path: Path) -> None:
    """2 steps, stop, resume for 2 more == 4 uninterrupted steps (crosses an epoch, an lr step, dropout)."""
    cfg = _cfg()
    comps = standin_components(dropout=True)
    full = train(cfg, tmp_path / "full", "cpu", max_steps=4, validate=False, components=comps)
    assert full.steps == 4 and full.epochs_completed == 1
    part = train(cfg, tmp_path / "part", "cpu", max_steps=2, validate=False, components=comps)
    assert part.steps == 2 and _state(part.checkpoint)["epoch_step"] == 2
    resumed = train(cfg, tmp_path / "ignored", "cpu", max_steps=4, validate=False, components=comps,
                    resume=part.checkpoint)
    assert resumed.steps == 4
    a, b = _state(full.checkpoint), _state(resumed.checkpoint)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=0, atol=0)  # bit-for-bit on CPU
    for name in a["optimizers"]:
        for idx, st in a["optimizers"][name]["state"].items():
            torch.testing.assert_close(b["optimizers"][name]["state"][idx]["exp_avg_sq"], st["exp_avg_sq"],
                                       rtol=0, atol=0)
    assert a["schedulers"] == b["schedulers"]
    # lr really dropped after epoch 0 (factor 0.1 for the backbone), so the scheduler state was exercised
    assert b["optimizers"]["backbone"]["param_groups"][0]["lr"] == pytest.approx(cfg.train.backbone_lr * 0.1)
    # and resuming really mattered: a fresh 2-step run lands elsewhere
    assert not torch.equal(_state(part.checkpoint)["model"]["volume_net.1.weight"],
                           b["model"]["volume_net.1.weight"])


def test_ctrl_c_stops_after_the_step_with_a_checkpoint_that_resumes_exactly(tmp_path: Path) -> None:
    cfg = _cfg()
    comps = standin_components(dropout=True)

    def ctrl_c_at_2(step: int, total: int, scalars: dict) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    res = train(cfg, tmp_path / "run", "cpu", validate=False, components=comps, progress=ctrl_c_at_2)
    assert res.stopped == "signal" and res.steps == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
    saved = _state(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["epoch_step"], saved["step"]) == (0, 2, 2)
    assert int(saved["model"]["backbone.1.num_batches_tracked"]) == 2  # batch norm of exactly 2 steps
    resumed = train(cfg, tmp_path / "run", "cpu", max_steps=4, validate=False, components=comps,
                    resume=tmp_path / "run" / "checkpoints" / "last.pt")
    full = train(cfg, tmp_path / "full", "cpu", max_steps=4, validate=False, components=comps)
    for key, value in _state(full.checkpoint)["model"].items():
        torch.testing.assert_close(_state(resumed.checkpoint)["model"][key], value, rtol=0, atol=0)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # each step logged once across the stop and the resume


def _build_wider(cfg: object) -> torch.nn.Module:
    model = StandinModel()
    model.volume_net[1] = torch.nn.Linear(64, 48)  # another model size than the run was made with
    model.volume_net[4] = torch.nn.Linear(48, model.volume_net[4].out_features)
    return model


def test_resume_with_another_model_size_names_the_file_and_the_keys(tmp_path: Path) -> None:
    from dataclasses import replace

    comps = standin_components(dropout=False)
    first = train(_cfg(), tmp_path / "run", "cpu", max_steps=1, validate=False, components=comps)
    with pytest.raises(CheckpointError) as e:
        train(_cfg(), tmp_path / "run", "cpu", validate=False, resume=first.checkpoint,
              components=replace(comps, build_model=_build_wider))
    message = str(e.value)
    assert str(first.checkpoint) in message and "(--resume)" in message and "\n" not in message
    assert "volume_net.1.weight (32, 64) vs (48, 64)" in message
