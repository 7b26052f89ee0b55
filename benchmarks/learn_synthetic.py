"""Does the tiny setting learn? Val MPJPE before and after a fixed number of training steps on synthetic data.

Data: the ``ctxpose demo`` dataset (synthetic Human3.6M rendered through the real cameras: S1 for training,
S9 for validation, Walking and TakingPhoto, 64 px crops), made once under ``--data``. Model: the demo
setting (ResNet-18, 16^3 volume, ground-truth pelvis, Adam 1e-3 with the learning rates divided
(backbone by 10, volume net by 2) after 8 epochs of 60 steps, the paper's losses). The untrained
model is the training run's initial weights (same seed). Target: trained MPJPE below 40% of untrained.

    python benchmarks/learn_synthetic.py --steps 600 --out learn_synthetic.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctxpose.data.datasets import Human36MDataset  # noqa: E402
from ctxpose.engine.demo import demo_config, prepare_demo_data  # noqa: E402
from ctxpose.engine.evaluator import evaluate  # noqa: E402
from ctxpose.engine.trainer import initial_model, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps (batch 8)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/ctxpose-learn-synthetic"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--out", type=Path, default=Path("learn_synthetic.json"))
    args = parser.parse_args()

    t0 = time.perf_counter()
    processed = prepare_demo_data(args.data)
    cfg = demo_config(processed, ["train.n_epochs=1000", "train.vis_freq=0", *args.overrides])
    run = args.data / "run"
    shutil.rmtree(run, ignore_errors=True)
    model, val_set = initial_model(cfg), Human36MDataset.from_config(cfg, "val")
    before = evaluate(model, val_set, "cpu", batch_size=cfg.val.batch_size).metrics  # the run's initial weights
    t1 = time.perf_counter()
    train(cfg, model, Human36MDataset.from_config(cfg, "train"), None, run, "cpu", max_steps=args.steps)
    train_s = time.perf_counter() - t1
    after = evaluate(model, val_set, "cpu", batch_size=cfg.val.batch_size, out_dir=args.data / "eval").metrics
    ratio = after["mpjpe"] / before["mpjpe"]
    report = {
        "steps": args.steps, "batch_size": cfg.train.batch_size, "train_seconds": train_s,
        "total_seconds": time.perf_counter() - t0, "val_samples": int(after["n_samples"]),
        "before": {k: before[k] for k in ("mpjpe", "pa_mpjpe", "n_mpjpe", "mpjpe_relative")},
        "after": {k: after[k] for k in ("mpjpe", "pa_mpjpe", "n_mpjpe", "mpjpe_relative")},
        "ratio": ratio, "target_ratio": 0.4, "passed": ratio < 0.4, "overrides": args.overrides,
    }
    args.out.write_text(json.dumps(report, indent=2))
    print(f"val MPJPE {before['mpjpe']:.1f} mm -> {after['mpjpe']:.1f} mm after {args.steps} steps "
          f"({100 * ratio:.0f}% of untrained; target < 40%: {'met' if ratio < 0.4 else 'NOT met'}); "
          f"PA-MPJPE {before['pa_mpjpe']:.1f} -> {after['pa_mpjpe']:.1f} mm; training {train_s:.0f} s")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
