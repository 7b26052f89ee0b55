"""Training-sample loading speed: our cached crops vs the original layout's full frames.

Writes synthetic data to a temporary folder with OpenCV (textured 1000x1002 JPEG frames in the original
repository's processed layout with a labels ``.npy``; 384x384 JPEG crops + ``labels.npz`` in ours), then
times ``Human36MDataset.__getitem__`` on both: ours reads the cached crop and normalises it; the original
layout reads the full frame, crops the (scaled) box and resizes it to 384x384, as the original loader does.

    python benchmarks/bench_loader.py --samples 200 --out bench_loader.json
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

from ctxpose.data.datasets import Human36MDataset
from ctxpose.data.loaders import make_eval_loader, make_train_loader, set_loader_epoch
from ctxpose.skeleton import get_skeleton
from ctxpose.utils.io import atomic_write_text

FRAME_HW = (1002, 1000)
CROP = 384
CAMERAS = ["54138969", "55011271", "58860488", "60457274"]
# the training dataset over what write_data writes (S1, one view a sample)
DATASET = {"split": "train", "image_shape": (CROP, CROP), "max_n_views": 1, "subjects": ("S1",)}


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A natural-looking image (smooth colour field, edges, noise) so JPEG sizes are realistic."""
    low = cv2.resize(rng.integers(0, 255, (h // 40, w // 40, 3), dtype=np.uint8), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    for _ in range(30):
        c = tuple(int(v) for v in rng.integers(0, 255, 3))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.rectangle(low, p1, p2, c, int(rng.integers(-1, 6)))
    noise = rng.normal(scale=6.0, size=low.shape)
    return np.clip(low + noise, 0, 255).astype(np.uint8)


def write_data(base: Path, n_frames: int, seed: int = 0) -> tuple[Path, Path, Path]:
    """Both layouts with ``n_frames`` frames x 4 cameras of subject S1; returns (ours, original, labels)."""
    rng = np.random.default_rng(seed)
    sk = get_skeleton("contextpose17")
    ours, orig, extra = base / "ours", base / "original" / "processed", base / "original" / "extra"
    extra.mkdir(parents=True)
    K = np.array([[1145.0, 0, 500.0], [0, 1144.0, 501.0], [0, 0, 1.0]])
    cols: dict[str, list] = {k: [] for k in ("subject", "action", "trial", "camera", "camera_index", "frame",
                                             "keypoints_3d", "bbox", "K", "R", "t", "dist", "image")}
    table = np.zeros(n_frames, dtype=[("subject_idx", np.int8), ("action_idx", np.int8), ("frame_idx", np.int16),
                                      ("keypoints", np.float32, (sk.num_joints, 3)),
                                      ("bbox_by_camera_tlbr", np.int16, (4, 4))])
    for f in range(n_frames):
        kp = rng.normal(scale=200.0, size=(sk.num_joints, 3))
        table[f]["frame_idx"], table[f]["keypoints"] = f, kp
        for c, cam in enumerate(CAMERAS):
            side = int(rng.integers(420, 560))
            top, left = int(rng.integers(0, FRAME_HW[0] - side)), int(rng.integers(0, FRAME_HW[1] - side))
            table[f]["bbox_by_camera_tlbr"][c] = (top, left, top + side, left + side)
            frame = _texture(rng, *FRAME_HW)
            path = orig / "S1" / "Directions-1" / "imageSequence-undistorted" / cam / f"img_{f + 1:06d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), frame)
            crop = cv2.resize(frame[top : top + side, left : left + side], (CROP, CROP), interpolation=cv2.INTER_AREA)
            rel = f"images/S1/Directions-1/{cam}/{f:06d}.jpg"
            (ours / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(ours / rel), crop)
            row = {"subject": "S1", "action": "Directions", "trial": 1, "camera": cam, "camera_index": c,
                   "frame": f, "keypoints_3d": kp, "bbox": (left, top, left + side, top + side), "K": K,
                   "R": np.eye(3), "t": np.array([0.0, 0.0, 5000.0]), "dist": np.zeros(5), "image": rel}
            for k, v in row.items():
                cols[k].append(v)
    dtypes = {"subject": "<U8", "action": "<U32", "trial": np.int8, "camera": "<U8", "camera_index": np.int8,
              "frame": np.int32, "keypoints_3d": np.float64, "bbox": np.float32}
    arrays = {k: np.array(v, dtype=dtypes.get(k)) for k, v in cols.items()}
    meta = json.dumps({"format": "ctxpose-labels", "version": 1, "image_size": CROP})
    np.savez(ours / "labels.npz", **arrays, meta=np.array(meta))
    cams = np.zeros((7, 4), dtype=[("R", np.float32, (3, 3)), ("t", np.float32, (3, 1)), ("K", np.float32, (3, 3)),
                                   ("dist", np.float32, 5)])
    cams["R"], cams["K"], cams["t"][..., 2, 0] = np.eye(3), K, 5000.0
    labels = {"subject_names": ["S1", "S5", "S6", "S7", "S8", "S9", "S11"], "camera_names": CAMERAS,
              "action_names": ["Directions-1", "Directions-2"], "cameras": cams, "table": table}
    np.save(extra / "human36m-multiview-labels-GTbboxes.npy", labels)
    return ours, orig, extra / "human36m-multiview-labels-GTbboxes.npy"


def time_dataset(ds: Human36MDataset, n: int, workers: int) -> float:
    """Samples per second over ``n`` samples (after one warm-up sample)."""
    ds[0]
    if workers == 0:
        start = time.perf_counter()
        for i in range(n):
            ds[i % len(ds)]
        return n / (time.perf_counter() - start)
    loader = make_eval_loader(ds, 4, num_workers=workers)
    next(iter(loader))  # start the workers
    start, count = time.perf_counter(), 0
    while count < n:
        for batch in loader:
            count += len(batch["index"])
            if count >= n:
                break
    return count / (time.perf_counter() - start)


def time_train_loader(ds: Human36MDataset, n: int, workers: int, batch_size: int, device: torch.device) -> float:
    """Samples per second of the training loader as the engine reads it (pinned memory on a GPU, each batch copied
    to ``device``) over whole epochs of at least ``n`` samples, the workers' start-up included."""
    loader = make_train_loader(ds, batch_size, num_workers=workers, seed=0, pin_memory=device.type == "cuda")
    count, epoch, start = 0, 0, time.perf_counter()
    while count < n:
        set_loader_epoch(loader, epoch)
        for batch in loader:
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            count += len(batch["index"])
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="distinct frames (x 4 cameras) to write")
    parser.add_argument("--samples", type=int, default=200, help="samples to time per layout")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: __getitem__ loop)")
    parser.add_argument("--out", type=Path, default=Path("bench_loader.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours, orig, labels = write_data(Path(tmp), args.frames)
        cached = time_dataset(Human36MDataset(ours, **DATASET), args.samples, args.workers)
        original = time_dataset(Human36MDataset(orig, labels_path=labels, scale_bbox=1.0, **DATASET), args.samples,
                                args.workers)
    result = {"cached_crops_samples_per_s": round(cached, 1), "original_full_frames_samples_per_s": round(original, 1),
              "speedup": round(cached / original, 2), "samples": args.samples, "workers": args.workers,
              "frame_hw": list(FRAME_HW), "crop": CROP, "target_speedup": 4.0}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
