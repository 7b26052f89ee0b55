"""`ctxpose train|eval|demo` as translators: arguments reach the library; errors are one line, exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ctxpose.cli.train as train_cli
from ctxpose.cli.app import app
from ctxpose.engine import dist

ROOT = Path(__file__).resolve().parents[2]
CFG = str(ROOT / "configs" / "tiny_cpu.yaml")
runner = CliRunner()


def run_main(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctxpose", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict:
    seen: dict = {}
    summary = {"run_dir": "r", "checkpoint": "r/c.pt", "steps": 3, "epochs": 1, "nan_steps": 0,
               "metrics": [{"val": {"mpjpe": 12.5}}]}

    def fake_worker(*args):
        seen["worker"] = args
        return summary

    def fake_launch(entry, args, nproc, nnodes=1, node_rank=0, master_addr="127.0.0.1", master_port=None):
        seen["launch"] = (entry, args, nproc, nnodes, node_rank, master_addr, master_port)
        return {0: summary, 1: summary}

    monkeypatch.setattr(train_cli, "train_worker", fake_worker)
    monkeypatch.setattr(dist, "launch", fake_launch)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    return seen


def test_single_process_calls_worker_with_config_and_overrides(calls: dict, tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", CFG, "--device", "cpu", "--logdir", str(tmp_path), "--max-steps", "3",
                            "--set", "train.batch_size=2", "--amp", "bf16", "--no-val"])
    assert r.exit_code == 0, r.output
    cfg, run_dir, device, resume, amp, max_steps, validate, _ = calls["worker"]
    assert cfg.train.batch_size == 2 and cfg.title == "tiny_cpu"
    assert Path(run_dir).parent == tmp_path and Path(run_dir).name.startswith("tiny_cpu_")
    assert (device, resume, amp, max_steps, validate) == ("cpu", None, "bf16", 3, False)
    assert "launch" not in calls and "val MPJPE 12.5 mm" in r.output


def test_procs_and_nodes_go_through_the_elastic_launcher(calls: dict, tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", CFG, "--device", "cpu", "--procs", "2", "--logdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    entry, args, nproc, nnodes, node_rank, addr, port = calls["launch"]
    assert entry is train_cli.train_worker and nproc == 2 and (nnodes, node_rank) == (1, 0)
    assert args[2] == "cpu"
    r = runner.invoke(app, ["train", CFG, "--device", "cpu", "--procs", "4", "--nnodes", "2", "--node-rank", "1",
                            "--master-addr", "10.0.0.1", "--master-port", "29555", "--logdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert calls["launch"][2:] == (4, 2, 1, "10.0.0.1", 29555)


def test_inside_torchrun_does_not_spawn(calls: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = runner.invoke(app, ["train", CFG, "--device", "cpu", "--procs", "2", "--logdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "worker" in calls and "launch" not in calls


def test_resume_resolves_the_run_folder(calls: dict, tmp_path: Path) -> None:
    ckpt = tmp_path / "tiny_cpu_x" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    r = runner.invoke(app, ["train", CFG, "--device", "cpu", "--resume", "auto", "--logdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    _, run_dir, _, resume, *_ = calls["worker"]
    assert Path(run_dir) == ckpt.parent.parent.resolve() and resume == str(ckpt)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "2", "--device", "cpu"], "--gpus: needs --device cuda"),
        (["--gpus", "1", "--procs", "2"], "--gpus and --procs: give one of them"),
        (["--device", "tpu"], "--device tpu: expected cpu or cuda"),
        (["--resume", "auto", "--logdir", "nowhere"], "--resume auto: no run of 'tiny_cpu'"),
        (["--set", "train.batch_sise=2"], "did you mean train.batch_size?"),
    ],
)
def test_user_errors_are_one_red_line_exit_1(args: list[str], message: str, tmp_path: Path) -> None:
    r = run_main("train", CFG, *args, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


def test_eval_rejects_an_unknown_device_in_one_line(tmp_path: Path) -> None:
    ckpt = tmp_path / "w.pth"
    ckpt.write_bytes(b"x")
    r = run_main("eval", CFG, "--checkpoint", str(ckpt), "--device", "tpu", cwd=tmp_path)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 1 and len(lines) == 1 and "--device tpu: expected cpu or cuda" in lines[0]


def test_eval_needs_a_checkpoint_or_a_run_folder(tmp_path: Path) -> None:
    r = run_main("eval", CFG, cwd=tmp_path)
    assert r.returncode == 1 and "needs --checkpoint PATH" in r.stderr
    r = run_main("eval", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1 and "not a run folder (no config.yaml)" in r.stderr


def test_eval_calls_library_with_resolved_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ctxpose.cli.eval as eval_cli

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"x")
    (run / "config.yaml").write_text(Path(CFG).read_text())
    seen = {}

    def fake_eval_worker(*args):
        seen["args"] = args
        return {"overall": {"mpjpe": 50.0, "pa_mpjpe": 40.0, "n_mpjpe": 45.0, "mpjpe_relative": 49.0,
                            "n_samples": 8.0}, "per_action": {"Walking": {"mpjpe": 50.0}}, "per_subject": {}}

    monkeypatch.setattr(eval_cli, "eval_worker", fake_eval_worker)
    r = runner.invoke(app, ["eval", str(run), "--device", "cpu", "--split", "train"])
    assert r.exit_code == 0, r.output
    cfg, ckpt, device, split, out, amp = seen["args"]
    assert (ckpt, device, split, out, amp) == (str(run / "checkpoints" / "last.pt"), "cpu", "train",
                                               str(run / "eval_train"), None)
    assert "Walking" in r.output and "50.0" in r.output
