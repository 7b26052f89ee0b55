"""``ctxpose infer`` measured on data with known truth: synthetic Human3.6M videos (``ctxpose synthesize h36m``)
of a held-out subject, boxes from the synthetic masks written as a COCO results file and read back as any
detector's. Used by ``benchmarks/measure_infer.py`` and the last step of ``ctxpose demo``."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ctxpose.data.h36m.cameras import image_size, load_h36m_cameras
from ctxpose.data.h36m.raw import read_cdf_poses, read_mask_bboxes
from ctxpose.data.infer_inputs import Source, iter_frames, read_detections
from ctxpose.engine.infer import DEFAULT_PERSON_SIZE_MM, InferOptions, Intrinsics, PoseEstimator, estimate_poses
from ctxpose.skeleton import get_skeleton
from ctxpose.utils.io import atomic_write_text


def true_camera(subject: str, cam: str, hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Intrinsics (3, 3) of a synthetic video (the real camera resized to ``hw``) and its pitch down, degrees."""
    camera = load_h36m_cameras()[(subject, cam)].resized(image_size(subject, cam), hw)
    axis = camera.R.T @ np.array([0.0, 0.0, 1.0])  # optical axis in the (z up) world
    return camera.K, math.degrees(-math.asin(axis[2]))


def load_cases(raw: Path, subject: str, max_frames: int, coco_path: Path,
               max_videos: int | None = None) -> list[dict[str, Any]]:
    """Per video of ``subject`` (the first ``max_videos`` by name: one sequence's cameras come together): its first
    ``max_frames`` frames, true K and pitch, ground truth (F, 17, 3) in the camera frame, and boxes from the masks
    (written to ``coco_path`` as COCO results, then read back)."""
    skeleton = get_skeleton("contextpose17")
    entries, cases = [], []
    for video in sorted((raw / subject / "Videos").glob("*.mp4"))[:max_videos]:
        base, cam = video.stem.rsplit(".", 1)
        gt32 = read_cdf_poses(raw / subject / "MyPoseFeatures" / "D3_Positions_mono" / f"{base}.{cam}.cdf")
        n = min(len(gt32), max_frames)
        frames = [f for i, _, f in iter_frames(Source(video, "video")) if i < n]
        boxes = read_mask_bboxes(raw / subject / "MySegmentsMat" / "ground_truth_bb" / f"{base}.{cam}.mat",
                                 np.arange(n))
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            entries.append({"image_id": i, "file_name": video.name, "category_id": 1,
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)], "score": 1.0})
        K, pitch = true_camera(subject, cam, frames[0].shape[:2])
        cases.append({"name": video.name, "frames": frames, "K": K, "pitch": pitch, "source": Source(video, "video"),
                      "gt": np.stack([skeleton.from_h36m32(p) for p in gt32[:n]])})
    atomic_write_text(coco_path, json.dumps(entries))
    dets = read_detections(coco_path)
    for case in cases:
        case["boxes"] = [[d.box for d in dets.for_frame(case["source"], i, len(cases))]
                         for i in range(len(case["frames"]))]
    return cases


def measure(est: PoseEstimator, cases: list[dict[str, Any]], method: str, camera: str,
            pitch: str = "zero", person_size_mm: float | None = None) -> dict[str, Any]:
    """Errors of one setting over all cases (one person per frame).

    Args:
        method: a root method, or "given" for the ground-truth pelvis.
        camera: "true" (the video's K, no distortion) or "fov" (the default field of view).
        pitch: "zero" (the assumption) or "true" (the camera's real pitch).
        person_size_mm: the RootNet depth's person size (default :data:`DEFAULT_PERSON_SIZE_MM`).

    Returns:
        mpjpe_relative (mm, root-relative), pelvis_median / pelvis_p90 (absolute pelvis error, mm),
        mean_passes, frames, frames_per_s.
    """
    pelvis = est.skeleton.root
    rel_err, pel_err, passes, n, seconds = [], [], [], 0, 0.0
    for case in cases:
        hw = case["frames"][0].shape[:2]
        intr = Intrinsics(case["K"], np.zeros(5), "true") if camera == "true" else Intrinsics.choose(hw)
        options = InferOptions(root_method=method, pitch=case["pitch"] if pitch == "true" else 0.0,
                               person_size_mm=person_size_mm or DEFAULT_PERSON_SIZE_MM)
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
            "person_size_mm": person_size_mm or DEFAULT_PERSON_SIZE_MM,
            "mpjpe_relative": float(np.mean(rel_err)), "pelvis_median": float(np.median(pel_err)),
            "pelvis_p90": float(np.percentile(pel_err, 90)), "mean_passes": float(np.mean(passes)),
            "frames_per_s": n / seconds if seconds else 0.0}


def measure_all(est: PoseEstimator, cases: list[dict[str, Any]], methods: tuple[str, ...],
                report: Any = None) -> list[dict[str, Any]]:
    """:func:`measure` for every method with the true focal length and the default field of view (the
    ground-truth pelvis with the true focal only), ``report(row)`` after each."""
    rows = []
    for method in methods:
        for camera in (("true",) if method == "given" else ("true", "fov")):
            rows.append(measure(est, cases, method, camera))
            if report is not None:
                report(rows[-1])
    return rows
