"""benchmarks/gpu_check.py in CPU mode: it starts, walks every step's code at tiny sizes, skips the CUDA-only
parts saying so, writes its report atomically, keeps to its budget and stops cleanly on SIGTERM.

The script runs in a subprocess with one torch thread and CUDA hidden, as it would on a machine without a GPU.
What it reports is read back by other means: the run's checkpoint with torch.load(weights_only=True), the eval's
metrics.json, pytest's own collection, the FLOPs of the forward pass counted here, the matmul arithmetic.
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
STEPS = ("environment", "pytest_gpu", "train_resume_eval", "paper_step", "physical_limit", "data_loading",
         "multi_gpu", "paper_compile")
PYTEST_PATHS = "tests/unit/test_gpu.py tests/unit/test_model.py"

pytestmark = pytest.mark.slow


def cpu_env() -> dict[str, str]:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def command(tmp: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--threads", "1", "--out", str(tmp / "gpu_check.json"),
            "--work-dir", str(tmp / "work"), "--pytest-paths", PYTEST_PATHS, *extra]


def live_step_processes(tmp: Path) -> list[str]:
    """Command lines of processes still running a step of this check (its --params live under tmp)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(tmp / "work") in cmdline and "--child" in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    tmp = tmp_path_factory.mktemp("gpu_check")
    done = subprocess.run(command(tmp), cwd=ROOT, env=cpu_env(), capture_output=True, text=True, timeout=900)
    return done, json.loads((tmp / "gpu_check.json").read_text()), tmp


def test_cpu_mode_exits_0_with_every_step_ok_or_skipped_with_a_reason(cpu_run) -> None:
    done, report, tmp = cpu_run
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert report["format"] == "ctxpose-gpu-check" and report["complete"] and report["exit_status"] == 0
    assert (report["mode"], report["sizes"], report["failed"]) == ("cpu", "tiny", [])
    assert tuple(report["steps"]) == STEPS
    for name, step in report["steps"].items():
        assert step["status"] in ("ok", "skipped"), (name, step)
        if step["status"] == "skipped":
            assert step["reason"], name
        assert step["seconds"] <= step["timeout_s"] <= step["budget_s"], name
    reasons = {n: s["reason"] for n, s in report["steps"].items() if s["status"] == "skipped"}
    assert set(reasons) == {"pytest_gpu", "paper_compile"}
    assert all(r.startswith("no CUDA device") for r in reasons.values())
    for name in ("train_resume_eval", "paper_step", "physical_limit", "data_loading", "multi_gpu"):
        assert report["steps"][name]["note"].startswith("no CUDA device"), name  # says what stood in
    assert report["elapsed_s"] < report["budget_s"]
    env = report["environment"]
    assert (env["torch"], env["cuda_works"], env["gpus"], env["torch_threads"]) == (torch.__version__, False, 0, 1)
    # the printed tables and the combined log
    assert "GPU check: steps" in done.stdout and "no CUDA device" in done.stdout
    log = (tmp / "gpu_check.log").read_text()
    assert all(f"===== {name} =====" in log for name in STEPS if name in report["steps"])


def test_cpu_mode_pytest_counts_are_pytests_own(cpu_run) -> None:
    _, report, _ = cpu_run
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu",
                                "-p", "no:cacheprovider", *PYTEST_PATHS.split()], cwd=ROOT, env=cpu_env(),
                               capture_output=True, text=True, timeout=300)
    n_gpu = sum("::" in line for line in collected.stdout.splitlines())
    figures = report["steps"]["pytest_gpu"]["figures"]
    assert n_gpu >= 10 and figures["skipped"] == n_gpu and figures["passed"] == figures["failed"] == 0
    assert f"the {n_gpu} gpu-marked tests" in report["steps"]["pytest_gpu"]["reason"]


