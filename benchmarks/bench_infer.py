"""Times the stages of ``ctxpose infer`` (decode, detect, crop, network, write) on a synthetic video.

The network runs with random weights of the config's model (timing only); detection is reading a COCO results
file (the external-detector path). Results print as a table and are written as JSON.

    python benchmarks/bench_infer.py --config tiny_cpu --frames 16
    python benchmarks/bench_infer.py --config human36m_contextpose --frames 2 --device cuda
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ctxpose.config import load_config
from ctxpose.data.infer_inputs import Source, iter_frames, read_detections
from ctxpose.data.infer_outputs import InferTable, write_predictions
from ctxpose.engine.infer import InferOptions, Intrinsics, PoseEstimator
from ctxpose.models.build import build_model
from ctxpose.skeleton import LimbPrior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny_cpu")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=640, help="video width, px (height 3/4 of it)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--root", default="rootnet")
    parser.add_argument("--out", type=Path, default=Path("bench_infer.json"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = load_config(args.config)
    tmp = Path(tempfile.mkdtemp(prefix="bench_infer_"))
    w, h = args.size, args.size * 3 // 4
    video = tmp / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    rng = np.random.default_rng(0)
    for _ in range(args.frames):
        writer.write(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    writer.release()
    box = [w * 0.4, h * 0.1, w * 0.2, h * 0.8]
    (tmp / "boxes.json").write_text(json.dumps([{"image_id": i, "bbox": box, "score": 1.0}
                                                for i in range(args.frames)]))
    prior = LimbPrior(torch.full((16,), 300.0), torch.full((16,), 30.0))
    model = build_model(cfg, prior).to(args.device).eval()
    est = PoseEstimator(model, prior.mean.numpy(), prior.std.numpy(), cfg.model.image_shape, args.device)
    options = InferOptions(root_method=args.root)
    times = dict.fromkeys(("decode", "detect", "crop", "network", "write"), 0.0)

    t = time.perf_counter()
    frames = [f for _, _, f in iter_frames(Source(video, "video"))]
    times["decode"] = time.perf_counter() - t
    t = time.perf_counter()
    dets = read_detections(tmp / "boxes.json")
    boxes = [[d.box for d in dets.for_frame(Source(video, "video"), i, 1)] for i in range(len(frames))]
    times["detect"] = time.perf_counter() - t
    intr = Intrinsics.choose((h, w))
    table = InferTable(est.skeleton.num_joints)
    passes = 0
    for start in range(0, len(frames), options.batch_size):
        idx = range(start, min(start + options.batch_size, len(frames)))
        t = time.perf_counter()
        crops = [est.crop(frames[i], boxes[i][0], intr) for i in idx]
        times["crop"] += time.perf_counter() - t
        t = time.perf_counter()
        out = est.run_crops(np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops]),
                            np.stack([boxes[i][0] for i in idx]), intr, options)
        if args.device == "cuda":
            torch.cuda.synchronize()
        times["network"] += time.perf_counter() - t
        passes += sum(o["passes"] for o in out)
        for i, o in zip(idx, out, strict=True):
            table.add_frame(0, i, i / 25.0, [{"track_id": 0, "box": boxes[i][0], "score": 1.0, "root_method":
                                              args.root, "K": intr.K, "dist": intr.dist,
                                              "world_to_camera": np.eye(3), **o}])
    t = time.perf_counter()
    write_predictions(tmp, table, {"sources": [str(video)]})
    times["write"] = time.perf_counter() - t
    total = sum(times.values())
    result = {"config": args.config, "device": args.device, "frames": len(frames), "video_hw": [h, w],
              "root": args.root, "mean_passes": passes / len(frames),
              "seconds": times, "frames_per_s": len(frames) / total,
              "network_ms_per_pass": 1000 * times["network"] / passes, "torch_threads": torch.get_num_threads()}
    from rich.console import Console
    from rich.table import Table

    tab = Table(title=f"infer stages: {args.config} on {args.device}, {len(frames)} frames {w}x{h}")
    tab.add_column("stage")
    tab.add_column("ms/frame", justify="right")
    for k, v in times.items():
        tab.add_row(k, f"{1000 * v / len(frames):.1f}")
    tab.add_row("total", f"{1000 * total / len(frames):.1f} ({len(frames) / total:.2f} frames/s)", style="bold")
    Console().print(tab)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
