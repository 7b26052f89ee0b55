"""`ctxpose train|eval|demo` as translators: arguments reach the library; errors are one line, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxpose.cli.app import app
from ctxpose.config import Amp
from ctxpose.data.datasets import Human36MDataset
from ctxpose.engine import evaluator as evaluator_module
from ctxpose.engine import trainer as trainer_module
from ctxpose.engine.evaluator import EvalResult
from ctxpose.engine.trainer import TrainResult
from tests.cli.in_process import run_in_process

ROOT = Path(__file__).resolve().parents[2]
CFG = str(ROOT / "configs" / "tiny_cpu.yaml")
runner = CliRunner()


run_main = run_in_process


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Record what reaches train() and torch's elastic launcher (nothing is built or trained)."""
    import torch.distributed.launcher.api as torch_launcher

    seen: dict = {}

    def result(run_dir):
        return TrainResult(Path(run_dir), Path(run_dir) / "checkpoints" / "last.pt", 1, 3, 0,
                           metrics=[{"val": {"mpjpe": 12.5}}])

    def fake_train(cfg, model, train_set, val_set, run_dir, device, **kwargs):
        seen["train"] = (cfg, model, train_set, val_set, run_dir, device, kwargs)
        return result(run_dir)

    def fake_elastic_launch(config, entrypoint):
        def run(fn, verbose, args, kwargs):
            seen["launch"] = (config, fn, args, kwargs)
            return {config.rdzv_configs["rank"] * config.nproc_per_node: result(args[4])}
        return run

    monkeypatch.setattr(trainer_module, "train", fake_train)
    monkeypatch.setattr(trainer_module, "initial_model", lambda cfg, initial_weights: ("model", initial_weights))
    monkeypatch.setattr(Human36MDataset, "from_config", classmethod(lambda cls, cfg, split: ("dataset", split)))
    monkeypatch.setattr(torch_launcher, "elastic_launch", fake_elastic_launch)
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    return seen


def test_single_process_trains_in_this_process_with_config_and_overrides(calls: dict, tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", CFG, "--device", "cpu", "--logdir", str(tmp_path), "--max-steps", "3",
                            "--set", "train.batch_size=2", "--amp", "bf16", "--no-val"])
    assert r.exit_code == 0, r.output
    cfg, model, train_set, val_set, run_dir, device, kwargs = calls["train"]
    assert cfg.train.batch_size == 2 and cfg.title == "tiny_cpu"
    assert Path(run_dir).parent == tmp_path and Path(run_dir).name.startswith("tiny_cpu_")
    assert (model, train_set, val_set, device) == (("model", True), ("dataset", "train"), None, "cpu")
    assert kwargs == {"resume": None, "amp": Amp.BF16, "max_steps": 3, "show_progress": True}
    assert "launch" not in calls and "val MPJPE 12.5 mm" in r.output


