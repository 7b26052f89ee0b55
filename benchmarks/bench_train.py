"""Throughput and peak memory of one training step of the engine (``Trainer.step``).

A step is exactly what ``ctxpose train`` does per batch: forward, the paper's losses, the all-rank
non-finite check, backward, (clipping,) the two Adam optimisers. Inputs are random crops with a valid
projection around a ground-truth pelvis (no data loading). Settings:

- ``tiny``: ResNet-18, 64 px crops, 16^3 volume (``configs/tiny_cpu.yaml``), batch 8;
- ``paper``: ResNet-152, 384 px crops, 64^3 volume (``configs/human36m_contextpose.yaml``), batch 4
  (``--paper-batch`` to change; the paper's per-GPU batch is 4).

Each setting runs in a fresh subprocess so that its peak memory is its own: RSS high-water mark on CPU
(``/proc/self/clear_refs`` reset before the first step), ``torch.cuda.max_memory_allocated`` on CUDA.
samples/s is the median over ``--steps`` timed steps after ``--warmup`` steps.

    python benchmarks/bench_train.py --out bench_train.json
    python benchmarks/bench_train.py --device cuda --amp bf16 --settings tiny paper
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS = {"tiny": ("configs/tiny_cpu.yaml", 8), "paper": ("configs/human36m_contextpose.yaml", 4)}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _batch(cfg, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    from ctxpose.skeleton import get_skeleton

    h, w = cfg.model.image_shape
    j = get_skeleton(cfg.model.skeleton).num_joints
    g = torch.Generator().manual_seed(0)
    focal = 1.2 * w
    proj = torch.tensor([[focal, 0, w / 2, 0], [0, focal, h / 2, 0], [0, 0, 1, 0]], dtype=torch.float32)
    proj[:, 3] = proj[:, :3] @ torch.tensor([0.0, 0.0, 4500.0])  # camera 4.5 m in front of the origin
    keypoints = torch.randn(batch_size, j, 3, generator=g) * 250.0
    return {
        "images": torch.randn(batch_size, 1, 3, h, w, generator=g).to(device),
        "proj_matrices": proj.expand(batch_size, 1, 3, 4).contiguous().to(device),
        "keypoints_3d": keypoints.to(device),
        "validity": torch.ones(batch_size, j, device=device),
        "root": keypoints[:, get_skeleton(cfg.model.skeleton).root].to(device),
        "rotation": torch.rand(batch_size, generator=g).to(device) * 6.283,
    }


class _OneBatch(torch.utils.data.Dataset):
    """Just enough dataset for the trainer's setup (the timed steps reuse one prepared batch)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        raise RuntimeError("the benchmark feeds prepared batches")


def measure(setting: str, batch_size: int, device_name: str, amp: str | None, steps: int, warmup: int) -> dict:
    """Run in a subprocess: time ``steps`` training steps and record peak memory."""
    import tempfile

    from ctxpose.config import load_config
    from ctxpose.engine.trainer import Trainer
    from ctxpose.models import build_model
    from ctxpose.skeleton import LimbPrior, get_skeleton

    device = torch.device(device_name)
    path, _ = SETTINGS[setting]
    cfg = load_config(ROOT / path, ["model.init_weights=false", "model.backbone.init_weights=false",
                                    "model.backbone.checkpoint=null", f"train.batch_size={batch_size}",
                                    "model.volume_net.use_gt_pelvis=true", "train.pred_results_path=null",
                                    "val.pred_results_path=null", "train.vis_freq=0"])
    n_bones = get_skeleton(cfg.model.skeleton).num_bones
    prior = LimbPrior(torch.full((n_bones,), 300.0), torch.full((n_bones,), 30.0))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, build_model(cfg.model, prior), _OneBatch(batch_size), None, run_dir, device, amp=amp)
        trainer.model.train()
        batch = _batch(cfg, batch_size, device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the RSS high-water mark
        rss_before = _rss_mb()
        times = []
        for i in range(warmup + steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            losses, _, _ = trainer.step(batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t)
        trainer.writer.close()
    step_s = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mb())
    return {"setting": setting, "batch_size": batch_size, "device": device_name, "amp": amp,
            "step_s": step_s, "samples_per_s": batch_size / step_s, "peak_memory_mb": peak,
            "rss_before_mb": rss_before if device.type == "cpu" else None,
            "loss": None if losses is None else losses["total"], "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["tiny", "paper"], choices=sorted(SETTINGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", choices=["bf16", "fp16"], default=None)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--paper-batch", type=int, default=None, help="batch of the paper setting (default 4)")
    parser.add_argument("--out", type=Path, default=Path("bench_train.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        setting, batch = args.child.split(":")
        print(json.dumps(measure(setting, int(batch), args.device, args.amp, args.steps, args.warmup)))
        return
    results = []
    for setting in args.settings:
        batch = SETTINGS[setting][1] if setting != "paper" or args.paper_batch is None else args.paper_batch
        cmd = [sys.executable, __file__, "--child", f"{setting}:{batch}", "--device", args.device,
               "--steps", str(args.steps), "--warmup", str(args.warmup)] + (["--amp", args.amp] if args.amp else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{setting}: failed\n{out.stderr[-2000:]}")
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"{setting:6s} batch {res['batch_size']:2d} {args.device}{' ' + args.amp if args.amp else ''}: "
              f"{res['samples_per_s']:.2f} samples/s ({res['step_s']:.2f} s/step), "
              f"peak memory {res['peak_memory_mb']:.0f} MB")
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
