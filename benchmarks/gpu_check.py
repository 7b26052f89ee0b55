"""The prepared GPU check: every CUDA path of ctxpose run once, and the paper setting measured, in one bounded run.

    bash benchmarks/gpu_check.sh                        # the device run: gpu_check/gpu_check.json + .log
    python benchmarks/gpu_check.py --out gpu_check.json --budget-s 450
    python benchmarks/gpu_check.py --tiny --threads 1   # CPU mode at tiny sizes (what tests/cli runs)

Steps, in this order, each in its own process with its own time budget (a step that fails or runs out of
time is reported with a one-line reason and the others still run):

- ``environment``: the card, driver, torch/CUDA/cuDNN/NCCL versions, missing Python packages.
- ``pytest_gpu``: ``pytest -m gpu`` (its summary line parsed: passed, failed, skipped, collection errors).
- ``train_resume_eval``: a synthetic Human3.6M (``ctxpose synthesize h36m`` + ``ctxpose preprocess h36m``),
  ``ctxpose train configs/tiny_cpu.yaml --gpus 1 --amp bf16 --max-steps N``, then ``--resume`` of that run
  to more steps, then ``ctxpose eval`` of it on CUDA; checks the steps, the resume point, the logged steps,
  a falling loss and that eval agrees with the run's own validation.
- ``paper_step``: the paper setting (ResNet-152, 384 px, 64^3, batch 4): time and peak CUDA memory of a
  training step (forward with the paper's losses, backward; ``benchmarks/bench_model.py``'s runner) in
  fp32, bf16 and bf16 + channels-last, the same step of the original's formulation
  (``tests/reference/original_ops.py``) in fp32 and bf16 as ratios, and the full engine step
  (``Trainer.step`` with Adam; ``benchmarks/bench_train.py``'s ``measure``) in bf16.
- ``physical_limit``: FLOPs of one bf16 training step (``torch.utils.flop_counter.FlopCounterMode``), the
  card's bf16 dense matmul rate measured in the same run (an n^3 ``torch.matmul``, CUDA events), the fraction
  reached against the 30% target, and the top kernels by self device time (``torch.profiler``).
- ``data_loading``: samples/s that ``ctxpose.data.loaders.make_train_loader`` delivers (pinned, copied to the
  GPU) from a processed set of 384-px crops with N = 0, 2, 4, 8 workers, against the samples/s the bf16 engine
  step consumes, and the number of workers a GPU needs.
- ``multi_gpu``: with 2 GPUs, ``--gpus 2`` against ``--gpus 1`` with twice the batch (SGD, synchronised batch
  norm): losses and weights within a float32 tolerance.
- ``paper_compile``: the bf16 paper step under ``torch.compile`` (compile time, step time, graph breaks),
  last because compiling may take minutes; a failure is caught and reported.

Without CUDA every CUDA-only part is skipped and says so (``"no CUDA device"``), and the rest runs at tiny sizes
on the CPU (``--procs 2`` Gloo processes stand in for two GPUs), so the CPU mode walks every step's code. The
report (``--out``) is rewritten atomically after every step, so a killed run leaves the finished steps; the
step logs go to ``--work-dir`` and are appended to ``--log``. Exit status: 0 when no step failed, 1 when one did,
130 when interrupted (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (str(ROOT), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from ctxpose.utils.io import atomic_write_text  # noqa: E402

FORMAT = "ctxpose-gpu-check"
TARGET_FRACTION = 0.30  # of the measured bf16 matmul rate, for the bf16 paper training step
CONFIG = "configs/tiny_cpu.yaml"
OK, FAILED, SKIPPED = "ok", "failed", "skipped"
NO_CUDA = "no CUDA device"

# Sizes: "full" on a GPU, "tiny" on a CPU (or with --tiny). Command-line options override single values.
SIZES: dict[str, dict[str, Any]] = {
    "full": {"setting": "paper", "batch": 4, "repeats": 5, "matmul_size": 8192, "matmul_repeats": 10,
             "train_steps": 200, "resume_extra_steps": 100, "frames": 60, "frame_size": 320, "crop": 64,
             "train_batch": 8, "multi_steps": 3, "multi_batch": 4, "loader_frames": 32, "loader_samples": 384,
             "workers": [0, 2, 4, 8], "profile_steps": 2},
    "tiny": {"setting": "tiny", "batch": 2, "repeats": 2, "matmul_size": 256, "matmul_repeats": 3,
             "train_steps": 2, "resume_extra_steps": 2, "frames": 6, "frame_size": 160, "crop": 32,
             "train_batch": 2, "multi_steps": 2, "multi_batch": 2, "loader_frames": 4, "loader_samples": 16,
             "workers": [0, 2], "profile_steps": 1},
}


class StepFailure(Exception):
    """A check of a step did not hold; the message is the report's one-line reason."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT reached this process."""


def _on_signal(signum: int, frame: Any) -> None:
    """The first SIGTERM/SIGINT interrupts; later ones are ignored so that the clean-up (bounded) finishes."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def one_line(error: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters)."""
    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
    return line[:300]


