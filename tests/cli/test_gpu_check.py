"""benchmarks/gpu_check.py: the step runner's report (a failing step recorded, the rest run, a stop kept, also one
that lands while the report is written), the ``--smoke`` run on the CPU, and a run stopped by ``timeout`` leaving a
valid report.

The two script runs start at once (they overlap on 2 cores) in subprocesses with one torch thread and CUDA
hidden. Their figures are read back by other means: FLOPs of the forward pass counted here, the matmul arithmetic.
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

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))

import bench_model  # noqa: E402
import gpu_check  # noqa: E402

from ctxpose.utils.signals import StopSignals  # noqa: E402


def _ctx(tmp: Path) -> gpu_check.Ctx:
    return gpu_check.Ctx(torch.device("cpu"), dict(gpu_check.SIZES["tiny"]), tmp)


def test_a_failing_step_is_recorded_and_the_next_ones_still_run(tmp_path: Path) -> None:
    out = tmp_path / "report.json"

    def first(ctx):
        return {"rate": 2.5, "where": tmp_path}

    def broken(ctx):
        raise ValueError("the card is on fire\nand a second line")

    def not_here(ctx):
        raise gpu_check.Skip("no CUDA device: nothing to time")

    def last(ctx):
        on_disk = json.loads(out.read_text())  # rewritten after each step, before this one ran
        assert on_disk["steps"]["broken"]["status"] == "failed" and on_disk["steps"]["last"]["status"] == "running"
        return {"rate_before": ctx.figures["first"]["rate"]}

    said: list[str] = []
    with StopSignals("stopping the check", at_once=True) as stop:
        status = gpu_check.run_steps({"first": first, "broken": broken, "not_here": not_here, "last": last},
                                     _ctx(tmp_path), out, {"format": "ctxpose-gpu-check"}, stop, said.append)
    report = json.loads(out.read_text())
    assert status == 1 and report["failed"] == ["broken"] and report["complete"]
    rows = report["steps"]
    assert list(rows) == ["first", "broken", "not_here", "last"]
    assert rows["first"]["figures"] == {"rate": 2.5, "where": str(tmp_path)}
    assert rows["broken"]["reason"] == "ValueError: the card is on fire"
    assert rows["not_here"] == {"status": "skipped", "reason": "no CUDA device: nothing to time",
                                "seconds": rows["not_here"]["seconds"]}
    assert rows["last"] == {"status": "ok", "figures": {"rate_before": 2.5}, "seconds": rows["last"]["seconds"]}
    assert [line.split(":")[0] for line in said] == list(rows)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_marks_the_running_step_interrupted_and_skips_the_rest(signum, tmp_path: Path) -> None:
    out, name = tmp_path / "report.json", signal.Signals(signum).name

    def long_step(ctx):
        os.kill(os.getpid(), signum)
        time.sleep(30)  # the handler raises in here

    with StopSignals("stopping the check", at_once=True) as stop:  # as main() runs the steps
        status = gpu_check.run_steps({"environment": gpu_check.environment, "long": long_step,
                                      "after": lambda ctx: {}}, _ctx(tmp_path), out, {}, stop, lambda line: None)
    report = json.loads(out.read_text())
    rows = report["steps"]
    assert status == 130 and not report["complete"] and rows["environment"]["status"] == "ok"
    assert (rows["long"]["status"], rows["long"]["reason"]) == ("failed", f"interrupted ({name})")
    assert rows["long"]["seconds"] < 30
    assert rows["after"] == {"status": "skipped", "reason": f"the check was stopped ({name})"}


def test_a_signal_while_the_report_is_saved_acts_once_it_is_whole(tmp_path: Path, monkeypatch) -> None:
    """SIGTERM lands while the first step's row is written: that write is finished, the next step skipped."""
    out, started, finished = tmp_path / "report.json", [], []

    def write(path, text):
        started.append(text)
        if len(started) == 2:  # the first step's result
            os.kill(os.getpid(), signal.SIGTERM)
        Path(path).write_text(text)
        finished.append(text)

    monkeypatch.setattr(gpu_check, "atomic_write_text", write)
    with StopSignals("stopping the check", at_once=True) as stop:
        status = gpu_check.run_steps({"first": lambda ctx: {"rate": 1.0}, "second": lambda ctx: {}},
                                     _ctx(tmp_path), out, {}, stop, lambda line: None)
    report = json.loads(out.read_text())
    assert status == 130 and not report["complete"] and report["failed"] == []
    assert finished == started and json.loads(finished[1])["steps"]["first"]["figures"] == {"rate": 1.0}
    assert report["steps"]["second"] == {"status": "skipped", "reason": "the check was stopped (SIGTERM)"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, dict]]:
    """The --smoke run, and beside it a run under `timeout` whose long paper step gets timeout's SIGTERM."""
    tmp = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    smoke = subprocess.Popen([sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp / "smoke.json")], cwd=ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stopped = subprocess.Popen(["timeout", "--signal=TERM", "--kill-after=20", "600", sys.executable, str(SCRIPT),
                                "--steps", "environment,paper_step,physical_limit", "--repeats", "100000", "--out",
                                str(tmp / "stopped.json")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and stopped.poll() is None:  # until the paper step runs
        try:
            if json.loads((tmp / "stopped.json").read_text())["steps"]["paper_step"]["status"] == "running":
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    stopped.send_signal(signal.SIGTERM)  # to `timeout`, which passes it on as when its time runs out
    done = {}
    for name, proc in (("smoke", smoke), ("stopped", stopped)):
        output, _ = proc.communicate(timeout=300)
        done[name] = (proc.returncode, output, json.loads((tmp / f"{name}.json").read_text()))
    return done


@pytest.mark.slow
def test_smoke_run_writes_its_rows_and_the_figures_hold(runs) -> None:
    """The FLOPs counted for one forward and backward lie between 2 and 3 forward passes counted here."""
    from torch.utils.flop_counter import FlopCounterMode

    status, output, report = runs["smoke"]
    assert status == 0, output[-3000:]
    assert (report["format"], report["device"], report["sizes"], report["failed"]) == (
        "ctxpose-gpu-check", "cpu", "tiny", [])
    assert report["complete"] and list(report["steps"]) == ["environment", "physical_limit"]
    env = report["steps"]["environment"]["figures"]
    assert (env["torch"], env["device"], env["torch_threads"]) == (torch.__version__, "cpu", 1)
    fig = report["steps"]["physical_limit"]["figures"]
    cfg, model = bench_model.make_model(fig["setting"], torch.device("cpu"))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*bench_model.make_inputs(cfg, fig["batch"], torch.device("cpu")))
    assert 2 * counter.get_total_flops() < fig["step_flops"] <= 3 * counter.get_total_flops()
    assert sum(fig["flops_by_op"].values()) == fig["step_flops"]
    mm = fig["matmul"]
    assert mm["n"] == 256 and mm["tflops"] == pytest.approx(2 * 256**3 / mm["median_s"] / 1e12)
    assert fig["achieved_tflops"] == pytest.approx(fig["step_flops"] / fig["step_s"] / 1e12)
    assert fig["fraction_of_matmul_peak"] == pytest.approx(fig["achieved_tflops"] / mm["tflops"])
    assert fig["top_ops"] and fig["amp"] is None  # float32 on a CPU
    assert "GPU check on cpu" in output and "physical_limit" in output
    assert "cpu, tiny sizes" in output and "step_flops=" in output  # the table, with the figures


@pytest.mark.slow
def test_a_run_stopped_by_timeout_keeps_a_valid_report(runs) -> None:
    status, output, report = runs["stopped"]
    assert status == 130, output[-3000:]
    rows = report["steps"]
    assert not report["complete"] and report["failed"] == ["paper_step"]
    assert rows["environment"]["status"] == "ok"
    assert (rows["paper_step"]["status"], rows["paper_step"]["reason"]) == ("failed", "interrupted (SIGTERM)")
    assert rows["physical_limit"] == {"status": "skipped", "reason": "the check was stopped (SIGTERM)"}


@pytest.mark.parametrize("args, message", [(["--repeats", "0"], "--repeats 0: expected at least 1"),
                                           (["--steps", "environment,nope"], "--steps: unknown nope")])
def test_bad_options_are_refused_with_the_reason(args, message, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        gpu_check.main([*args, "--out", str(tmp_path / "r.json")])
    assert e.value.code == 2 and message in capsys.readouterr().err and not (tmp_path / "r.json").exists()
