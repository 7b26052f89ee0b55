"""Speed and memory of the ContextPose network: ours vs the original's formulation.

For the attention block alone and for a training step of the whole network (forward with the paper's losses,
backward), at the tiny setting (volume 16: N = 4^3 voxels in
the attention) and the paper setting (ResNet-152, 384 px, volume 64: N = 16^3 = 4096), batch 1 and 4, it
reports forward and forward+backward time (median of --repeats runs after a warm-up, ours and the
reference alternating) and peak memory of
one cold forward+backward (the pairwise prior built inside it), measured in a fresh subprocess:
RSS high-water mark (reset just before the call) minus RSS before the call on CPU,
``torch.cuda.max_memory_allocated`` on CUDA.

"reference" is the original's formulation as written in tests/reference/original_ops.py (dense N x N
pairwise matrices with (B, c, N, N) broadcast temporaries, per-sample/per-view unprojection loops).

    python benchmarks/bench_model.py --out bench_model.json                # everything (slow on CPU)
    python benchmarks/bench_model.py --settings tiny --batches 1 --repeats 5
    python benchmarks/bench_model.py --device cuda --amp bf16 --channels-last
    python benchmarks/bench_model.py --device cuda --amp bf16 --compile --parts network --impls ours
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctxpose.config import load_config  # noqa: E402
from ctxpose.losses import compute_losses, keypoints_loss  # noqa: E402
from ctxpose.models import build_model  # noqa: E402
from ctxpose.skeleton import LimbPrior, get_skeleton  # noqa: E402
from tests.reference.original_ops import (  # noqa: E402
    reference_attention,
    reference_forward,
    reference_ga_mask,
    reference_volumetric_ce,
)

SETTINGS = {
    "tiny": ["model.backbone.num_layers=18", "model.image_shape=[64, 64]",
             "model.volume_net.volume_size=16"],
    "paper": [],
}


def make_model(setting: str, device: torch.device):
    cfg = load_config(ROOT / "configs" / "human36m_contextpose.yaml", SETTINGS[setting])
    sk = get_skeleton("contextpose17")
    prior = LimbPrior(torch.linspace(100, 450, sk.num_bones), torch.linspace(5, 30, sk.num_bones))
    torch.manual_seed(0)
    return cfg, build_model(cfg, prior).to(device).train()


def make_inputs(cfg, batch: int, device: torch.device):
    h, w = cfg.model.image_shape
    images = torch.randn(batch, 1, 3, h, w, device=device)
    f = 1.2 * w
    K = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    rt = torch.cat([torch.eye(3), torch.tensor([[0.0], [0.0], [4500.0]])], dim=1)
    proj = (K @ rt).expand(batch, 1, 3, 4).to(device)
    return images, proj, torch.zeros(batch, 3, device=device), torch.linspace(0, 3, batch, device=device)


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Channels-last weights in place: NHWC for the 2D convolutions (4-D weights), NDHWC for the 3D ones (5-D).

    ``model.to(memory_format=torch.channels_last)`` refuses this network: it has 5-D weights too.
    """
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() in formats:
                param.data = param.data.contiguous(memory_format=formats[param.dim()])
    return model


def runner(part: str, impl: str, setting: str, batch: int, device: torch.device, amp: str | None,
           channels_last: bool, compile_model: bool = False):
    """A closure running one forward (and backward when asked).

    ``compile_model`` wraps our network in ``torch.compile`` (the first call compiles); only for the whole
    network of our implementation (the reference and the attention block call submodules directly).
    """
    if compile_model and (part != "network" or impl != "ours"):
        raise ValueError(f"compile_model: only for part 'network' of impl 'ours', not {part!r}/{impl!r}")
    cfg, model = make_model(setting, device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
                if amp else nullcontext())
    if channels_last:
        to_channels_last(model)
    net = torch.compile(model) if compile_model else model
    if part == "attention":
        block = model.volume_net.encoder_decoder.mid_res.atten_conv  # the context attention block
        s = cfg.model.volume_net.volume_size // 4
        x = torch.randn(batch, cfg.model.volume_net.att_channels, s, s, s, device=device, requires_grad=True)

        def run(backward: bool) -> None:
            with autocast:
                out, att = block(x) if impl == "ours" else reference_attention(block, x)
            if backward:
                (out.float().sum() + att.float().sum()).backward()
        return run

    images, proj, roots, thetas = make_inputs(cfg, batch, device)
    gt = roots[:, None] + torch.randn(batch, get_skeleton("contextpose17").num_joints, 3, device=device) * 300
    validity = torch.ones(batch, gt.shape[1], device=device)
    lc, vc = cfg.loss, cfg.model.volume_net

    def run(backward: bool) -> None:
        """A training step's forward (network + the paper's losses) and backward."""
        with autocast:
            if impl == "ours":
                out = net(images, proj, roots, thetas)
                loss = compute_losses(out, gt, validity, lc, vc)["total"]
            else:
                kp, _, _, probs, coords, att, aux = reference_forward(model, images, proj, roots, thetas)
                loss = (keypoints_loss(kp * lc.scale_keypoints_3d, gt * lc.scale_keypoints_3d, validity)
                        + lc.volumetric_ce_loss_weight * reference_volumetric_ce(coords, probs, gt, validity)
                        + lc.global_attention_loss_weight * F.mse_loss(att, reference_ga_mask(gt, aux)))
        if backward:
            loss.backward()
    return run


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(runs: dict, backward: bool, repeats: int, device: torch.device,
                     warmup: int = 1) -> dict[str, float]:
    """Median time of each runner after ``warmup`` calls; runners alternate so that machine load drifts affect
    them alike."""
    ctx = nullcontext() if backward else torch.no_grad()
    times: dict[str, list[float]] = {k: [] for k in runs}
    with ctx:
        for _ in range(warmup):
            for run in runs.values():
                run(backward)  # builds caches
        for _ in range(repeats):
            for name, run in runs.items():
                sync(device)
                t0 = time.perf_counter()
                run(backward)
                sync(device)
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_tflops(n: int, device: torch.device, dtype: torch.dtype, repeats: int = 10) -> dict[str, float]:
    """The device's measured matmul rate, a yardstick for a step's FLOPs: ``torch.matmul`` of two n x n matrices
    (2 n^3 FLOPs), the median of ``repeats`` after 3 warm-ups."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    median = time_interleaved({"matmul": lambda backward: torch.matmul(a, b)}, False, repeats, device, warmup=3)
    return {"n": n, "median_s": median["matmul"], "tflops": 2 * n**3 / median["matmul"] / 1e12}


def count_flops(fn: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """FLOPs of ``fn()`` (``FlopCounterMode``): the total, and by operator."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops(), {str(k): v for k, v in counter.get_flop_counts().get("Global", {}).items()}


