"""Speed and memory of the multi-view models beside ContextPose: learnable-triangulation's volumetric, algebraic
and RANSAC networks, and the triangulation step alone (one batched SVD against a per-joint loop).

For each model (``model.architecture``) at the tiny setting (ResNet-18, 128 px, volume 32^3: the smallest the
volumetric model's V2V takes and the algebraic confidence head's smallest input) and the paper setting (ResNet-152,
384 px, volume 64^3), V views and batch B, it reports eval-mode forward time and training-mode forward+backward
time with the model's losses (median of --repeats runs after a warm-up, the models alternating), and the peak
memory of one cold forward+backward (forward only for RANSAC, which does not train), measured in a fresh
subprocess as bench_model.py does (RSS high-water mark on the CPU, ``torch.cuda.max_memory_allocated`` on CUDA).

The triangulation rows time :func:`ctxpose.models.triangulation.triangulate_dlt` on B x 17 joints x V views
against the original's structure (one small torch SVD per joint of each sample, ``torch_loop``) and
tests/reference/triangulation_ops.py's per-joint numpy loop (``loop``).

    python benchmarks/bench_multiview.py --out bench_multiview.json           # tiny, B=2, V=4
    python benchmarks/bench_multiview.py --settings tiny,paper --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_model import peak_extra_bytes, sync, time_interleaved  # noqa: E402
from ctxpose.config import load_config  # noqa: E402
from ctxpose.losses import compute_losses  # noqa: E402
from ctxpose.models import build_model  # noqa: E402
from ctxpose.models.triangulation import project, triangulate_dlt  # noqa: E402
from ctxpose.skeleton import LimbPrior, get_skeleton  # noqa: E402
from tests.reference.triangulation_ops import reference_dlt_batch  # noqa: E402

CONFIGS = {"contextpose": "human36m_contextpose", "volumetric": "human36m_vol_softmax", "algebraic": "human36m_alg",
           "ransac": "human36m_ransac"}
SETTINGS = {
    "tiny": {"all": ["model.backbone.num_layers=18", "model.image_shape=[128, 128]"],
             "volume": ["model.volume_net.volume_size=32"]},
    "paper": {"all": [], "volume": []},
}


def make_model(model: str, setting: str, device: torch.device):
    overrides = ["model.init_weights=false", "model.backbone.init_weights=false", "model.volume_net.use_gt_pelvis=true",
                 *SETTINGS[setting]["all"]]
    if model in ("contextpose", "volumetric"):
        overrides += SETTINGS[setting]["volume"]
    cfg = load_config(CONFIGS[model], overrides if model in ("contextpose", "volumetric") else
                      [o for o in overrides if "volume_net" not in o])
    sk = get_skeleton("contextpose17")
    prior = LimbPrior(torch.linspace(100, 450, sk.num_bones), torch.linspace(5, 30, sk.num_bones))
    torch.manual_seed(0)
    return cfg, build_model(cfg, prior).to(device)


def cameras(batch: int, views: int, size: int, device: torch.device) -> torch.Tensor:
    """(B, V, 3, 4) cameras on a circle 4.5 m around the origin, looking at it (z up)."""
    mats = []
    for k in range(views):
        a = 2 * np.pi * k / views
        centre = np.array([np.cos(a), np.sin(a), 0.2]) * 4500.0
        fwd = -centre / np.linalg.norm(centre)
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        rot = np.stack([right, np.cross(fwd, right), fwd])
        K = np.array([[1.2 * size, 0, size / 2], [0, 1.2 * size, size / 2], [0, 0, 1.0]])
        mats.append(K @ np.concatenate([rot, -(rot @ centre)[:, None]], axis=1))
    return torch.tensor(np.stack(mats), dtype=torch.float32, device=device).expand(batch, views, 3, 4).contiguous()


def runner(model_name: str, setting: str, batch: int, views: int, device: torch.device):
    """A closure running one forward (eval mode), or a training forward with the model's losses and backward."""
    cfg, model = make_model(model_name, setting, device)
    h, w = cfg.model.image_shape
    images = torch.randn(batch, views, 3, h, w, device=device)
    proj = cameras(batch, views, w, device)
    roots = torch.zeros(batch, 3, device=device)
    gt = torch.randn(batch, get_skeleton("contextpose17").num_joints, 3, device=device) * 300
    validity = torch.ones(batch, gt.shape[1], device=device)

    def run(backward: bool) -> None:
        model.train(backward)
        out = model(images, proj, roots, torch.zeros(batch, device=device))
        if backward:
            compute_losses(out, gt, validity, cfg.loss, cfg.model.volume_net)["total"].backward()
    return run


