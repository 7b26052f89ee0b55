"""``ctxpose infer`` on data with known truth: the synthetic Human3.6M videos of a subject the model never saw.

Boxes come from the synthetic masks, written as a COCO results file and read back the way any external
detector's are. For every root method it reports the root-relative MPJPE and the absolute pelvis error
(median, 90th percentile), with the true focal length and with the default field of view, next to the
ground-truth pelvis (what ``eval`` gives). Results print as a table and are written as JSON.

    python benchmarks/measure_infer.py --demo ctxpose-demo --out infer_measure.json

``--demo`` is a ``ctxpose demo`` folder (its raw S9 videos are the held-out subject and its run the model).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import cv2
import numpy as np

from ctxpose.config import load_config
from ctxpose.data.h36m.cameras import image_size, load_h36m_cameras
from ctxpose.data.h36m.raw import read_cdf_poses, read_mask_bboxes
from ctxpose.data.infer_inputs import Source, iter_frames, read_detections
from ctxpose.engine.infer import InferOptions, Intrinsics, PoseEstimator, estimate_poses
from ctxpose.geometry.monocular import DEFAULT_FOV_DEG
from ctxpose.skeleton import get_skeleton


def scaled_K(subject: str, cam: str, hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """True intrinsics of the synthetic video (the real camera resized to the video) and its pitch, deg."""
    camera = load_h36m_cameras()[(subject, cam)]
    camera = camera.resized(image_size(subject, cam), hw)
    axis = camera.R.T @ np.array([0.0, 0.0, 1.0])  # optical axis in the (z up) world
    return camera.K, math.degrees(-math.asin(axis[2]))


def load_cases(raw: Path, subject: str, max_frames: int, coco_path: Path) -> list[dict]:
    """Per video of ``subject``: frames, true K and pitch, boxes (through a COCO results file), truth (17, 3)."""
    skeleton = get_skeleton()
    videos = sorted((raw / subject / "Videos").glob("*.mp4"))
    entries, cases = [], []
    for video in videos:
        base, cam = video.stem.rsplit(".", 1)
        gt32 = read_cdf_poses(raw / subject / "MyPoseFeatures" / "D3_Positions_mono" / f"{base}.{cam}.cdf")
        n = min(len(gt32), max_frames)
        frames = [f for i, _, f in iter_frames(Source(video, "video")) if i < n]
        boxes = read_mask_bboxes(raw / subject / "MySegmentsMat" / "ground_truth_bb" / f"{base}.{cam}.mat",
                                 np.arange(n))
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            entries.append({"image_id": i, "file_name": video.name, "category_id": 1,
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": 1.0})
        K, pitch = scaled_K(subject, cam, frames[0].shape[:2])
        cases.append({"name": video.name, "frames": frames, "K": K, "pitch": pitch,
                      "gt": np.stack([skeleton.from_h36m32(p) for p in gt32[:n]]), "source": Source(video, "video")})
    coco_path.write_text(json.dumps(entries))
    dets = read_detections(coco_path)
    for case in cases:
        case["boxes"] = [[d.box for d in dets.for_frame(case["source"], i, len(cases))]
                         for i in range(len(case["frames"]))]
    return cases


def run(est: PoseEstimator, cases: list[dict], method: str, camera: str, pitch: str = "zero") -> dict:
    """Errors of one setting over all cases: camera "true" (K) or "fov" (default); pitch "zero" or "true"."""
    pelvis = est.skeleton.root
    rel_err, pel_err, passes, n, seconds = [], [], [], 0, 0.0
    for case in cases:
        hw = case["frames"][0].shape[:2]
        intr = Intrinsics(case["K"], np.zeros(5), "true") if camera == "true" else Intrinsics.choose(hw)
        options = InferOptions(root_method=method, pitch=case["pitch"] if pitch == "true" else 0.0)
        roots = [[g[pelvis]] for g in case["gt"]] if method == "given" else None
        start = time.perf_counter()
        out = estimate_poses(est, case["frames"], case["boxes"], intr, options, given_roots=roots)
        seconds += time.perf_counter() - start
        n += len(case["frames"])
        for people, gt in zip(out, case["gt"], strict=True):
            p = people[0]
            rel_err.append(np.linalg.norm(p.keypoints_3d_relative - (gt - gt[pelvis]), axis=-1).mean())
            pel_err.append(np.linalg.norm(p.keypoints_3d[pelvis] - gt[pelvis]))
            passes.append(p.passes)
    return {"method": method, "camera": camera, "pitch": pitch, "frames": n,
            "mpjpe_relative": float(np.mean(rel_err)), "pelvis_median": float(np.median(pel_err)),
            "pelvis_p90": float(np.percentile(pel_err, 90)), "mean_passes": float(np.mean(passes)),
            "frames_per_s": n / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("ctxpose-demo"))
    parser.add_argument("--subject", default="S9")
    parser.add_argument("--frames", type=int, default=30, help="frames per video")
    parser.add_argument("--out", type=Path, default=Path("infer_measure.json"))
    parser.add_argument("--methods", default="given,box,rootnet,bones,network")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides")
    args = parser.parse_args()
    cfg = load_config(args.demo / "run" / "config.yaml", args.set)
    est = PoseEstimator.from_config(cfg, args.demo / "run" / "checkpoints" / "last.pt", "cpu")
    cases = load_cases(args.demo / "raw", args.subject, args.frames, args.out.with_suffix(".coco.json"))
    rows = []
    for method in args.methods.split(","):
        for camera in ("true", "fov"):
            rows.append(run(est, cases, method, camera))
            print(json.dumps(rows[-1]), flush=True)
    rows.append(run(est, cases, "given", "true", pitch="true"))
    print(json.dumps(rows[-1]), flush=True)
    result = {"subject": args.subject, "videos": [c["name"] for c in cases], "default_fov_deg": DEFAULT_FOV_DEG,
              "true_pitch_deg": {c["name"]: c["pitch"] for c in cases}, "rows": rows}
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}; video size {cases[0]['frames'][0].shape[:2]}, {cv2.__version__}")


if __name__ == "__main__":
    main()