def top_ops(fn: Callable[[], object], device: torch.device, n: int = 15) -> list[dict[str, object]]:
    """The ``n`` operators with the most self time in ``fn()`` (``torch.profiler``; device time on CUDA), ms."""
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as prof:
        fn()
        sync(device)
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    top = sorted(prof.key_averages(), key=lambda e: -getattr(e, key))[:n]
    return [{"name": e.key[:90], "ms": getattr(e, key) / 1e3} for e in top]


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def reset_peak_rss() -> None:
    """Reset the kernel's RSS high-water mark (VmHWM) to the current RSS (Linux)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def memory_probe(args) -> None:
    """Subprocess: peak extra memory of one cold forward+backward."""
    device = torch.device(args.device)
    run = runner(args.part, args.impl, args.setting, args.batch, device, args.amp, args.channels_last, args.compile)
    print(json.dumps({"peak_bytes": peak_extra_bytes(lambda: run(True), device)}))


def peak_extra_bytes(fn: Callable[[], object], device: torch.device, include_base: bool = False) -> int:
    """Peak memory ``fn()`` adds, bytes: CUDA's allocator peak on a GPU, the process's peak RSS on the CPU (run it
    in a fresh process: the RSS peak is process-wide). ``include_base``: the whole peak while it ran, what was
    in use before the call included."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = 0 if include_base else torch.cuda.memory_allocated()
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated() - base
    reset_peak_rss()
    base = 0 if include_base else current_rss_bytes()
    fn()
    return peak_rss_bytes() - base


def measure_memory(args, part: str, impl: str, setting: str, batch: int) -> int:
    cmd = [sys.executable, __file__, "--probe", "--part", part, "--impl", impl, "--settings", setting,
           "--batches", str(batch), "--device", args.device]
    if args.amp:
        cmd += ["--amp", args.amp]
    if args.channels_last:
        cmd.append("--channels-last")
    if args.compile:
        cmd.append("--compile")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return int(json.loads(out)["peak_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", default="tiny,paper")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--parts", default="attention,network")
    parser.add_argument("--impls", default="ours,reference")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["bf16", "fp16"], default=None)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile our network (needs --parts network --impls ours)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--out", type=Path, default=Path("bench_model.json"))
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile and not args.probe and (args.parts != "network" or args.impls != "ours"):
        parser.error("--compile: only with --parts network --impls ours (the reference calls submodules directly)")
    if args.probe:
        args.setting, args.batch = args.settings, int(args.batches)
        memory_probe(args)
        return

    device = torch.device(args.device)
    rows = []
    impls = args.impls.split(",")
    for setting in args.settings.split(","):
        for part in args.parts.split(","):
            for batch in map(int, args.batches.split(",")):
                runs = {impl: runner(part, impl, setting, batch, device, args.amp, args.channels_last,
                                     args.compile) for impl in impls}
                fwd = time_interleaved(runs, False, args.repeats, device)
                fwd_bwd = time_interleaved(runs, True, args.repeats, device)
                del runs
                side = 16 if setting == "paper" else 4
                for impl in impls:
                    row = {"setting": setting, "part": part, "batch": batch, "impl": impl, "device": str(device),
                           "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile,
                           "attention_voxels": side**3,
                           "forward_s": fwd[impl], "forward_backward_s": fwd_bwd[impl],
                           "peak_bytes": None if args.no_memory else measure_memory(args, part, impl, setting, batch)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    speedups = []
    for r in rows:
        if r["impl"] != "ours":
            continue
        ref = next((x for x in rows if x["impl"] == "reference" and all(
            x[k] == r[k] for k in ("setting", "part", "batch"))), None)
        if ref:
            speedups.append({
                "setting": r["setting"], "part": r["part"], "batch": r["batch"],
                "forward_speedup": ref["forward_s"] / r["forward_s"],
                "forward_backward_speedup": ref["forward_backward_s"] / r["forward_backward_s"],
                "memory_ratio": (ref["peak_bytes"] / max(r["peak_bytes"], 1)) if r["peak_bytes"] else None,
            })
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": args.repeats,
              "rows": rows, "speedups": speedups}
    args.out.write_text(json.dumps(result, indent=2))
    for s in speedups:
        mem = f"{s['memory_ratio']:.1f}x less memory" if s["memory_ratio"] else ""
        print(f"{s['setting']:5s} {s['part']:9s} B={s['batch']}: forward {s['forward_speedup']:.1f}x, "
              f"forward+backward {s['forward_backward_speedup']:.1f}x faster; {mem}")
    print(f"wrote {args.out}; {len(rows)} rows")


if __name__ == "__main__":
    main()