def memory_probe(args) -> None:
    device = torch.device(args.device)
    run = runner(args.model, args.settings, int(args.batches), int(args.views), device)
    backward = args.model != "ransac"
    ctx = nullcontext() if backward else torch.no_grad()
    with ctx:
        peak = peak_extra_bytes(lambda: run(backward), device)
    print(json.dumps({"peak_bytes": peak}))


def measure_memory(args, model: str, setting: str, batch: int, views: int) -> int:
    cmd = [sys.executable, __file__, "--probe", "--model", model, "--settings", setting, "--batches", str(batch),
           "--views", str(views), "--device", args.device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return int(json.loads(out)["peak_bytes"])


def triangulation_rows(batches: list[int], views: int, repeats: int, device: torch.device) -> list[dict]:
    rows = []
    j = get_skeleton("contextpose17").num_joints
    for batch in batches:
        proj = cameras(batch, views, 384, device)
        pts = project(proj, torch.randn(batch, j, 3, device=device) * 300) + torch.randn(batch, views, j, 2,
                                                                                         device=device)
        conf = torch.rand(batch, views, j, device=device)
        proj_np, pts_np, conf_np = proj.cpu().numpy(), pts.cpu().numpy(), conf.cpu().numpy()
        def torch_loop(p=proj, x=pts, c=conf) -> None:  # the original's structure: one small SVD per joint
            for i in range(p.shape[0]):
                for k in range(x.shape[2]):
                    triangulate_dlt(p[i], x[i, :, k:k + 1], c[i, :, k:k + 1])

        runs = {"batched": lambda p=proj, x=pts, c=conf: triangulate_dlt(p, x, c), "torch_loop": torch_loop,
                "loop": lambda p=proj_np, x=pts_np, c=conf_np: reference_dlt_batch(p, x, c)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for run in runs.values():
            run()
        for _ in range(repeats):
            for name, run in runs.items():
                sync(device)
                t0 = time.perf_counter()
                run()
                sync(device)
                times[name].append(time.perf_counter() - t0)
        row = {"part": "triangulation", "batch": batch, "views": views, "joints": j, "device": str(device),
               **{f"{k}_s": statistics.median(v) for k, v in times.items()}}
        row["speedup"] = row["torch_loop_s"] / row["batched_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="contextpose,volumetric,algebraic,ransac",
                        help="comma-separated model.architecture values, or 'none' (triangulation rows only)")
    parser.add_argument("--settings", default="tiny")
    parser.add_argument("--batches", default="2")  # the plain V2V at 32^3 ends at 1 voxel: batch norm needs B > 1
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--out", type=Path, default=Path("bench_multiview.json"))
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        memory_probe(args)
        return
    device = torch.device(args.device)
    models = [] if args.models == "none" else args.models.split(",")
    unknown = sorted(set(models) - set(CONFIGS))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; expected some of {', '.join(CONFIGS)}")
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for setting in args.settings.split(",") if models else []:
        for batch in batches:
            runs = {m: runner(m, setting, batch, args.views, device) for m in models}
            fwd = time_interleaved(runs, False, args.repeats, device)
            trainable = {m: r for m, r in runs.items() if m != "ransac"}
            fwd_bwd = time_interleaved(trainable, True, args.repeats, device) if trainable else {}
            del runs, trainable
            for m in models:
                row = {"part": "model", "model": m, "setting": setting, "batch": batch, "views": args.views,
                       "device": str(device), "forward_s": fwd[m], "forward_backward_s": fwd_bwd.get(m),
                       "peak_bytes": None if args.no_memory else measure_memory(args, m, setting, batch, args.views)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    rows += triangulation_rows(batches + [8] if 8 not in batches else batches, args.views, max(args.repeats, 5),
                               device)
    result = {"torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": args.repeats, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2))
    for r in rows:
        if r["part"] == "model":
            fb = f"{r['forward_backward_s'] * 1e3:8.1f} ms" if r["forward_backward_s"] else "   (no training)"
            mem = f"{r['peak_bytes'] / 2**20:7.0f} MiB" if r["peak_bytes"] is not None else ""
            print(f"{r['setting']:5s} {r['model']:11s} B={r['batch']} V={r['views']}: forward "
                  f"{r['forward_s'] * 1e3:8.1f} ms, forward+backward {fb}, peak {mem}")
        else:
            print(f"triangulation B={r['batch']} x {r['joints']} joints x V={r['views']}: batched "
                  f"{r['batched_s'] * 1e3:.2f} ms, per-joint torch loop {r['torch_loop_s'] * 1e3:.2f} ms "
                  f"({r['speedup']:.0f}x), per-joint numpy loop {r['loop_s'] * 1e3:.2f} ms")
    print(f"wrote {args.out}; {len(rows)} rows")


if __name__ == "__main__":
    main()
