"""One Human3.6M sequence, all its cameras: raw files -> undistorted square crops + a label shard.

A :class:`SequenceJob` is a job of the shared runner (:mod:`ctxpose.data.preprocessing`), cropped in this
process or in one of its worker processes. Each crop is made by ONE ``cv2.remap`` from the distorted
video frame (:func:`ctxpose.data.transforms.undistorted_crop`: undistortion, crop and resize folded into one
map), so the crop is the image of the pinhole camera ``crop_camera(camera, bbox, (S, S))`` whose intrinsics
are stored with it.

Failures: a bad pose file fails the sequence; a bad video or mask fails that (sequence, camera) only, and the
other cameras are kept. Both are one line naming the file (:class:`DataError`, OpenCV's ``cv2.error``).
An output that cannot be written raises :class:`ctxpose.errors.OutputError` (the run stops); anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.raw import (
    iter_video_frames,
    read_cdf_poses,
    read_mask_bboxes,
    sphere_bboxes,
    sphere_points,
    square_bbox,
)
from ctxpose.data.labels import Labels, labels_meta, load_labels
from ctxpose.data.preprocessing import SequenceResult, opencv_error, output_errors, write_output
from ctxpose.data.transforms import scale_bbox, undistorted_crop
from ctxpose.errors import DataError
from ctxpose.geometry.cameras import Camera
from ctxpose.skeleton import Skeleton

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SequenceJob:
    """Everything a worker needs for one sequence (picklable).

    Attributes:
        seq: the sequence.
        cameras: camera id -> full-frame camera (nominal video size).
        nominal_hw: camera id -> (H, W) of the real videos.
        files: kind ("D3_Positions", "Videos:<cam>", "ground_truth_bb:<cam>") -> path or None if absent.
        frames: (F,) selected 0-based pose frames (may exceed the poses; clipped to them).
        out_dir: processed folder root.
        part_path: where the label shard goes.
        image_size: crop side S, px.
        jpeg_quality: 0..100.
        bbox_source: "masks", "poses" or "auto" (masks if the file exists, else poses).
        bbox_scale: scale of the squared box about its centre (ContextPose: 1.0).
        skeleton: joint order of ``keypoints_3d`` (32 -> J selection).
        keep_part: shard of an earlier run whose rows of the cameras not in ``cameras`` are kept (a re-run
            that redoes only the cameras that failed or were not asked for before); None: a fresh sequence.
    """

    seq: metadata.Sequence
    cameras: dict[str, Camera]
    nominal_hw: dict[str, tuple[int, int]]
    files: dict[str, Path | None]
    frames: tuple[int, ...]
    out_dir: Path
    part_path: Path
    image_size: int
    jpeg_quality: int
    bbox_source: str
    bbox_scale: float
    skeleton: Skeleton
    keep_part: Path | None = None

    @property
    def key(self) -> str:
        return self.seq.key

    @property
    def planned_crops(self) -> int:
        """Selected frames x cameras whose video is there (frames past the poses are dropped when cropping)."""
        return len(self.frames) * sum(self.files.get(f"Videos:{c}") is not None for c in self.cameras)

    def crop(self, progress: Callable[[int], None]) -> tuple[Labels | None, SequenceResult]:
        return crop_sequence(self, progress)

    def save(self, shard: Labels, result: SequenceResult) -> None:
        save_shard(self, shard, result)


def image_relpath(subject: str, sequence: str, camera: str, frame: int) -> str:
    """Path of a crop relative to the processed folder: ``images/S1/Directions-1/54138969/000005.jpg``."""
    return f"images/{subject}/{sequence}/{camera}/{frame:06d}.jpg"


def _video_hw(path: Path) -> tuple[int, int]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"{path}: OpenCV cannot open this video (corrupt or unsupported)")
        h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    finally:
        cap.release()
    if h <= 0 or w <= 0:
        raise DataError(f"{path}: video reports size {w}x{h}; corrupt file?")
    return h, w


def _boxes(job: SequenceJob, cam: str, camera: Camera, hw: tuple[int, int], poses32: np.ndarray,
           frames: np.ndarray) -> tuple[np.ndarray, str]:
    """(F, 4) square boxes (left, top, right, bottom) in the distorted frame, and which source made them."""
    mask_path = job.files.get(f"ground_truth_bb:{cam}")
    use_masks = job.bbox_source == "masks" or (job.bbox_source == "auto" and mask_path is not None)
    if use_masks:
        if mask_path is None:
            rel = metadata.raw_relpath("ground_truth_bb", job.seq.subject, job.seq.base_name, cam)
            raise DataError(f"mask file {rel} not found (--bbox-source masks); use --bbox-source auto or poses")
        raw = read_mask_bboxes(mask_path, frames)
        source = "masks"
    else:
        raw = sphere_bboxes(camera.project(sphere_points(poses32[frames])), hw)
        source = "poses"
    squares = np.array([square_bbox(tuple(b)) for b in raw], dtype=np.int64).reshape(-1, 4)
    boxes = scale_bbox(squares, job.bbox_scale).astype(np.float64)
    return boxes.reshape(-1, 4), source


def _process_camera(job: SequenceJob, cam: str, poses32: np.ndarray, frames: np.ndarray,
                    progress: Any) -> tuple[dict[str, np.ndarray], int, str]:
    video = job.files.get(f"Videos:{cam}")
    rel_video = metadata.raw_relpath("Videos", job.seq.subject, job.seq.base_name, cam)
    if video is None:
        raise DataError(f"video {rel_video} not found")
    hw = _video_hw(video)
    camera = job.cameras[cam]
    if hw != job.nominal_hw[cam]:  # e.g. shrunk synthetic videos: scale the intrinsics to the real frames
        camera = camera.resized(job.nominal_hw[cam], hw)
    boxes, source = _boxes(job, cam, camera, hw, poses32, frames)
    size = job.image_size
    out_hw = (size, size)
    Ks, paths, nbytes = [], [], 0
    params = [cv2.IMWRITE_JPEG_QUALITY, int(job.jpeg_quality)]
    for i, (frame_index, image) in enumerate(iter_video_frames(video, frames)):
        crop, crop_cam = undistorted_crop(image, camera, boxes[i], out_hw)
        ok, buf = cv2.imencode(".jpg", crop, params)
        if not ok:
            raise DataError(f"cannot JPEG-encode a crop of {video} frame {frame_index}")
        rel = image_relpath(job.seq.subject, job.seq.name, cam, int(frame_index))
        write_output(job.out_dir / rel, buf.tobytes())
        nbytes += len(buf)
        Ks.append(crop_cam.K)
        paths.append(rel)
        progress(1)
    n = len(frames)
    cols = {
        "camera": np.full(n, cam), "camera_index": np.full(n, metadata.camera_ids().index(cam)),
        "frame": frames.astype(np.int32), "bbox": boxes.astype(np.float32), "K": np.stack(Ks),
        "R": np.repeat(camera.R[None], n, axis=0), "t": np.repeat(camera.t[None], n, axis=0),
        "dist": np.zeros((n, 5)), "image": np.array(paths),
    }
    return cols, nbytes, source


def _cv2_error(job: SequenceJob, cam: str, error: cv2.error) -> str:
    rel = metadata.raw_relpath("Videos", job.seq.subject, job.seq.base_name, cam)
    return opencv_error(job.files.get(f"Videos:{cam}") or rel, error)


def crop_sequence(job: SequenceJob, progress: Any = None) -> tuple[Labels | None, SequenceResult]:
    """Write the crops of one sequence and build its label shard (not yet saved).

    Args:
        job: the work.
        progress: optional callable(n_crops_done_increment).

    Returns:
        (shard, result): the shard holds the rows of every camera that succeeded (plus kept rows of
        ``job.keep_part``), sorted by camera index; None when no camera is left (``result.error`` or
        ``result.camera_errors`` say why).

    Raises:
        OutputError: a crop cannot be written.
    """
    progress = progress or (lambda n: None)
    seq = job.seq
    result = SequenceResult(key=seq.key)
    d3 = job.files.get("D3_Positions")
    try:
        if d3 is None:
            raise DataError(f"pose file {metadata.raw_relpath('D3_Positions', seq.subject, seq.base_name)} not found")
        poses32 = read_cdf_poses(d3)
        frames = np.array([f for f in job.frames if f < len(poses32)], dtype=np.int64)
        if len(frames) == 0:
            raise DataError(f"{d3}: {len(poses32)} pose frames, none selected")
    except DataError as e:
        result.error = str(e)
        return None, result
    keypoints = job.skeleton.from_h36m32(poses32[frames]).astype(np.float64)
    n = len(frames)
    shards = []
    for cam in job.cameras:
        try:
            cols, nbytes, source = _process_camera(job, cam, poses32, frames, progress)
        except DataError as e:
            result.camera_errors[cam] = str(e)
            continue
        except cv2.error as e:
            result.camera_errors[cam] = _cv2_error(job, cam, e)
            continue
        result.frames_written += n
        result.bytes_written += nbytes
        result.bbox_sources[cam] = source
        shards.append(Labels(subject=np.full(n, seq.subject), action=np.full(n, seq.action),
                             trial=np.full(n, seq.trial), keypoints_3d=keypoints, **cols,
                             meta=labels_meta(part=seq.key)))
    if job.keep_part is not None:
        kept = load_labels(job.keep_part)
        kept = kept.select(~np.isin(kept.camera, list(job.cameras)))
        if len(kept):
            shards.append(kept)
    if not shards:
        return None, result
    shard = Labels.concatenate(shards, labels_meta(part=seq.key))
    shard = shard.select(np.argsort(shard.camera_index, kind="stable"))
    result.cameras = [c for c in metadata.camera_ids() if c in set(shard.camera.tolist())]
    result.rows = len(shard)
    return shard, result


def save_shard(job: SequenceJob, shard: Labels, result: SequenceResult) -> None:
    """Write the shard to ``job.part_path`` (atomically) and count its bytes.

    Raises:
        OutputError: the shard cannot be written.
    """
    with output_errors(job.part_path):
        shard.save(job.part_path)
        result.bytes_written += os.path.getsize(job.part_path)
