"""Preprocessing speed and disk use: ``preprocess_h36m`` on synthetic full-resolution Human3.6M.

Synthesizes one sequence at the real 1000x1002 / 1000x1000 sizes (4 cameras), then runs the pipeline
keeping every frame (so frames/s measures decoding + one remap + JPEG per crop). Bytes per kept frame are
compared with what the original preprocessing stores for the same frame: the full frame as JPEG (its
``imageSequence``, ffmpeg ``-qscale:v 3``; here OpenCV JPEG at the same quality as our crops, which is
conservative) - and the original then writes a second full frame (``imageSequence-undistorted``).

    python benchmarks/bench_preprocess.py --frames 60 --workers 1 --out bench_preprocess.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.preprocess import PreprocessOptions, preprocess_h36m
from ctxpose.data.h36m.raw import iter_video_frames
from ctxpose.data.h36m.synthesize import synthesize_h36m
from ctxpose.utils.io import atomic_write_text


def _full_frame_jpeg_bytes(raw: Path, frames: int, quality: int) -> float:
    """Mean JPEG size of the full video frames (what the original keeps per frame and camera)."""
    sizes = []
    seq = metadata.sequence("S1", "Walking-1")
    for cam in metadata.camera_ids():
        video = raw / metadata.raw_relpath("Videos", "S1", seq.base_name, cam)
        for _, image in iter_video_frames(video, np.arange(frames)):
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            sizes.append(len(buf))
    return float(np.mean(sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="pose frames in the synthetic sequence")
    parser.add_argument("--image-size", type=int, default=384)
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench_preprocess.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "processed"
        t0 = time.perf_counter()
        synthesize_h36m(raw, subjects=["S1"], actions=["Walking-1"], n_frames=args.frames, size=None)
        synth_s = time.perf_counter() - t0
        opts = PreprocessOptions(image_size=args.image_size, jpeg_quality=args.jpeg_quality, train_every=1,
                                 workers=args.workers)
        t0 = time.perf_counter()
        report = preprocess_h36m(raw, out, opts)
        wall = time.perf_counter() - t0
        if not report.ok:
            raise SystemExit(f"preprocessing failed: {report.failed}")
        jpeg_bytes = sum(p.stat().st_size for p in (out / "images").rglob("*.jpg"))
        total_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        kept = report.frames_written
        full = _full_frame_jpeg_bytes(raw, args.frames, args.jpeg_quality)

    result = {
        "frames_kept": kept, "frame_hw": [1002, 1000], "crop": args.image_size, "jpeg_quality": args.jpeg_quality,
        "workers": args.workers, "seconds": wall, "frames_per_second": kept / wall,
        "bytes_per_kept_frame_images": jpeg_bytes / kept, "bytes_per_kept_frame_all_outputs": total_bytes / kept,
        "full_frame_jpeg_bytes": full, "ratio_vs_one_full_jpeg": full / (total_bytes / kept),
        "ratio_vs_original_two_full_jpegs": 2 * full / (total_bytes / kept), "synthesis_seconds": synth_s,
    }
    print(f"preprocess: {kept} crops in {wall:.1f} s = {result['frames_per_second']:.1f} frames/s "
          f"({args.workers} worker(s))")
    print(f"bytes per kept frame: {result['bytes_per_kept_frame_all_outputs']:.0f} (all outputs) vs "
          f"{full:.0f} for one full JPEG frame -> {result['ratio_vs_one_full_jpeg']:.1f}x fewer "
          f"({result['ratio_vs_original_two_full_jpegs']:.1f}x vs the original's two full frames); target >= 5x")
    atomic_write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
