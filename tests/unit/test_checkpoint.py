"""Run checkpoints: weights-only format, atomic writes, what a stop leaves (CPU, stand-in model)."""

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
from ctxpose.errors import CheckpointError, Stopped
from ctxpose.utils.seed import get_rng_state
from tests.unit.engine_standins import StandinModel, standin_losses, standin_model, standin_sets

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


def test_ctrl_c_stops_after_the_step_with_a_checkpoint_of_it(tmp_path: Path) -> None:
    """Bit-for-bit resume from such a checkpoint: tests/e2e/test_signals.py (the real command and model)."""
    def ctrl_c_at_2(step: int, total: int, scalars: dict) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Stopped, match=f"^continue with --resume {tmp_path / 'run'} "):
        train(_cfg(), standin_model(dropout=True), *standin_sets(), tmp_path / "run", "cpu", progress=ctrl_c_at_2,
              loss_fn=standin_losses)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is restored
    saved = _state(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["epoch_step"], saved["step"]) == (0, 2, 2)
    assert int(saved["model"]["backbone.1.num_batches_tracked"]) == 2  # batch norm of exactly 2 steps
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "scalars.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_resume_with_another_model_size_names_the_file_and_the_keys(tmp_path: Path) -> None:
    train_set, _ = standin_sets()
    first = train(_cfg(), standin_model(), train_set, None, tmp_path / "run", "cpu", max_steps=1,
                  loss_fn=standin_losses)
    wider = standin_model()
    wider.volume_net[1] = torch.nn.Linear(64, 48)  # another model size than the run was made with
    wider.volume_net[4] = torch.nn.Linear(48, wider.volume_net[4].out_features)
    with pytest.raises(CheckpointError) as e:
        train(_cfg(), wider, train_set, None, tmp_path / "run", "cpu", resume=first.checkpoint,
              loss_fn=standin_losses)
    message = str(e.value)
    assert str(first.checkpoint) in message and "(--resume)" in message and "\n" not in message
    assert "volume_net.1.weight (32, 64) vs (48, 64)" in message
