"""The prepared GPU check: every CUDA path of ctxpose run once and the paper setting measured, in one process.

    bash benchmarks/gpu_check.sh [DIR]                    # the device run, bounded by `timeout`
    python benchmarks/gpu_check.py --smoke --out x.json   # CI: starts, times the tiny network on the CPU (seconds)

Each step is a plain function returning its figures; one that raises is recorded failed with a one-line reason and
the next runs. The JSON report (``--out``) is rewritten atomically before and after every step; ``timeout``'s SIGTERM
(``StopSignals``) marks the running step interrupted, exit 130. Without CUDA: tiny sizes on the CPU, CUDA steps skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import bench_loader, bench_model, bench_train  # noqa: E402
from ctxpose._version import __version__  # noqa: E402
from ctxpose.data.datasets import Human36MDataset  # noqa: E402
from ctxpose.errors import Stopped  # noqa: E402
from ctxpose.utils.io import atomic_write_text  # noqa: E402
from ctxpose.utils.signals import StopSignals  # noqa: E402

NO_CUDA = "no CUDA device"
TARGET_FRACTION = 0.30  # of the measured bf16 matmul rate, for the bf16 paper training step
SIZES: dict[str, dict[str, Any]] = {  # "full" on a GPU, "tiny" on a CPU or with --tiny
    "full": dict(setting="paper", batch=4, repeats=5, matmul=8192, train_steps=200, resume_steps=100, frames=60,
                 frame_size=320, crop=64, train_batch=8, loader_frames=32, loader_samples=384, workers=[0, 2, 4, 8]),
    "tiny": dict(setting="tiny", batch=2, repeats=2, matmul=256, train_steps=2, resume_steps=2, frames=6,
                 frame_size=160, crop=32, train_batch=2, loader_frames=4, loader_samples=16, workers=[0, 2]),
}
# (name, implementation, autocast, channels-last): the network + the paper's losses, forward and backward
MODES = (("fp32", "ours", None, False), ("bf16", "ours", "bf16", False), ("bf16_channels_last", "ours", "bf16", True),
         ("reference_fp32", "reference", None, False), ("reference_bf16", "reference", "bf16", False))


class Skip(Exception):
    """The step does not apply here; the message says why."""


class Ctx:
    """What steps share: the device, the sizes, the work folder and the figures of the steps before."""

    def __init__(self, device: torch.device, sizes: dict[str, Any], work: Path) -> None:
        self.device, self.sizes, self.work, self.cuda = device, sizes, work, device.type == "cuda"
        self.amp = "bf16" if self.cuda else None  # CPU bf16 3D convolutions are slow (20 s a tiny step): float32
        self.figures: dict[str, dict[str, Any]] = {}


def run_steps(steps: dict[str, Callable[[Ctx], dict[str, Any]]], ctx: Ctx, out: Path, report: dict[str, Any],
              stop: StopSignals, say: Callable[[str], None] = functools.partial(print, flush=True)) -> int:
    """Run ``steps`` in order, ``report`` written to ``out`` before and after each; ``stop`` (entered, ``at_once``)
    interrupts the running step and skips the rest. Returns 0, 1 when a step failed, 130 when stopped."""
    rows = report["steps"] = {name: {"status": "pending"} for name in steps}

    def save() -> None:
        with StopSignals.held():  # a signal while the file is written acts once it is whole
            atomic_write_text(out, json.dumps(report, indent=2, default=str) + "\n")

    for name, step in steps.items():
        if stop.requested:
            rows[name] = {"status": "skipped", "reason": f"the check was stopped ({signal.Signals(stop.signal).name})"}
            continue
        rows[name], t0 = {"status": "running"}, time.monotonic()
        try:
            save()
            ctx.figures[name] = step(ctx)
            rows[name] = {"status": "ok", "figures": ctx.figures[name]}
        except Skip as e:
            rows[name] = {"status": "skipped", "reason": str(e)}
        except Stopped:
            rows[name] = {"status": "failed", "reason": f"interrupted ({signal.Signals(stop.signal).name})"}
        except Exception as e:
            traceback.print_exc()
            first = [*str(e).strip().splitlines(), ""][0]  # the reason is one line
            rows[name] = {"status": "failed", "reason": f"{type(e).__name__}: {first}"[:300]}
        rows[name]["seconds"] = round(time.monotonic() - t0, 2)
        with contextlib.suppress(Stopped):  # a signal while saving: the later steps are skipped
            save()
        say(f"{name}: {rows[name]['status']} ({rows[name]['seconds']:.0f} s) {rows[name].get('reason') or ''}")
    report["failed"] = [n for n, r in rows.items() if r["status"] == "failed"]
    report["complete"] = not stop.requested
    report["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    save()
    return 130 if stop.requested else 1 if report["failed"] else 0


def _network_step(ctx: Ctx, impl: str, amp: str | None, channels_last: bool = False,
                  compile_model: bool = False) -> tuple[Callable[[bool], None], dict[str, float]]:
    """``bench_model``'s training step of the network, and the first one's seconds and peak memory (cold: prior
    cache, autotuning, compiling; CUDA's allocations or the peak RSS) and the median of ``repeats`` warm ones."""
    s = ctx.sizes
    run = bench_model.runner("network", impl, s["setting"], s["batch"], ctx.device, amp, channels_last, compile_model)
    t0 = time.perf_counter()
    peak = bench_model.peak_extra_bytes(functools.partial(run, True), ctx.device, include_base=True)
    first_s = time.perf_counter() - t0
    step_s = bench_model.time_interleaved({"step": run}, True, s["repeats"], ctx.device)["step"]
    return run, {"step_s": step_s, "samples_per_s": s["batch"] / step_s, "first_step_s": first_s,
                 "peak_memory_mb": peak / 2**20}


def environment(ctx: Ctx) -> dict[str, Any]:
    """Versions, the cards, the Python packages ctxpose needs that are missing."""
    missing = [m for m in ("cv2", "cdflib", "h5py", "yaml", "typer", "rich", "tensorboard", "matplotlib", "pooch",
                           "pytest") if importlib.util.find_spec(m) is None]
    fig = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "ctxpose": __version__, "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "device": str(ctx.device), "missing_packages": missing}
    if ctx.cuda:
        props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        fig["devices"] = [f"{p.name}, sm {p.major}.{p.minor}, {p.total_memory / 2**30:.1f} GiB" for p in props]
        nccl = torch.cuda.nccl.version() if torch.distributed.is_nccl_available() else None  # a tuple, or an int
        fig["nccl"] = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else nccl
        fig["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                       capture_output=True, text=True).stdout.strip()
    return fig


def pytest_gpu(ctx: Ctx) -> dict[str, Any]:
    if not ctx.cuda:
        raise Skip(f"{NO_CUDA}: the gpu-marked tests would all skip")
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rfE", "-p", "no:cacheprovider",
                           "--continue-on-collection-errors", "tests"], cwd=ROOT, capture_output=True, text=True)
    summary = next((x for x in reversed(done.stdout.splitlines()) if re.search(r"\bin [\d.]+s\b", x)), "")
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", summary)}
    problems = [x for x in done.stdout.splitlines() if x.startswith(("FAILED ", "ERROR "))]
    if counts.get("failed") or not counts.get("passed"):
        raise RuntimeError(problems[0] if problems else f"no gpu test passed: {summary or done.stderr[-200:]}")
    return {"counts": counts, "problems": problems[:20]}