def last_line(text: str) -> str:
    """The last non-empty line of a log (what a failing command said last), at most 300 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, paths and tuples -> str/list."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(clean(data), indent=2) + "\n")


# --------------------------------------------------------------------------- bounded subprocesses


def kill_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group of ``proc`` (it leads one), SIGKILL it after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_bounded(cmd: list[str], log: Path, timeout_s: float, env: dict[str, str] | None = None,
                cwd: Path = ROOT) -> tuple[int | None, str]:
    """Run ``cmd`` in its own process group, output to ``log``; the whole group is killed after ``timeout_s``.

    Returns:
        (exit status, or None when it ran out of time; the log's text).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)
        try:
            rc: int | None = proc.wait(timeout=max(timeout_s, 1.0))
        except subprocess.TimeoutExpired:
            kill_group(proc)
            rc = None
        except BaseException:
            kill_group(proc)
            raise
    return rc, log.read_text(encoding="utf-8", errors="replace")


# --------------------------------------------------------------------------- one step's process


class Result:
    """What a step found, rewritten atomically after every change, so a killed step keeps what it measured."""

    def __init__(self, path: Path, deadline: float) -> None:
        self.path, self.deadline = path, deadline
        self.data: dict[str, Any] = {"status": "running", "reason": None, "note": None, "figures": {},
                                     "summary": []}

    def left(self) -> float:
        """Seconds left of this step's budget."""
        return self.deadline - time.monotonic()

    def figure(self, **figures: Any) -> None:
        self.data["figures"].update(figures)
        self.flush()

    def line(self, text: str) -> None:
        """One line of the printed summary."""
        self.data["summary"].append(text)
        self.flush()

    def note(self, text: str) -> None:
        self.data["note"] = text if not self.data["note"] else f"{self.data['note']}; {text}"
        self.flush()

    def end(self, status: str, reason: str | None = None) -> None:
        self.data["status"], self.data["reason"] = status, reason
        self.flush()

    def flush(self) -> None:
        write_json(self.path, self.data)


def child_main(name: str, params_path: Path, result_path: Path) -> int:
    """Run one step in this process (started by the parent with a hard timeout)."""
    signal.signal(signal.SIGTERM, _on_signal)
    params = json.loads(params_path.read_text())
    res = Result(result_path, time.monotonic() + params["timeout_s"] - 5.0)
    if params.get("threads"):
        import torch

        torch.set_num_threads(params["threads"])
    try:
        STEPS[name].run(params, res)
        if res.data["status"] == "running":
            res.end(OK)
    except StepFailure as e:
        res.end(FAILED, str(e))
    except Interrupted as e:
        res.end(FAILED, f"stopped by {e} (the step's time ran out or the check was interrupted)")
    except Exception as e:
        traceback.print_exc()
        res.end(FAILED, one_line(e))
    return 1 if res.data["status"] == FAILED else 0


def cli(args: list[str], log: Path, res: Result) -> str:
    """``ctxpose ARGS`` within the step's remaining time; its output, or StepFailure with its last line."""
    rc, text = run_bounded([sys.executable, "-m", "ctxpose", *args], log, res.left())
    what = f"ctxpose {' '.join(args[:2])}"
    if rc is None:
        raise StepFailure(f"{what}: did not finish within the step's time (log {log})")
    if rc != 0:
        raise StepFailure(f"{what}: exit status {rc}: {last_line(text)}")
    return text


def _sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _free(device: Any) -> None:
    import gc

    import torch

    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def _reset_peak(device: Any) -> None:
    import torch
    from bench_model import reset_peak_rss

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        reset_peak_rss()


def _peak_mb(device: Any) -> float:
    """Peak CUDA memory allocated (or the process's peak RSS on a CPU) since :func:`_reset_peak`, MB."""
    import torch
    from bench_model import peak_rss_bytes

    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_bytes() / 2**20


# --------------------------------------------------------------------------- step: environment


PACKAGES = ("numpy", "cv2", "cdflib", "h5py", "yaml", "typer", "rich", "tensorboard", "matplotlib", "PIL",
            "requests", "pooch", "gdown", "pytest")


def step_environment(p: dict[str, Any], res: Result) -> None:
    import importlib.util
    import platform

    import torch

    from ctxpose._version import __version__

    def command(cmd: list[str]) -> str | None:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=ROOT)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    figures: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": cudnn, "ctxpose": __version__, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "git_commit": command(["git", "rev-parse", "HEAD"]),
        "missing_packages": [m for m in PACKAGES if importlib.util.find_spec(m) is None],
        "cuda_available": torch.cuda.is_available(), "gpus": 0, "devices": [], "nccl": None, "driver": None,
        "cuda_works": False}
    if figures["cuda_available"]:
        figures["gpus"] = torch.cuda.device_count()
        for i in range(figures["gpus"]):
            prop = torch.cuda.get_device_properties(i)
            figures["devices"].append({"name": prop.name, "capability": f"{prop.major}.{prop.minor}",
                                       "memory_gib": round(prop.total_memory / 2**30, 1),
                                       "multiprocessors": prop.multi_processor_count})
        try:
            figures["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        except Exception as e:  # a build without NCCL
            figures["nccl"] = f"unavailable ({one_line(e)})"
        try:
            x = torch.ones(4, device="cuda") * 2
            figures["cuda_works"] = float(x.sum().item()) == 8.0
        except Exception as e:
            res.note(f"a CUDA operation failed: {one_line(e)}")
        figures["driver"] = command(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    res.figure(**figures)
    card = figures["devices"][0]["name"] if figures["devices"] else "no CUDA device"
    res.line(f"{card}; torch {figures['torch']}, CUDA {figures['cuda']}, cuDNN {cudnn}, NCCL {figures['nccl']}")
    if figures["missing_packages"]:
        res.note(f"missing Python packages: {', '.join(figures['missing_packages'])}")


# --------------------------------------------------------------------------- step: pytest -m gpu


def parse_pytest_summary(text: str) -> dict[str, int]:
    """Counts from pytest's last summary line (``3 passed, 2 skipped, 540 deselected in 9.1s``)."""
    counts = {k: 0 for k in ("passed", "failed", "skipped", "deselected", "errors", "xfailed", "xpassed")}
    for line in reversed(text.splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)\b", line)
        if found and re.search(r"\bin [\d.]+s\b", line):
            for n, key in found:
                counts["errors" if key.startswith("error") else key] += int(n)
            break
    return counts


def step_pytest(p: dict[str, Any], res: Result) -> None:
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rfE", "-p", "no:cacheprovider",
           "--continue-on-collection-errors", *p["pytest_paths"]]
    rc, text = run_bounded(cmd, Path(p["log_dir"]) / "pytest_gpu.pytest.log", res.left())
    if rc is None:
        raise StepFailure("pytest -m gpu did not finish within the step's time")
    counts = parse_pytest_summary(text)
    problems = [line.strip() for line in text.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    res.figure(exit_status=rc, **counts, problems=problems[:20])
    res.line(", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no summary line")
    not_collected = sorted({m.group(1) for line in problems if (m := re.match(r"ERROR (\S+\.py)", line))})
    gpu_modules = [f for f in not_collected if (ROOT / f).is_file()
                   and "mark.gpu" in (ROOT / f).read_text(errors="replace")]
    if not p["cuda"]:
        res.end(SKIPPED, f"{NO_CUDA}: the {counts['skipped']} gpu-marked tests were collected and skipped")
        return
    if counts["failed"] or gpu_modules:
        raise StepFailure(problems[0] if counts["failed"] else f"gpu tests in {gpu_modules[0]} not collected: "
                          f"{next(x for x in problems if gpu_modules[0] in x)}")
    if counts["passed"] == 0:
        raise StepFailure(f"no gpu test ran (pytest exit status {rc}): {last_line(text)}")
    if not_collected:
        res.note(f"not collected (no gpu tests in them): {', '.join(not_collected)}")


# --------------------------------------------------------------------------- steps: training through the CLI


def synthetic_h36m(p: dict[str, Any], res: Result) -> Path:
    """A processed synthetic Human3.6M (S1 train, S9 val) made by the commands; reused when already there."""
    tag = f"h36m_{p['frames']}f_{p['frame_size']}px_crop{p['crop']}"
    work, logs = Path(p["work"]), Path(p["log_dir"])
    raw, processed = work / f"{tag}_raw", work / tag
    if (processed / "labels.npz").is_file() and (processed / "mean_and_std_limb_length.h5").is_file():
        return processed
    if not (raw / "S9").is_dir():
        import importlib.util

        if importlib.util.find_spec("cdflib") is None:
            raise StepFailure("cdflib is not installed: `ctxpose synthesize h36m` writes the CDF poses with it "
                              "(carry its wheel, benchmarks/README.md)")
        cli(["synthesize", "h36m", str(raw), "--subjects", "S1,S9", "--actions", "Walking-1,TakingPhoto-2",
             "--frames", str(p["frames"]), "--size", str(p["frame_size"])], logs / f"{p['step']}.synthesize.log", res)
    cli(["preprocess", "h36m", str(raw), str(processed), "--image-size", str(p["crop"]), "--train-every", "1",
         "--test-every", "1", "--workers", str(min(8, os.cpu_count() or 1))],
        logs / f"{p['step']}.preprocess.log", res)
    return processed


def data_overrides(processed: Path, p: dict[str, Any]) -> list[str]:
    """Config overrides pointing the tiny config at the synthetic data at the step's crop size."""
    return [f"dataset.root={processed}", f"dataset.limb_length_path={processed / 'mean_and_std_limb_length.h5'}",
            "dataset.train_subjects=[S1]", "dataset.val_subjects=[S9]", f"model.image_shape=[{p['crop']},{p['crop']}]"]


def set_args(overrides: list[str]) -> list[str]:
    """``--set`` before each override."""
    return [x for s in overrides for x in ("--set", s)]


def device_args(p: dict[str, Any], procs: int = 1) -> list[str]:
    return ["--gpus", str(procs)] if p["cuda"] else ["--device", "cpu", "--procs", str(procs)]


def only_run(logdir: Path) -> Path:
    runs = sorted(x.parent for x in logdir.glob("*/run_info.json"))
    if len(runs) != 1:
        raise StepFailure(f"{logdir}: expected one run folder, found {len(runs)}")
    return runs[0]


def read_scalars(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "scalars.jsonl").read_text().splitlines() if line.strip()]


def checkpoint_step(run: Path) -> int:
    import torch

    return int(torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["step"])


def step_train(p: dict[str, Any], res: Result) -> None:
    import shutil
    import statistics

    processed = synthetic_h36m(p, res)
    logdir, logs = Path(p["work"]) / "train_runs", Path(p["log_dir"])
    shutil.rmtree(logdir, ignore_errors=True)
    sets = set_args([*data_overrides(processed, p), f"train.batch_size={p['train_batch']}", "train.n_epochs=100"])
    common = [CONFIG, *device_args(p), "--amp", "bf16", "--logdir", str(logdir), *sets]
    n1 = p["train_steps"]
    n2 = n1 + p["resume_extra_steps"]
    t0 = time.perf_counter()
    cli(["train", *common, "--max-steps", str(n1)], logs / "train_resume_eval.train.log", res)
    train_s = time.perf_counter() - t0
    run = only_run(logdir)
    if checkpoint_step(run) != n1:
        raise StepFailure(f"{run}: checkpoint at step {checkpoint_step(run)}, expected {n1}")
    res.figure(run=run, train_s=train_s, steps=n1)
    t0 = time.perf_counter()
    cli(["train", *common, "--resume", str(run), "--max-steps", str(n2)], logs / "train_resume_eval.resume.log", res)
    resume_s = time.perf_counter() - t0
    info = json.loads((run / "run_info.json").read_text())
    resumed = (info.get("resumed_from") or {}).get("step")
    if checkpoint_step(run) != n2 or resumed != n1:
        raise StepFailure(f"{run}: resumed from step {resumed} to {checkpoint_step(run)}, expected {n1} -> {n2}")
    scalars = read_scalars(run)
    steps = [s["step"] for s in scalars]
    if steps != list(range(1, n2 + 1)):
        raise StepFailure(f"{run}/scalars.jsonl: steps are not 1..{n2} once each after the resume")
    losses = [s.get("train/loss/total", float("nan")) for s in scalars]
    bad = [i + 1 for i, x in enumerate(losses) if not math.isfinite(x)]
    if bad:
        raise StepFailure(f"non-finite bf16 training loss at step {bad[0]} ({len(bad)} steps in all)")
    k = max(1, n2 // 10)
    first, last = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
    rate = statistics.median(s["train/samples_per_s"] for s in scalars[n1 + 1:] or scalars)
    res.figure(resume_s=resume_s, resumed_from_step=resumed, steps=n2, loss_first=first, loss_last=last,
               train_samples_per_s=rate)
    res.line(f"train {n1} steps {train_s:.0f} s, resume to {n2} {resume_s:.0f} s, {rate:.0f} samples/s; "
             f"loss {first:.3g} -> {last:.3g}")
    if not p["cuda"]:
        res.note(f"{NO_CUDA}: ran with --device cpu at tiny sizes")
    if n2 >= 100 and not last < first:
        raise StepFailure(f"the training loss did not fall over {n2} steps ({first:.4g} -> {last:.4g})")
    t0 = time.perf_counter()
    eval_device = ["--device", "cuda"] if p["cuda"] else ["--device", "cpu"]
    cli(["eval", str(run), *eval_device], logs / "train_resume_eval.eval.log", res)
    metrics = json.loads((run / "eval_val" / "metrics.json").read_text())["overall"]
    res.figure(eval_s=time.perf_counter() - t0, val_mpjpe_mm=metrics["mpjpe"], val_pa_mpjpe_mm=metrics["pa_mpjpe"],
               val_samples=metrics.get("n_samples"))
    res.line(f"eval: MPJPE {metrics['mpjpe']:.1f} mm, PA-MPJPE {metrics['pa_mpjpe']:.1f} mm")
    history = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else []
    if history and history[-1].get("step") == n2 and "val" in history[-1]:
        # The run validated its last step in bf16, eval ran float32: bf16 moves the joints by 1-2.5 mm on average
        # (tests/unit/test_model.py, bf16 autocast), so the two MPJPEs agree within 3 mm if eval read the weights.
        diff = abs(history[-1]["val"]["mpjpe"] - metrics["mpjpe"])
        res.figure(eval_vs_run_validation_mm=diff)
        if diff > 3.0:
            raise StepFailure(f"eval MPJPE {metrics['mpjpe']:.1f} mm but the run validated its last step at "
                              f"{history[-1]['val']['mpjpe']:.1f} mm")


def initial_weights(processed: Path, p: dict[str, Any]) -> dict[str, Any]:
    """The weights every run of this config starts from (``train.seed``)."""
    from ctxpose.config import load_config
    from ctxpose.engine.trainer import initial_model

    return initial_model(load_config(ROOT / CONFIG, data_overrides(processed, p))).state_dict()


# 2 processes x batch B against 1 x 2B after a few SGD steps with synchronised batch norm: the same sums in
# another order. The first losses agree to float32 round-off (before any update only the summation order
# differs); the weights drift apart as rounding differences are amplified through ~30 layers of small batches.
# Measured with 2 Gloo processes in float32 on the CPU: first losses 1.8e-7 and 0 relative apart, the weight
# difference 1.7% of the update's norm (32-px crops, 2 per process, 2 steps) and 1.2% (this step's GPU sizes:
# 64-px crops, 4 per process, 3 steps). Bounds: 1e-4 on the first loss, 5% of the update for the weights.
LOSS_RTOL, UPDATE_RTOL = 1e-4, 0.05


def step_multi(p: dict[str, Any], res: Result) -> None:
    import torch

    if p["cuda"] and p["gpus"] < 2:
        res.end(SKIPPED, f"needs 2 CUDA devices, this machine has {p['gpus']}")
        return
    import shutil

    processed = synthetic_h36m(p, res)
    n, batch = p["multi_steps"], p["multi_batch"]
    sets = set_args([*data_overrides(processed, p), "train.optimizer=SGD", "train.sync_bn=true",
                     "train.backbone_lr=0.01", "train.volume_net_lr=0.01", "train.process_features_lr=0.01",
                     "train.vis_freq=0", "train.n_epochs=1"])
    runs = {}
    for procs in (2, 1):
        logdir = Path(p["work"]) / f"multi_{procs}"
        shutil.rmtree(logdir, ignore_errors=True)
        t0 = time.perf_counter()
        cli(["train", CONFIG, *device_args(p, procs), "--max-steps", str(n), "--no-val", "--logdir", str(logdir),
             *sets, "--set", f"train.batch_size={batch * 2 // procs}"], Path(p["log_dir"]) / f"multi_gpu.{procs}.log",
            res)
        runs[procs] = only_run(logdir)
        res.figure(**{f"seconds_{procs}_procs": time.perf_counter() - t0})
    loss = {k: [s["train/loss/total"] for s in read_scalars(r)] for k, r in runs.items()}
    w = {k: torch.load(r / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["model"]
         for k, r in runs.items()}
    w0 = initial_weights(processed, p)
    keys = [k for k, v in w[1].items() if v.is_floating_point()]
    diff = torch.cat([(w[2][k].double() - w[1][k].double()).flatten() for k in keys]).norm().item()
    update = torch.cat([(w[1][k].double() - w0[k].double()).flatten() for k in keys]).norm().item()
    loss_rel = [abs(a - b) / abs(b) for a, b in zip(loss[2], loss[1], strict=True)]
    res.figure(losses_2_procs=loss[2], losses_1_proc=loss[1], loss_rel_diff=loss_rel, weight_diff_norm=diff,
               update_norm=update, weight_diff_over_update=diff / max(update, 1e-30), loss_rtol=LOSS_RTOL,
               update_rtol=UPDATE_RTOL)
    res.line(f"{n} SGD steps: first-loss difference {loss_rel[0]:.1e} (bound {LOSS_RTOL:g}), weights "
             f"{diff / max(update, 1e-30):.2%} of the update (bound {UPDATE_RTOL:.0%})")
    if not p["cuda"]:
        res.note(f"{NO_CUDA}: 2 Gloo CPU processes stood in for 2 GPUs")
    if update == 0.0:
        raise StepFailure("the weights did not move: nothing was compared")
    if loss_rel[0] > LOSS_RTOL or diff / update > UPDATE_RTOL:
        raise StepFailure(f"2 processes differ from 1 with twice the batch: first loss {loss_rel[0]:.1e} relative, "
                          f"weights {diff / update:.1%} of the update")


# --------------------------------------------------------------------------- steps: the paper setting


# (name, implementation, autocast, channels-last)
MODES = (("fp32", "ours", None, False), ("bf16", "ours", "bf16", False), ("bf16_channels_last", "ours", "bf16", True),
         ("reference_fp32", "reference", None, False), ("reference_bf16", "reference", "bf16", False))


def network_step(p: dict[str, Any], impl: str, amp: str | None, channels_last: bool,
                 compile_model: bool = False) -> dict[str, Any]:
    """Time and peak memory of the training step of ``bench_model.runner`` (network + losses, backward)."""
    import bench_model
    import torch

    device = torch.device(p["device"])
    _free(device)
    _reset_peak(device)
    run = bench_model.runner("network", impl, p["setting"], p["batch"], device, amp, channels_last, compile_model)
    t0 = time.perf_counter()
    run(True)  # cold: builds the prior cache (and compiles)
    _sync(device)
    first = time.perf_counter() - t0
    step = bench_model.time_interleaved({"run": run}, True, p["repeats"], device)["run"]
    return {"step_s": step, "samples_per_s": p["batch"] / step, "first_step_s": first,
            "peak_memory_mb": _peak_mb(device)}


def step_paper(p: dict[str, Any], res: Result) -> None:
    import bench_train

    rows: dict[str, dict[str, Any]] = {}
    res.figure(setting=p["setting"], batch=p["batch"], device=p["device"], repeats=p["repeats"], modes=rows)
    # a mode starts only with time to finish: the paper setting's cold step (cuDNN autotuning) takes seconds on a
    # GPU, the tiny CPU setting's whole mode about one
    mode_min_s = 15.0 if p["cuda"] else 5.0
    for name, impl, amp, channels_last in MODES:
        if res.left() < mode_min_s:
            rows[name] = {"skipped": "the step's time ran out"}
        else:
            try:
                rows[name] = network_step(p, impl, amp, channels_last)
            except Exception as e:
                traceback.print_exc()
                rows[name] = {"failed": one_line(e)}
        res.figure(modes=rows)
    if res.left() > mode_min_s:
        try:
            _free(p["device"])
            m = bench_train.measure(p["setting"], p["batch"], p["device"], "bf16", p["repeats"], 1)
            rows["engine_bf16"] = {"step_s": m["step_s"], "samples_per_s": m["samples_per_s"],
                                   "peak_memory_mb": m["peak_memory_mb"]}
        except Exception as e:
            traceback.print_exc()
            rows["engine_bf16"] = {"failed": one_line(e)}
    else:
        rows["engine_bf16"] = {"skipped": "the step's time ran out"}
    ratios = {}
    for prec in ("fp32", "bf16"):
        ours, ref = rows.get(prec, {}), rows.get(f"reference_{prec}", {})
        if "step_s" in ours and "step_s" in ref:
            ratios[prec] = {"speedup": ref["step_s"] / ours["step_s"],
                            "memory_ratio": ref["peak_memory_mb"] / ours["peak_memory_mb"]}
    res.figure(modes=rows, reference_over_ours=ratios)
    for name, row in rows.items():
        if "step_s" in row:
            res.line(f"{name}: {row['step_s'] * 1e3:.1f} ms/step, {row['samples_per_s']:.1f} samples/s, "
                     f"peak {row['peak_memory_mb'] / 1024:.2f} GB")
        else:
            res.line(f"{name}: {row.get('failed') or 'skipped: ' + row.get('skipped', '?')}")
    for prec, r in ratios.items():
        res.line(f"ours vs the original's formulation, {prec}: {r['speedup']:.2f}x faster, "
                 f"{r['memory_ratio']:.2f}x less memory")
    if p["device"] == "cpu":
        res.note(f"{NO_CUDA}: the {p['setting']} setting on the CPU (peak memory is the process's peak RSS)")
    failed = [k for k, r in rows.items() if "failed" in r]
    if failed:
        raise StepFailure(f"{failed[0]}: {rows[failed[0]]['failed']}")


def step_compile(p: dict[str, Any], res: Result) -> None:
    if not p["cuda"]:
        res.end(SKIPPED, f"{NO_CUDA}: torch.compile is timed on the GPU only (compiling on a CPU takes minutes)")
        return
    from torch._dynamo.utils import counters

    row = network_step(p, "ours", "bf16", False, compile_model=True)
    breaks = sum(counters["graph_break"].values())
    eager = p.get("eager_bf16_step_s")
    res.figure(setting=p["setting"], batch=p["batch"], compile_s=row["first_step_s"], step_s=row["step_s"],
               samples_per_s=row["samples_per_s"], peak_memory_mb=row["peak_memory_mb"], graph_breaks=breaks,
               speedup_over_eager=eager / row["step_s"] if eager else None)
    res.line(f"compiled bf16: first step {row['first_step_s']:.0f} s, {row['step_s'] * 1e3:.1f} ms/step"
             + (f" ({eager / row['step_s']:.2f}x eager)" if eager else "") + f", {breaks} graph breaks, "
             f"peak {row['peak_memory_mb'] / 1024:.2f} GB")


def matmul_rate(n: int, repeats: int, device: Any) -> dict[str, float]:
    """bf16 dense ``torch.matmul`` of two n x n matrices: 2 n^3 FLOPs, timed with CUDA events after warm-up."""
    import statistics

    import torch

    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16, generator=g)
    out = torch.empty(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        torch.matmul(a, b, out=out)
    _sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.matmul(a, b, out=out)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            torch.matmul(a, b, out=out)
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"n": n, "repeats": repeats, "median_s": median, "tflops": 2 * n**3 / median / 1e12,
            "best_tflops": 2 * n**3 / min(times) / 1e12}


def top_kernels(run: Callable[[bool], None], steps: int, device: Any, top: int = 15) -> list[dict[str, Any]]:
    """The ``top`` entries by self device time (CUDA kernels; CPU operators on a CPU) over ``steps`` steps."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            run(True)
        _sync(device)
    events = list(prof.key_averages())

    def self_us(e: Any) -> float:
        if not cuda:
            return float(e.self_cpu_time_total)
        return float(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0))

    if cuda:
        kernels = [e for e in events if getattr(e, "device_type", None) == DeviceType.CUDA]
        events = kernels or events
    total = sum(self_us(e) for e in events) or 1.0
    events.sort(key=self_us, reverse=True)
    return [{"name": e.key[:120], "self_ms_per_step": self_us(e) / 1e3 / steps, "share": self_us(e) / total,
             "calls_per_step": e.count / steps} for e in events[:top]]


def step_limit(p: dict[str, Any], res: Result) -> None:
    import bench_model
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(p["device"])
    run = bench_model.runner("network", "ours", p["setting"], p["batch"], device, "bf16", False)
    run(True)  # warm-up: the prior cache is built outside the counted and timed steps
    with FlopCounterMode(display=False) as counter:
        run(True)
    flops = counter.get_total_flops()
    by_op = sorted(((str(op), n) for op, n in counter.get_flop_counts().get("Global", {}).items()),
                   key=lambda x: -x[1])
    step = bench_model.time_interleaved({"run": run}, True, p["repeats"], device)["run"]
    res.figure(setting=p["setting"], batch=p["batch"], device=str(device), step_flops=flops, step_s=step,
               flops_by_op=dict(by_op[:10]))
    peak = matmul_rate(p["matmul_size"], p["matmul_repeats"], device)
    achieved = flops / step / 1e12
    fraction = achieved / peak["tflops"]
    res.figure(matmul=peak, achieved_tflops=achieved, fraction_of_matmul_peak=fraction, target=TARGET_FRACTION,
               meets_target=fraction >= TARGET_FRACTION)
    res.line(f"bf16 step: {flops / 1e12:.3f} TFLOP in {step * 1e3:.1f} ms = {achieved:.1f} TFLOP/s; matmul "
             f"{peak['n']}^3: {peak['tflops']:.1f} TFLOP/s; {fraction:.1%} of it (target {TARGET_FRACTION:.0%})")
    kernels = top_kernels(run, p["profile_steps"], device)
    res.figure(top_kernels=kernels)
    for k in kernels[:5]:
        res.line(f"  {k['share']:.1%} {k['self_ms_per_step']:.2f} ms/step  {k['name'][:70]}")
    if device.type != "cuda":
        res.note(f"{NO_CUDA}: counted and timed on the CPU at the {p['setting']} setting; the fraction is of the "
                 "CPU's bf16 matmul rate")


def step_loading(p: dict[str, Any], res: Result) -> None:
    import shutil
    import statistics

    import bench_loader
    import torch

    from ctxpose.data.datasets import Human36MDataset
    from ctxpose.data.loaders import make_train_loader, set_loader_epoch
    from ctxpose.engine.evaluator import move_batch

    device = torch.device(p["device"])
    base = Path(p["work"]) / f"loader_{p['loader_frames']}f"
    ours = base / "ours"
    if not (ours / "labels.npz").is_file():
        shutil.rmtree(base, ignore_errors=True)
        ours, _, _ = bench_loader.write_data(base, p["loader_frames"])
    side = bench_loader.CROP
    dataset = Human36MDataset(ours, split="train", image_shape=(side, side), max_n_views=1, subjects=("S1",))
    consumer = p.get("consumer_samples_per_s")
    res.figure(crop=side, batch=p["batch"], samples=p["loader_samples"], dataset_samples=len(dataset),
               cpu_count=os.cpu_count(), gpu_consumes_samples_per_s=consumer, rates={})
    rates: dict[str, Any] = {}
    for workers in p["workers"]:
        if res.left() < 10:
            rates[str(workers)] = {"skipped": "the step's time ran out"}
            continue
        loader = make_train_loader(dataset, p["batch"], num_workers=workers, seed=0,
                                   pin_memory=device.type == "cuda")
        t0 = time.perf_counter()
        set_loader_epoch(loader, 0)
        batches, epoch = iter(loader), 0
        move_batch(next(batches), device)
        startup = time.perf_counter() - t0
        count, start = 0, time.perf_counter()
        while count < p["loader_samples"]:
            try:
                batch = next(batches)
            except StopIteration:
                epoch += 1
                set_loader_epoch(loader, epoch)
                batches = iter(loader)
                continue
            move_batch(batch, device)
            count += len(batch["index"])
        _sync(device)
        elapsed = time.perf_counter() - start
        rates[str(workers)] = {"samples_per_s": count / elapsed, "samples": count, "seconds": elapsed,
                               "startup_s": startup}
        del batches, loader
        res.figure(rates=rates)
        res.line(f"{workers} workers: {count / elapsed:.0f} samples/s (start-up {startup:.1f} s)")
    measured = {int(k): v["samples_per_s"] for k, v in rates.items() if "samples_per_s" in v}
    needed = estimate = None
    if consumer and measured:
        needed = min((w for w, r in measured.items() if r >= consumer), default=None)
        per_worker = [r / w for w, r in measured.items() if w > 0]
        if per_worker:
            estimate = math.ceil(consumer / statistics.median(per_worker))
    res.figure(rates=rates, workers_needed=needed, workers_needed_estimate=estimate)
    if consumer:
        res.line(f"the bf16 engine step consumes {consumer:.1f} samples/s: "
                 + (f"{needed} workers keep up" if needed is not None else
                    f"none of {sorted(measured)} workers keeps up; about {estimate} would"))
    else:
        res.note("no GPU consumption figure (the paper step gave no bf16 time)")
    if device.type != "cuda":
        res.note(f"{NO_CUDA}: timed on the CPU without pinned memory at {p['loader_samples']} samples")


# --------------------------------------------------------------------------- the parent


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    budget_s: float
    run: Callable[[dict[str, Any], Result], None]


STEPS = {s.name: s for s in (
    Step("environment", "environment", 60, step_environment),
    Step("pytest_gpu", "pytest -m gpu", 120, step_pytest),
    Step("train_resume_eval", "train --gpus 1 --amp bf16, --resume, eval", 120, step_train),
    Step("paper_step", "paper training step: fp32 / bf16 / channels-last / original's formulation", 110,
         step_paper),
    Step("physical_limit", "bf16 step FLOPs against the matmul peak", 70, step_limit),
    Step("data_loading", "data loading vs GPU consumption", 70, step_loading),
    Step("multi_gpu", "--gpus 2 vs --gpus 1 with twice the batch", 100, step_multi),
    Step("paper_compile", "paper step under torch.compile", 170, step_compile),
)}
MIN_STEP_S = 20.0  # a step with less time left than this is skipped, not started
RESERVE_S = 5.0  # kept for writing the report


class Check:
    """Runs the steps one by one within the overall budget, rewriting the report after each."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.start = time.monotonic()
        self.out, self.log = args.out, args.log or args.out.with_suffix(".log")
        self.work = args.work_dir or args.out.parent / f"{args.out.stem}_work"
        self.log_dir = self.work / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        selected = [s.strip() for s in args.steps.split(",")] if args.steps else list(STEPS)
        self.selected = ["environment", *[s for s in selected if s != "environment"]]
        self.report: dict[str, Any] = {
            "format": FORMAT, "version": 1, "command": [sys.executable, *sys.argv],
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "finished": None,
            "budget_s": args.budget_s, "elapsed_s": 0.0, "complete": False, "mode": None, "sizes": None,
            "environment": {}, "steps": {}, "failed": [], "exit_status": None}
        for name in STEPS:
            self.report["steps"][name] = {"title": STEPS[name].title, "status": "pending", "reason": None}
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_text(f"gpu_check {self.report['started']}: {' '.join(sys.argv)}\n", encoding="utf-8")
        self.results: dict[str, dict[str, Any]] = {}

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.start)

    def save(self) -> None:
        self.report["elapsed_s"] = time.monotonic() - self.start
        write_json(self.out, self.report)

    def skip(self, name: str, reason: str) -> None:
        self.report["steps"][name].update(status=SKIPPED, reason=reason, seconds=0.0)

    def params(self, name: str, sizes: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
        cuda = bool(env.get("cuda_works"))
        p = {**sizes, "cuda": cuda, "gpus": env.get("gpus", 0), "device": "cuda" if cuda else "cpu",
             "work": str(self.work), "log_dir": str(self.log_dir), "threads": self.args.threads,
             "pytest_paths": self.args.pytest_paths.split()}
        paper = self.results.get("paper_step", {}).get("figures", {}).get("modes", {})
        consumer = paper.get("engine_bf16", {}).get("samples_per_s") or paper.get("bf16", {}).get("samples_per_s")
        if name == "data_loading":
            p["consumer_samples_per_s"] = consumer
        if name == "paper_compile":
            p["eager_bf16_step_s"] = paper.get("bf16", {}).get("step_s")
        return p

    def run_step(self, name: str, params: dict[str, Any]) -> None:
        step = STEPS[name]
        timeout = min(step.budget_s, self.left() - RESERVE_S)
        entry = self.report["steps"][name]
        if timeout < MIN_STEP_S:
            self.skip(name, f"the overall budget of {self.args.budget_s:.0f} s is spent ({self.left():.0f} s left)")
            return
        params = {**params, "step": name, "timeout_s": timeout}
        params_path, result_path = self.work / f"{name}.params.json", self.work / f"{name}.result.json"
        write_json(params_path, params)
        result_path.unlink(missing_ok=True)
        log = self.log_dir / f"{name}.log"
        entry.update(status="running", budget_s=step.budget_s, timeout_s=timeout, log=str(log))
        self.save()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "PYTHONUNBUFFERED": "1"}
        if self.args.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.args.threads)
        t0 = time.monotonic()
        try:
            rc, text = run_bounded([sys.executable, str(Path(__file__).resolve()), "--child", name, "--params",
                                    str(params_path), "--result", str(result_path)], log, timeout, env)
        finally:
            entry["seconds"] = time.monotonic() - t0
            result = json.loads(result_path.read_text()) if result_path.is_file() else {}
            self.results[name] = result
            entry.update({k: result.get(k) for k in ("figures", "summary", "note")})
            with open(self.log, "a", encoding="utf-8") as combined:
                combined.write(f"\n===== {name} =====\n")
                combined.write(log.read_text(encoding="utf-8", errors="replace") if log.is_file() else "(no log)\n")
        if rc is None:
            entry.update(status=FAILED, reason=f"ran out of its {timeout:.0f} s (killed); partial figures kept")
        elif result.get("status") in (OK, SKIPPED, FAILED):
            entry.update(status=result["status"], reason=result.get("reason"))
        else:
            entry.update(status=FAILED, reason=f"the step process exited with status {rc} without a result: "
                                               f"{last_line(text)}")

    def run(self, console: Any) -> int:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        interrupted: str | None = None
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("gpu check", total=len(self.selected))
            for name in self.selected:
                if interrupted:
                    self.skip(name, f"the check was interrupted ({interrupted})")
                    continue
                try:
                    progress.update(task, description=f"{name} ({STEPS[name].title})")
                    if name == "environment":
                        self.run_step(name, {"threads": self.args.threads})
                    else:
                        self.run_step(name, self.params(name, self.report["sizes_used"], self.report["environment"]))
                except Interrupted as e:
                    interrupted = str(e)
                    self.report["steps"][name].update(status=FAILED, reason=f"interrupted ({interrupted})")
                if name == "environment":
                    self.choose_mode()
                entry = self.report["steps"][name]
                self.save()
                console.print(f"{name}: {_styled(entry['status'])}"
                              + (f" ({entry['reason']})" if entry.get("reason") else "")
                              + f" [{entry.get('seconds', 0):.0f} s]")
                progress.advance(task)
        for name in STEPS:
            if name not in self.selected:
                self.skip(name, "not selected (--steps)")
        self.report["failed"] = [n for n, s in self.report["steps"].items() if s["status"] == FAILED]
        status = 130 if interrupted else (1 if self.report["failed"] else 0)
        self.report.update(complete=not interrupted, exit_status=status,
                           finished=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
        self.save()
        print_report(self.report, console)
        console.print(f"wrote {self.out} and {self.log}")
        return status

    def choose_mode(self) -> None:
        env = (self.results.get("environment") or {}).get("figures") or {}
        self.report["environment"] = env
        cuda = bool(env.get("cuda_works"))
        self.report["mode"] = "cuda" if cuda else "cpu"
        self.report["sizes"] = "tiny" if self.args.tiny or not cuda else "full"
        sizes = dict(SIZES[self.report["sizes"]])
        for key in ("train_steps", "resume_extra_steps", "repeats", "matmul_size", "loader_samples"):
            if getattr(self.args, key) is not None:
                sizes[key] = getattr(self.args, key)
        if self.args.workers:
            sizes["workers"] = [int(w) for w in self.args.workers.split(",")]
        self.report["sizes_used"] = sizes


def _styled(status: str) -> str:
    colour = {OK: "green", FAILED: "red", SKIPPED: "yellow"}.get(status, "white")
    return f"[{colour}]{status}[/{colour}]"


def print_report(report: dict[str, Any], console: Any) -> None:
    """Two rich tables: the machine, then every step with its status, reason and measured figures."""
    from rich.markup import escape
    from rich.table import Table

    env = report.get("environment") or {}
    machine = Table(title="GPU check: the machine", show_header=False)
    devices = env.get("devices") or []
    card = ", ".join(f"{d['name']} ({d['memory_gib']} GiB, sm {d['capability']})" for d in devices) or NO_CUDA
    for key, value in (("card", card), ("driver", env.get("driver")), ("torch", env.get("torch")),
                       ("CUDA", env.get("cuda")), ("cuDNN", env.get("cudnn")), ("NCCL", env.get("nccl")),
                       ("python", env.get("python")), ("CPU cores", env.get("cpu_count")),
                       ("mode", f"{report.get('mode')}, {report.get('sizes')} sizes"),
                       ("missing packages", ", ".join(env.get("missing_packages") or []) or "none")):
        machine.add_row(key, escape(str(value)))
    console.print(machine)
    steps = Table(title=f"GPU check: steps ({report['elapsed_s']:.0f} s of {report['budget_s']:.0f} s)")
    for col in ("step", "status", "s", "figures"):
        steps.add_column(col, overflow="fold")
    for name, s in report["steps"].items():
        lines = list(s.get("summary") or [])
        if s.get("reason"):
            lines.insert(0, f"reason: {s['reason']}")
        if s.get("note"):
            lines.append(f"note: {s['note']}")
        steps.add_row(name, _styled(s["status"]), f"{s.get('seconds', 0):.0f}", escape("\n".join(lines)))
    console.print(steps)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="JSON report")
    parser.add_argument("--log", type=Path, default=None, help="every step's log, appended (default OUT.log)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="data, runs and step logs (default OUT's folder/OUT-stem_work)")
    parser.add_argument("--budget-s", type=float, default=440.0, help="overall time budget, seconds")
    parser.add_argument("--steps", default=None, help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes even on a GPU (the default without CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads in every step process")
    parser.add_argument("--pytest-paths", default="tests", help="what pytest -m gpu collects (space-separated)")
    parser.add_argument("--workers", default=None, help="loader workers to time, e.g. 0,2,4,8")
    parser.add_argument("--train-steps", type=int, default=None, help="steps before the resume")
    parser.add_argument("--resume-extra-steps", type=int, default=None, help="steps the resumed run adds")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per mode")
    parser.add_argument("--matmul-size", type=int, default=None, help="n of the n^3 bf16 matmul")
    parser.add_argument("--loader-samples", type=int, default=None, help="samples timed per worker count")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--params", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("train_steps", "resume_extra_steps", "repeats", "matmul_size", "loader_samples", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: expected at least 1")
    if args.steps:
        unknown = [s for s in args.steps.split(",") if s.strip() not in STEPS]
        if unknown:
            parser.error(f"--steps: unknown {', '.join(unknown)}; expected some of {', '.join(STEPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args.child, args.params, args.result)
    from rich.console import Console

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    console = Console(width=None if sys.stdout.isatty() else 150)  # a log file gets wide tables
    try:
        return Check(args).run(console)
    except Interrupted:  # between steps or while printing: the report on disk holds every finished step
        return 130


if __name__ == "__main__":
    sys.exit(main())
