"""Real signals to real `ctxpose train` processes (the real tiny model on synthetic data).

- Ctrl-C at an arbitrary moment of a one-process run: exit 130 with one line saying how to continue, and a
  checkpoint of the last completed step; stopped + resumed equals uninterrupted, bit for bit.
- SIGINT to the whole process group of a 2-process run (what a terminal's Ctrl-C and `timeout` do): every rank
  stops after the same step and the checkpoint is written; the run resumes on two processes, and SIGTERM to its
  launcher alone stops it likewise.
- SIGKILL to the launcher alone: the workers stop after their step with a checkpoint; none is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.e2e.engine_data import tiny_overrides

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals")]


# No checkpoint at epoch ends (an epoch is a step or two here): every checkpoint a test reads is the stop's.
SETS = ["train.n_epochs=40", "train.vis_freq=0", "train.checkpoint_every_epochs=1000"]


def _command(processed: Path, logdir: Path, *extra: str) -> list[str]:
    sets = [*tiny_overrides(processed), *SETS]
    return [sys.executable, "-m", "ctxpose", "train", "tiny_cpu", "--device", "cpu", "--no-val", "--logdir",
            str(logdir), *[x for s in sets for x in ("--set", s)], *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _wait_for_steps(logdir: Path, n: int, process: subprocess.Popen, timeout: float = 240.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for run in logdir.glob("tiny_cpu_*"):
            jsonl = run / "scalars.jsonl"
            if jsonl.is_file() and len(jsonl.read_text().splitlines()) >= n:
                return run
        time.sleep(0.05)
    raise AssertionError("training did not start in time")


def _state(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)


def test_ctrl_c_keeps_the_last_step_and_resumes_bit_for_bit(processed: Path, tmp_path: Path) -> None:
    p = subprocess.Popen(_command(processed, tmp_path / "a"), env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    run = _wait_for_steps(tmp_path / "a", 3, p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert f"continue with --resume {run}" in err and "Traceback" not in err
    saved = _state(run)
    stopped_at = saved["step"]
    assert stopped_at >= 3
    # the checkpoint is a completed step: batch norm counted exactly that many batches, each step logged once
    assert int(saved["model"]["backbone.bn1.num_batches_tracked"]) == stopped_at
    steps = [json.loads(line)["step"] for line in (run / "scalars.jsonl").read_text().splitlines()]
    assert steps == list(range(1, stopped_at + 1))

    target = stopped_at + 2
    r = subprocess.run(_command(processed, tmp_path / "a", "--resume", str(run), "--max-steps", str(target)),
                       env=_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert f"resuming from epoch {saved['epoch']}, step {stopped_at}" in r.stderr.replace("\n", " ")
    assert f"{target} steps" in r.stdout and str(run) in r.stdout.replace("\n", "")  # the summary
    # the same steps without a stop, in this process with the subprocesses' single thread
    from ctxpose.config import load_config
    from ctxpose.data.datasets import Human36MDataset
    from ctxpose.engine.trainer import initial_model, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = load_config("tiny_cpu", [*tiny_overrides(processed), *SETS])
        fresh = train(cfg, initial_model(cfg), Human36MDataset.from_config(cfg, "train"), None, tmp_path / "b",
                      "cpu", max_steps=target).run_dir
    finally:
        torch.set_num_threads(threads)
    a, b = _state(run), _state(fresh)
    assert a["step"] == b["step"] == target
    for key, value in b["model"].items():
        torch.testing.assert_close(a["model"][key], value, rtol=0, atol=0, msg=key)
    steps = [json.loads(line)["step"] for line in (run / "scalars.jsonl").read_text().splitlines()]
    assert steps == list(range(1, target + 1))  # no step twice across the stop


_LOADER_BOUND = """
import re
import sys
import torch.multiprocessing
torch.multiprocessing.set_start_method("spawn")  # workers inherit no handler from the loop (as on macOS)
from ctxpose.config import load_config
from ctxpose.engine.trainer import train
from ctxpose.errors import Stopped
from tests.unit.engine_standins import SlowStandinDataset, standin_losses, standin_model

cfg = load_config("tiny_cpu", ["train.num_workers=2", "train.batch_size=4", "train.n_objects_per_epoch=400",
                               "train.vis_freq=0"])
try:
    train(cfg, standin_model(), SlowStandinDataset(400), None, sys.argv[1], "cpu", loss_fn=standin_losses)