def test_cpu_mode_trained_resumed_and_evaluated(cpu_run) -> None:
    _, report, _ = cpu_run
    fig = report["steps"]["train_resume_eval"]["figures"]
    run = Path(fig["run"])
    ckpt = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == fig["steps"] == 4 and fig["resumed_from_step"] == 2
    info = json.loads((run / "run_info.json").read_text())
    assert info["resumed_from"]["step"] == 2 and info["amp"] == "bf16" and info["device"] == "cpu"
    steps = [json.loads(line)["step"] for line in (run / "scalars.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    overall = json.loads((run / "eval_val" / "metrics.json").read_text())["overall"]
    assert fig["val_mpjpe_mm"] == pytest.approx(overall["mpjpe"]) and overall["mpjpe"] > 0
    assert fig["train_samples_per_s"] > 0 and fig["loss_first"] > 0 and fig["loss_last"] > 0


def test_cpu_mode_paper_step_rows_and_ratios(cpu_run) -> None:
    _, report, _ = cpu_run
    fig = report["steps"]["paper_step"]["figures"]
    assert (fig["setting"], fig["batch"], fig["device"]) == ("tiny", 2, "cpu")
    modes = fig["modes"]
    assert set(modes) == {"fp32", "bf16", "bf16_channels_last", "reference_fp32", "reference_bf16", "engine_bf16"}
    for name, row in modes.items():
        assert row["step_s"] > 0 and row["peak_memory_mb"] > 0, name
        assert row["samples_per_s"] == pytest.approx(2 / row["step_s"]), name
    for prec in ("fp32", "bf16"):
        ratio = fig["reference_over_ours"][prec]
        assert ratio["speedup"] == pytest.approx(modes[f"reference_{prec}"]["step_s"] / modes[prec]["step_s"])
        assert ratio["memory_ratio"] == pytest.approx(
            modes[f"reference_{prec}"]["peak_memory_mb"] / modes[prec]["peak_memory_mb"])


def test_cpu_mode_flops_and_the_matmul_rate(cpu_run) -> None:
    """The counted FLOPs are one forward and one backward: between 2 and 3 forward passes' worth, the forward
    counted here (a backward costs one forward per input or weight that needs a gradient)."""
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_model

    _, report, _ = cpu_run
    fig = report["steps"]["physical_limit"]["figures"]
    cfg, model = bench_model.make_model(fig["setting"], torch.device("cpu"))
    images, proj, roots, thetas = bench_model.make_inputs(cfg, fig["batch"], torch.device("cpu"))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images, proj, roots, thetas)
    forward = counter.get_total_flops()
    assert 2 * forward < fig["step_flops"] <= 3 * forward
    assert sum(fig["flops_by_op"].values()) == fig["step_flops"]  # convolutions (both ways) and matmuls
    mm = fig["matmul"]
    assert mm["tflops"] == pytest.approx(2 * mm["n"] ** 3 / mm["median_s"] / 1e12)
    assert fig["achieved_tflops"] == pytest.approx(fig["step_flops"] / fig["step_s"] / 1e12)
    assert fig["fraction_of_matmul_peak"] == pytest.approx(fig["achieved_tflops"] / mm["tflops"])
    assert fig["target"] == 0.3 and fig["meets_target"] == (fig["fraction_of_matmul_peak"] >= 0.3)
    kernels = fig["top_kernels"]
    assert kernels and all(k["self_ms_per_step"] >= 0 for k in kernels)
    assert [k["self_ms_per_step"] for k in kernels] == sorted((k["self_ms_per_step"] for k in kernels), reverse=True)


def test_cpu_mode_loader_rates_and_workers_needed(cpu_run) -> None:
    _, report, _ = cpu_run
    fig = report["steps"]["data_loading"]["figures"]
    assert set(fig["rates"]) == {"0", "2"} and fig["crop"] == 384
    for row in fig["rates"].values():
        assert row["samples"] >= 16 and row["samples_per_s"] == pytest.approx(row["samples"] / row["seconds"])
    consumer = fig["gpu_consumes_samples_per_s"]
    engine = report["steps"]["paper_step"]["figures"]["modes"]["engine_bf16"]["samples_per_s"]
    assert consumer == pytest.approx(engine)  # what the engine's bf16 step eats
    keep_up = [int(w) for w, r in fig["rates"].items() if r["samples_per_s"] >= consumer]
    assert fig["workers_needed"] == (min(keep_up) if keep_up else None)


def test_cpu_mode_two_processes_match_one_with_twice_the_batch(cpu_run) -> None:
    _, report, _ = cpu_run
    fig = report["steps"]["multi_gpu"]["figures"]
    assert len(fig["losses_2_procs"]) == len(fig["losses_1_proc"]) == 2
    assert fig["loss_rel_diff"][0] <= fig["loss_rtol"] and fig["update_norm"] > 0
    assert fig["weight_diff_over_update"] <= fig["update_rtol"]


def test_a_step_past_its_time_is_killed_and_the_rest_skipped(tmp_path: Path) -> None:
    """--budget-s 40: the paper step gets what is left (about 30 s, at least 20 under load) and, timing 100000
    steps, is killed then; the report keeps what it had written and the later steps are skipped, all within the
    budget."""
    start = time.monotonic()
    done = subprocess.run(command(tmp_path, "--budget-s", "40", "--steps", "paper_step,physical_limit",
                                  "--repeats", "100000"), cwd=ROOT, env=cpu_env(), capture_output=True, text=True,
                          timeout=300)
    elapsed = time.monotonic() - start
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert done.returncode == 1, done.stdout[-3000:]
    paper = report["steps"]["paper_step"]
    assert paper["status"] == "failed" and paper["reason"].startswith("ran out of its")
    assert paper["figures"]["setting"] == "tiny"  # written before it was killed
    assert report["steps"]["physical_limit"]["status"] == "skipped"
    assert "overall budget" in report["steps"]["physical_limit"]["reason"]
    assert report["failed"] == ["paper_step"] and elapsed < 40 + 30
    assert not live_step_processes(tmp_path)


def test_sigterm_stops_the_running_step_and_keeps_the_report(tmp_path: Path) -> None:
    proc = subprocess.Popen(command(tmp_path, "--steps", "paper_step,data_loading", "--repeats", "100000"),
                            cwd=ROOT, env=cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    report_path = tmp_path / "gpu_check.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the paper step is running
        if report_path.is_file() and json.loads(report_path.read_text())["steps"]["paper_step"]["status"] == "running":
            break
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    report = json.loads(report_path.read_text())
    assert proc.returncode == 130, out[-3000:]
    assert not report["complete"] and report["exit_status"] == 130
    assert report["steps"]["environment"]["status"] == "ok"
    assert report["steps"]["paper_step"]["status"] == "failed"
    assert report["steps"]["paper_step"]["reason"] == "interrupted (SIGTERM)"
    loading = report["steps"]["data_loading"]
    assert (loading["status"], loading["reason"]) == ("skipped", "the check was interrupted (SIGTERM)")
    assert not live_step_processes(tmp_path)