def test_shipped_config_by_name(calls: dict, tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", "tiny_cpu", "--device", "cpu", "--logdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert calls["train"][0].model.backbone.num_layers == 18 and calls["train"][3] == ("dataset", "val")


def test_procs_and_nodes_go_through_the_elastic_launcher(calls: dict, tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", CFG, "--device", "cpu", "--procs", "2", "--logdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    config, fn, args, kwargs = calls["launch"]
    assert fn is trainer_module.train and config.nproc_per_node == 2 and config.max_restarts == 0
    assert (config.min_nodes, config.max_nodes, config.rdzv_configs["rank"]) == (1, 1, 0)
    assert args[5] == "cpu" and kwargs["show_progress"] and "done" in r.output
    r = runner.invoke(app, ["train", CFG, "--device", "cpu", "--procs", "4", "--nnodes", "2", "--node-rank", "1",
                            "--master-addr", "10.0.0.1", "--master-port", "29555", "--logdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    config = calls["launch"][0]
    assert (config.nproc_per_node, config.min_nodes, config.rdzv_configs["rank"], config.rdzv_endpoint) == (
        4, 2, 1, "10.0.0.1:29555")
    assert "done" not in r.output  # node 1 does not report: node 0's rank 0 does


def test_inside_torchrun_does_not_spawn(calls: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    r = runner.invoke(app, ["train", CFG, "--device", "cpu", "--procs", "2", "--logdir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "train" in calls and "launch" not in calls


def _run_folder(path: Path) -> Path:
    (path / "checkpoints").mkdir(parents=True)
    (path / "checkpoints" / "last.pt").write_bytes(b"x")
    (path / "run_info.json").write_text(json.dumps({"ctxpose": "0.1.0"}))
    return path


def test_resume_continues_in_the_run_folder(calls: dict, tmp_path: Path) -> None:
    run = _run_folder(tmp_path / "tiny_cpu_x")
    for resume in ("auto", str(run), str(run / "checkpoints" / "last.pt")):
        r = runner.invoke(app, ["train", CFG, "--device", "cpu", "--resume", resume, "--logdir", str(tmp_path)])
        assert r.exit_code == 0, r.output
        _, model, _, _, run_dir, _, kwargs = calls["train"]
        assert Path(run_dir).resolve() == run.resolve() and Path(kwargs["resume"]).resolve() == (
            run / "checkpoints" / "last.pt").resolve()
        assert model == ("model", False)  # a resumed run loads no initial weights


def test_resume_refuses_a_file_outside_a_run_folder(calls: dict, tmp_path: Path) -> None:
    """D/dl/last.pt must not make D the run folder (it overwrote D/config.yaml before)."""
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "last.pt").write_bytes(b"x")
    (tmp_path / "config.yaml").write_text("mine")
    r = run_main("train", CFG, "--device", "cpu", "--resume", str(tmp_path / "dl" / "last.pt"), cwd=tmp_path)
    assert r.returncode == 1 and "not a checkpoint inside a ctxpose run folder" in r.stderr
    assert "--set model.checkpoint=" in r.stderr
    assert (tmp_path / "config.yaml").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == [
        "config.yaml", "dl"]
    fake = tmp_path / "fake"
    (fake / "checkpoints").mkdir(parents=True)
    (fake / "checkpoints" / "last.pt").write_bytes(b"x")  # the right shape, but no run_info.json of ours
    r = run_main("train", CFG, "--device", "cpu", "--resume", str(fake), cwd=tmp_path)
    assert r.returncode == 1 and "not a ctxpose run folder" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus", "2", "--device", "cpu"], "--gpus: needs --device cuda"),
        (["--gpus", "1", "--procs", "2"], "--gpus and --procs: give one of them"),
        (["--procs", "0"], "--gpus/--procs 0: expected at least 1 process"),
        (["--max-steps", "0", "--device", "cpu"], "--max-steps 0: expected at least 1"),
        (["--set", "train.n_epochs=0"], "train.n_epochs: 0, expected > 0"),
        (["--gpus", "2"], "CUDA is not available"),
        (["--resume", "auto", "--logdir", "nowhere"], "--resume auto: no run of 'tiny_cpu'"),
        (["--set", "train.batch_sise=2"], "did you mean train.batch_size?"),
    ],
)
def test_user_errors_are_one_red_line_exit_1(args: list[str], message: str, tmp_path: Path) -> None:
    r = run_main("train", CFG, *args, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["train", "eval"])
def test_an_unknown_choice_is_a_usage_error_listing_the_choices(command: str, tmp_path: Path) -> None:
    r = run_main(command, CFG, "--device", "tpu", cwd=tmp_path)
    assert r.returncode == 2 and "tpu" in r.stderr and "cpu" in r.stderr and "cuda" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_missing_config_is_one_line_for_every_command(tmp_path: Path) -> None:
    for args in (["train", "nope.yaml"], ["eval", "nope.yaml", "--checkpoint", CFG], ["config", "check", "nope.yaml"]):
        r = run_main(*args, cwd=tmp_path)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 1 and len(lines) == 1 and "nope.yaml: config file not found" in lines[0], args


def test_eval_needs_a_checkpoint_or_a_run_folder(tmp_path: Path) -> None:
    r = run_main("eval", CFG, cwd=tmp_path)
    assert r.returncode == 1 and "needs --checkpoint PATH" in r.stderr
    r = run_main("eval", str(tmp_path), cwd=tmp_path)
    assert r.returncode == 1 and "not a run folder (no config.yaml)" in r.stderr


@pytest.fixture
def evaluated(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Record what reaches evaluate() (nothing is built or evaluated)."""
    import ctxpose.models

    seen: dict = {}

    def fake_evaluate(model, dataset, device, **kwargs):
        seen["args"] = (model, dataset, device, kwargs)
        return EvalResult({"mpjpe": 50.0, "pa_mpjpe": 40.0, "n_mpjpe": 45.0, "mpjpe_relative": 49.0,
                           "n_samples": 8.0}, {"Walking": {"mpjpe": 50.0}}, {})

    monkeypatch.setattr(evaluator_module, "evaluate", fake_evaluate)
    monkeypatch.setattr(trainer_module, "initial_model", lambda cfg, initial_weights: {"loaded": None})
    monkeypatch.setattr(ctxpose.models, "load_checkpoint", lambda model, path: model.update(loaded=path))
    monkeypatch.setattr(Human36MDataset, "from_config", classmethod(lambda cls, cfg, split: ("dataset", split)))
    return seen


def test_eval_calls_library_with_resolved_paths(tmp_path: Path, evaluated: dict) -> None:
    run = _run_folder(tmp_path / "run")
    (run / "config.yaml").write_text(Path(CFG).read_text())
    r = runner.invoke(app, ["eval", str(run), "--device", "cpu", "--split", "train"])
    assert r.exit_code == 0, r.output
    model, dataset, device, kwargs = evaluated["args"]
    assert (model, dataset, device) == ({"loaded": run / "checkpoints" / "last.pt"}, ("dataset", "train"), "cpu")
    assert (kwargs["out_dir"], kwargs["amp"], kwargs["batch_size"]) == (run / "eval_train", None, 16)  # val.batch_size
    assert "Walking" in r.output and "50.0" in r.output


def test_eval_refuses_an_unwritable_output_before_evaluating(tmp_path: Path, evaluated: dict) -> None:
    (tmp_path / "file").write_text("x")
    r = runner.invoke(app, ["eval", CFG, "--checkpoint", CFG, "--device", "cpu", "--out", str(tmp_path / "file" / "o")])
    assert r.exit_code == 1 and evaluated == {}