def _ctxpose(ctx: Ctx, name: str, *args: str) -> float:
    """``ctxpose ARGS``, its output in the work folder; its seconds, or an error with its last line."""
    log, t0 = ctx.work / f"{name}.log", time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "ctxpose", *args], cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if rc.returncode:
        lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
        raise RuntimeError(f"ctxpose {args[0]} exit {rc.returncode}: {lines[-1] if lines else ''} ({log})")
    return time.perf_counter() - t0


def train_resume_eval(ctx: Ctx) -> dict[str, Any]:
    """Synthetic Human3.6M through the commands; train in bf16, resume, evaluate; the results read back."""
    s = ctx.sizes
    raw, data, runs = ctx.work / "h36m_raw", ctx.work / "h36m", ctx.work / "runs"
    [shutil.rmtree(folder, ignore_errors=True) for folder in (raw, data, runs)]
    _ctxpose(ctx, "synthesize", "synthesize", "h36m", str(raw), "--subjects", "S1,S9", "--actions",
             "Walking-1,TakingPhoto-2", "--frames", str(s["frames"]), "--size", str(s["frame_size"]))
    _ctxpose(ctx, "preprocess", "preprocess", "h36m", str(raw), str(data), "--image-size", str(s["crop"]),
             "--train-every", "1", "--test-every", "1", "--workers", str(min(8, os.cpu_count() or 1)))
    sets = [f"dataset.root={data}", f"dataset.limb_length_path={data / 'mean_and_std_limb_length.h5'}",
            "dataset.train_subjects=[S1]", "dataset.val_subjects=[S9]", f"model.image_shape=[{s['crop']},{s['crop']}]",
            f"train.batch_size={s['train_batch']}", "train.n_epochs=100"]
    common = ["configs/tiny_cpu.yaml", *(["--gpus", "1"] if ctx.cuda else ["--device", "cpu"]), "--amp", "bf16",
              "--logdir", str(runs), *[x for o in sets for x in ("--set", o)]]
    n1, n2 = s["train_steps"], s["train_steps"] + s["resume_steps"]
    train_s = _ctxpose(ctx, "train", "train", *common, "--max-steps", str(n1))
    [run] = [p.parent for p in runs.glob("*/run_info.json")]
    _ctxpose(ctx, "resume", "train", *common, "--resume", str(run), "--max-steps", str(n2))
    step = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)["step"]
    resumed = json.loads((run / "run_info.json").read_text())["resumed_from"]["step"]
    scalars = [json.loads(x) for x in (run / "scalars.jsonl").read_text().splitlines() if x.strip()]
    losses = [r["train/loss/total"] for r in scalars]
    if (step, resumed, [r["step"] for r in scalars]) != (n2, n1, list(range(1, n2 + 1))):
        raise RuntimeError(f"{run}: checkpoint step {step}, resumed from {resumed}, not {n1} -> {n2} logged once each")
    if not torch.tensor(losses).isfinite().all():
        raise RuntimeError(f"{run}: a non-finite bf16 training loss")
    k = max(1, n2 // 10)
    first, last = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
    if n2 >= 100 and not last < first:
        raise RuntimeError(f"the bf16 training loss did not fall over {n2} steps ({first:.4g} -> {last:.4g})")
    _ctxpose(ctx, "eval", "eval", str(run), "--device", ctx.device.type)
    mpjpe = json.loads((run / "eval_val" / "metrics.json").read_text())["overall"]["mpjpe"]
    history = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else []  # per epoch
    own = history[-1]["val"]["mpjpe"] if history and history[-1].get("step") == n2 and "val" in history[-1] else None
    # the run validated its last step in bf16, eval runs float32: bf16 moves these joints by 1-2.5 mm on average
    if own is not None and abs(own - mpjpe) > 3.0:
        raise RuntimeError(f"eval MPJPE {mpjpe:.1f} mm, the run's own bf16 validation {own:.1f} mm")
    return {"run": run, "steps": n2, "resumed_from": resumed, "train_s": train_s, "loss_first": first,
            "loss_last": last, "samples_per_s": statistics.median(r["train/samples_per_s"] for r in scalars),
            "eval_mpjpe_mm": mpjpe, "run_val_mpjpe_mm": own}


def paper_step(ctx: Ctx) -> dict[str, Any]:
    """ms/step and peak memory of each mode, ours against the original's formulation, and the engine step."""
    s, rows = ctx.sizes, {}
    for name, impl, amp, channels_last in MODES:  # each mode's network freed before the next: its peak is its own
        rows[name] = (_network_step(ctx, impl, amp, channels_last)[1] if ctx.cuda or not amp
                      else {"skipped": f"{NO_CUDA}: bf16 is timed on the GPU only"})
    engine = bench_train.measure(s["setting"], s["batch"], str(ctx.device), ctx.amp, s["repeats"], 1)
    rows[f"engine_{ctx.amp or 'fp32'}"] = {k: engine[k] for k in ("step_s", "samples_per_s", "peak_memory_mb")}
    ratios = {p: {"speedup": rows[f"reference_{p}"]["step_s"] / rows[p]["step_s"],
                  "memory_ratio": rows[f"reference_{p}"]["peak_memory_mb"] / rows[p]["peak_memory_mb"]}
              for p in ("fp32", "bf16") if "step_s" in rows[p]}
    return {"setting": s["setting"], "batch": s["batch"], "repeats": s["repeats"], "modes": rows,
            "reference_over_ours": ratios}


def physical_limit(ctx: Ctx) -> dict[str, Any]:
    """FLOPs of the bf16 paper step against the card's bf16 matmul rate (float32 on a CPU), the top operators."""
    s = ctx.sizes
    run, times = _network_step(ctx, "ours", ctx.amp)  # the prior cache is built outside the counted step
    flops, by_op = bench_model.count_flops(functools.partial(run, True))
    peak = bench_model.matmul_tflops(s["matmul"], ctx.device, torch.bfloat16 if ctx.amp else torch.float32)
    achieved = flops / times["step_s"] / 1e12
    return {"setting": s["setting"], "batch": s["batch"], "amp": ctx.amp, "step_flops": flops,
            "step_s": times["step_s"], "flops_by_op": by_op, "achieved_tflops": achieved, "matmul": peak,
            "fraction_of_matmul_peak": achieved / peak["tflops"], "target": TARGET_FRACTION,
            "top_ops": bench_model.top_ops(functools.partial(run, True), ctx.device)}


def data_loading(ctx: Ctx) -> dict[str, Any]:
    """samples/s of the training loader (pinned, on the device, start-up included) per worker count vs the engine."""
    s = ctx.sizes
    shutil.rmtree(ctx.work / "loader", ignore_errors=True)
    ours, _, _ = bench_loader.write_data(ctx.work / "loader", s["loader_frames"])
    dataset = Human36MDataset(ours, **bench_loader.DATASET)
    consumer = ctx.figures.get("paper_step", {}).get("modes", {}).get(f"engine_{ctx.amp or 'fp32'}", {}).get(
        "samples_per_s")
    rates = {w: bench_loader.time_train_loader(dataset, s["loader_samples"], w, s["batch"], ctx.device)
             for w in s["workers"]}
    keep_up = [w for w, r in rates.items() if consumer and r >= consumer]
    return {"samples_per_s": rates, "engine_samples_per_s": consumer,
            "workers_needed": min(keep_up) if keep_up else None, "crop": bench_loader.CROP}


def paper_compile(ctx: Ctx) -> dict[str, Any]:
    if not ctx.cuda:
        raise Skip(f"{NO_CUDA}: torch.compile is timed on the GPU only (compiling on a CPU takes minutes)")
    from torch._dynamo.utils import counters

    times = _network_step(ctx, "ours", "bf16", compile_model=True)[1]
    eager = ctx.figures.get("paper_step", {}).get("modes", {}).get("bf16", {}).get("step_s")
    return {"compile_s": times.pop("first_step_s"), **times, "graph_breaks": sum(counters["graph_break"].values()),
            "speedup_over_eager": eager and eager / times["step_s"]}


STEPS: dict[str, Callable[[Ctx], dict[str, Any]]] = {f.__name__: f for f in (
    environment, pytest_gpu, paper_step, physical_limit, data_loading, train_resume_eval, paper_compile)}
SMOKE = ("environment", "physical_limit")


def print_table(report: dict[str, Any]) -> None:
    """The report as a rich table, a row per step with its figures flattened to ``key=value``."""
    from rich.console import Console
    from rich.table import Table

    def flat(v: Any, key: str = "") -> list[str]:
        if isinstance(v, dict):
            return [x for k, w in v.items() for x in flat(w, f"{key}.{k}".lstrip("."))]
        return [] if isinstance(v, list | None) else [f"{key}={v:.4g}" if isinstance(v, float) else f"{key}={v}"]

    table = Table("step", "status", "s", "figures / reason", title=f"{report['device']}, {report['sizes']} sizes")
    for name, r in report["steps"].items():
        text = r.get("reason") or ", ".join(flat(r.get("figures")))
        table.add_row(name, r["status"], str(r.get("seconds", "")), text)
    Console(width=None if sys.stdout.isatty() else 160).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON report")
    parser.add_argument("--work-dir", type=Path, default=None, help="data, runs, logs (default OUT-stem_work)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes even on a GPU (the default on a CPU)")
    parser.add_argument("--steps", default=None, help=f"comma-separated, in order, of: {', '.join(STEPS)}")
    parser.add_argument("--smoke", action="store_true", help=f"--tiny --steps {','.join(SMOKE)}, batch 1, --repeats 1")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per mode")
    args = parser.parse_args(argv)
    names = SMOKE if args.smoke else args.steps.split(",") if args.steps else list(STEPS)
    if unknown := [n for n in names if n not in STEPS]:
        parser.error(f"--steps: unknown {', '.join(unknown)}; expected some of {', '.join(STEPS)}")
    if args.repeats is not None and args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: expected at least 1")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here")
    size = "tiny" if args.tiny or args.smoke or device.type != "cuda" else "full"
    sizes = {**SIZES[size], **({"repeats": 1, "batch": 1} if args.smoke else {}),
             **({"repeats": args.repeats} if args.repeats else {})}
    work = args.work_dir or args.out.parent / f"{args.out.stem}_work"
    work.mkdir(parents=True, exist_ok=True)
    report = {"format": "ctxpose-gpu-check", "version": 2, "command": sys.argv, "device": str(device), "sizes": size,
              "sizes_used": sizes, "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    with StopSignals("the GPU check was stopped", at_once=True) as stop:
        try:
            status = run_steps({n: STEPS[n] for n in names}, Ctx(device, sizes, work), args.out, report, stop)
        except Stopped:  # between two steps: the report holds every finished step
            return 130
    print_table(report)
    print(f"GPU check on {device} ({size} sizes): wrote {args.out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