except Stopped as e:
    print("STOPPED signal", re.search(r"checkpoint of step (\\d+)", str(e)).group(1))
"""


def test_ctrl_c_while_waiting_for_loader_workers_stops_cleanly(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the loader's worker processes too. If they died of it, a loop waiting for its
    next batch would fail with "DataLoader worker exited unexpectedly" instead of stopping after its step."""
    p = subprocess.Popen([sys.executable, "-c", _LOADER_BOUND, str(tmp_path / "run")], env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 120
    jsonl = tmp_path / "run" / "scalars.jsonl"
    while not (jsonl.is_file() and jsonl.read_text().splitlines()):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.05)
    time.sleep(0.3)  # the loop is now waiting for the workers' next batch
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and "STOPPED signal" in out and "exited unexpectedly" not in err, err[-3000:]
    saved = _state(tmp_path / "run")
    assert saved["step"] == int(out.split()[-1]) >= 1


def test_sigint_to_the_group_checkpoints_and_the_resumed_run_stops_on_sigterm_to_the_launcher(
        processed: Path, tmp_path: Path) -> None:
    """SIGINT to the whole process group (a terminal's Ctrl-C, `timeout -s INT`): every rank stops after the same
    step with a checkpoint. The run resumes on two processes; then `kill <ctxpose pid>` (SIGTERM to the launcher
    alone, as a scheduler or a script sends it): the launcher passes it on and the workers stop likewise."""
    p = subprocess.Popen(_command(processed, tmp_path / "a", "--procs", "2"), env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = _wait_for_steps(tmp_path / "a", 2, p)
    os.killpg(p.pid, signal.SIGINT)  # every process gets it
    out, err = p.communicate(timeout=120)
    # the workers return their results: torch's agent has none left to signal or kill (it logs both)
    assert p.returncode == 130 and "Closing process" not in err and "forcefully exiting" not in err, err
    assert f"interrupted: continue with --resume {run}" in err
    saved = _state(run)
    assert saved["world_size"] == 2 and saved["step"] >= 2
    assert int(saved["model"]["backbone.bn1.num_batches_tracked"]) == saved["step"]

    p = subprocess.Popen(_command(processed, tmp_path / "a", "--procs", "2", "--resume", "auto"), env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_steps(tmp_path / "a", saved["step"] + 1, p)  # a step after the resume
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and f"interrupted: continue with --resume {run}" in err, err[-3000:]
    assert f"resuming from epoch {saved['epoch']}, step {saved['step']}" in err.replace("\n", " ")
    again = _state(run)
    assert again["step"] > saved["step"] and again["config"]["train"]["batch_size"] == 2
    assert int(again["model"]["backbone.bn1.num_batches_tracked"]) == again["step"]
    steps = [json.loads(line)["step"] for line in (run / "scalars.jsonl").read_text().splitlines()]
    assert steps == list(range(1, again["step"] + 1))  # each step logged once across the stop


def test_sigkill_to_the_launcher_leaves_no_worker_behind(processed: Path, tmp_path: Path) -> None:
    """The kernel sends the workers SIGINT when their launcher dies (torch asks it to): they checkpoint and exit."""
    from tests.e2e.process_tools import alive, descendants

    p = subprocess.Popen(_command(processed, tmp_path / "a", "--procs", "2"), env=_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    run = _wait_for_steps(tmp_path / "a", 2, p)
    workers = descendants(p.pid)
    assert len(workers) >= 2
    p.kill()
    p.communicate(timeout=60)
    deadline = time.monotonic() + 120  # a hang guard, not a speed requirement
    while [w for w in workers if alive(w)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if alive(w)], "workers outlived their launcher"
    saved = _state(run)
    assert int(saved["model"]["backbone.bn1.num_batches_tracked"]) == saved["step"] >= 2


def test_a_full_disk_while_checkpointing_is_one_line_naming_the_file(processed: Path, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(full)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        r = subprocess.run(_command(processed, full, "--max-steps", "2"), env=_env(), capture_output=True, text=True,
                           timeout=240)
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
        assert len(lines) == 1 and "last.pt: no space left on the device" in lines[0], r.stderr[-3000:]
        leftovers = [p.name for p in full.rglob("*") if p.name.endswith(".tmp")]
        assert leftovers == []  # no half-written temporary file
    finally:
        subprocess.run(["umount", str(full)], check=False)
