"""``ctxpose preprocess 3dhp``: the MPI-INF-3DHP test set -> square undistorted crops + labels, resumable.

Output (the processed folder)::

    images/TS1/img_000124.jpg        crop of TS1/imageSequence/img_000124.jpg (annotation frame 123)
    labels.npz                       one row per kept frame, schema in ``ctxpose.data.mpi_inf_3dhp.labels``
    manifest.json                    settings + finished sequences (a re-run skips them)
    parts/TS1.npz                    label shard of each finished sequence

The box of a frame is the square around its 17 ``annot2`` joints, grown by ``margin`` (a fraction of the
larger side) on every side. Each crop is ONE ``cv2.remap`` from the full frame (undistortion, crop and
resize in one map, :func:`ctxpose.data.transforms.undistorted_crop`), so it is the image of the
pinhole crop camera whose intrinsics are stored with it; TS5-6 crops are thereby undistorted. Every
sequence's ``annot3`` is projected through its camera and compared with ``annot2``: the residual (px, over
valid frames and joints) is reported and stored in the labels' meta.

Resuming, atomic files, the progress events and per-sequence failures are those of ``preprocess h36m``
(its manifest and job runner are shared): a missing or corrupt annotation file or image fails that
sequence with one line naming the file, the others go on.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ctxpose._version import __version__
from ctxpose.data.h36m.preprocess import PreprocessReport, _collect, _read_manifest, _run_jobs
from ctxpose.data.h36m.process_sequence import SequenceResult
from ctxpose.data.mpi_inf_3dhp import labels as L
from ctxpose.data.mpi_inf_3dhp import metadata
from ctxpose.data.mpi_inf_3dhp.annotations import read_annotations
from ctxpose.data.mpi_inf_3dhp.cameras import camera_name, load_3dhp_camera, projection_residuals
from ctxpose.data.transforms import undistorted_crop
from ctxpose.errors import DataError
from ctxpose.skeleton import H36M_CONTEXTPOSE, MPI_INF_3DHP, MPI_INF_3DHP_TO_CONTEXTPOSE_INDEX
from ctxpose.utils.io import atomic_write_bytes, atomic_write_text

MANIFEST_FORMAT = "ctxpose-3dhp-manifest"
_SETTINGS_KEYS = ("image_size", "jpeg_quality", "margin", "all_frames")


@dataclass(frozen=True)
class Preprocess3DHPOptions:
    """Settings of a 3DHP preprocessing run.

    Attributes:
        image_size: crop side, px.
        jpeg_quality: 0..100.
        margin: added on each side of the annot2 box, as a fraction of its larger side.
        all_frames: also crop the frames that are not valid (``valid`` False in the labels); frames whose
            annotations are not finite or whose activity is not 1..7 are skipped either way.
        sequences: "TS1".."TS6" to process (None = all present).
        workers: parallel processes over sequences.
        dry_run: only list what would be done.
    """

    image_size: int = 384
    jpeg_quality: int = 95
    margin: float = 0.15
    all_frames: bool = False
    sequences: tuple[str, ...] | None = None
    workers: int = 1
    dry_run: bool = False

    def settings(self) -> dict:
        """The settings that must not change between runs into the same folder."""
        return {k: getattr(self, k) for k in _SETTINGS_KEYS}


@dataclass(frozen=True)
class Sequence3DHPJob:
    """One sequence's work (picklable): paths, the kept frames and the settings."""

    sequence: str
    test_set: Path
    out_dir: Path
    image_size: int
    jpeg_quality: int
    margin: float
    all_frames: bool

    @property
    def part_path(self) -> Path:
        return self.out_dir / "parts" / f"{self.sequence}.npz"


@dataclass
class Sequence3DHPResult(SequenceResult):
    """:class:`SequenceResult` plus the valid-frame count, the camera and the projection residual (px)."""

    valid_frames: int = 0
    camera: dict[str, Any] = field(default_factory=dict)
    residual_px: dict[str, float] = field(default_factory=dict)


def check_options(opts: Preprocess3DHPOptions) -> None:
    """Raise :class:`DataError` (one line naming the option) for invalid settings."""
    if opts.image_size < 8 or not 0 <= opts.jpeg_quality <= 100:
        raise DataError(f"--image-size {opts.image_size} / --jpeg-quality {opts.jpeg_quality}: expected >= 8 / 0..100")
    if not 0 <= opts.margin <= 2:
        raise DataError(f"--margin {opts.margin}: expected a fraction of the box side in 0..2")
    bad = [s for s in opts.sequences or () if s not in metadata.SEQUENCES]
    if bad:
        raise DataError(f"--sequences: unknown {bad}; expected some of {list(metadata.SEQUENCES)}")


def square_boxes(points_px: np.ndarray, margin: float) -> np.ndarray:
    """Square boxes around 2D joints, grown by ``margin`` x the larger side on each side.

    Args:
        points_px: (F, J, 2) pixels.
        margin: fraction of the larger side of the joints' box added on every side.

    Returns:
        (F, 4) float64 (left, top, right, bottom), right - left == bottom - top.
    """
    lo, hi = points_px.min(axis=1), points_px.max(axis=1)
    centre = (lo + hi) / 2
    half = (hi - lo).max(axis=1, keepdims=True) * (0.5 + margin)
    half = np.maximum(half, 1.0)
    return np.concatenate([centre - half, centre + half], axis=1)


def _read_image(path: Path, hw: tuple[int, int] | None) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"image {path} is missing or not a readable image")
    if hw is not None and image.shape[:2] != hw:
        raise DataError(f"image {path} is {image.shape[1]}x{image.shape[0]} px, the sequence's first image "
                        f"{hw[1]}x{hw[0]}")
    return image


def _kept_frames(ann, all_frames: bool) -> np.ndarray:
    """Valid frames (or all with ``all_frames``) with finite annotations and an activity label 1..7."""
    usable = np.all(np.isfinite(ann.annot2), axis=(1, 2)) & np.all(np.isfinite(ann.annot3), axis=(1, 2)) & \
        np.all(np.isfinite(ann.univ_annot3), axis=(1, 2)) & (ann.activity >= 1) & (ann.activity <= 7)
    return np.flatnonzero(usable & (ann.valid | all_frames))


def process_3dhp_sequence(job: Sequence3DHPJob, progress: Callable[[int], None] | None = None) -> Sequence3DHPResult:
    """Crop and label one sequence; failures become ``result.error`` (one line naming the file).

    Returns:
        The result; on success the label shard is at ``job.part_path`` (written atomically).
    """
    progress = progress or (lambda n: None)
    result = Sequence3DHPResult(key=job.sequence)
    seq_dir = job.test_set / job.sequence
    try:
        ann = read_annotations(seq_dir / metadata.ANNOTATION_FILE)
        frames = _kept_frames(ann, job.all_frames)
        if len(frames) == 0:
            raise DataError(f"{seq_dir / metadata.ANNOTATION_FILE}: no valid frame with finite annotations")
        first = _read_image(job.test_set / metadata.image_relpath(job.sequence, int(frames[0])), None)
        hw = first.shape[:2]
        camera = load_3dhp_camera(job.sequence, hw)
        valid = ann.valid[frames]
        residual = projection_residuals(ann.annot3[frames][valid], ann.annot2[frames][valid], camera)
        result.residual_px = {"median": float(np.median(residual)), "mean": float(residual.mean()),
                              "max": float(residual.max())} if residual.size else {}
        boxes = square_boxes(ann.annot2[frames], job.margin)
        out_hw = (job.image_size, job.image_size)
        params = [cv2.IMWRITE_JPEG_QUALITY, int(job.jpeg_quality)]
        Ks, paths = [], []
        for i, frame in enumerate(frames):
            src = job.test_set / metadata.image_relpath(job.sequence, int(frame))
            image = first if i == 0 else _read_image(src, hw)
            crop, crop_cam = undistorted_crop(image, camera, boxes[i], out_hw)
            ok, buf = cv2.imencode(".jpg", crop, params)
            if not ok:
                raise DataError(f"cannot JPEG-encode a crop of {src}")
            rel = f"images/{src.parent.parent.name}/{src.name}"
            atomic_write_bytes(job.out_dir / rel, buf.tobytes())
            result.bytes_written += len(buf)
            Ks.append(crop_cam.K)
            paths.append(rel)
            progress(1)
        to_ours = list(MPI_INF_3DHP_TO_CONTEXTPOSE_INDEX)
        cols = {
            "sequence": np.full(len(frames), job.sequence), "frame": frames, "valid": valid,
            "activity": ann.activity[frames], "keypoints_3d": ann.annot3[frames][:, to_ours],
            "keypoints_3d_univ": ann.univ_annot3[frames][:, to_ours], "annot3": ann.annot3[frames],
            "univ_annot3": ann.univ_annot3[frames], "annot2": ann.annot2[frames], "bbox": boxes,
            "K": np.stack(Ks), "image": np.array(paths),
        }
        L.save_3dhp_labels(job.part_path, cols, {"part": job.sequence})
        result.rows = result.frames_written = len(frames)
        result.valid_frames = int(valid.sum())
        result.cameras = [camera.name]
        result.camera = camera.to_dict()
        result.bytes_written += os.path.getsize(job.part_path)
    except DataError as e:
        result.error = str(e)
    except Exception as e:  # keep the run going; report the sequence as failed
        result.error = f"{job.sequence}: {type(e).__name__}: {e}"
    return result


def _merge(out: Path, manifest: dict, opts: Preprocess3DHPOptions) -> tuple[Path, int]:
    """Rebuild labels.npz from the shards of all finished sequences."""
    keys = [s for s in metadata.SEQUENCES if s in manifest["sequences"]]
    shards = [L.load_3dhp_labels(out / manifest["sequences"][k]["part"])[0] for k in keys]
    cols = L.concatenate(shards) if shards else L.empty(MPI_INF_3DHP.num_joints)
    meta = {
        "ctxpose_version": __version__, "dataset": "mpi_inf_3dhp", "skeleton": H36M_CONTEXTPOSE.name,
        "joint_names": list(H36M_CONTEXTPOSE.names), "joint_names_3dhp": list(MPI_INF_3DHP.names),
        **opts.settings(), "sequences": keys, "activities": list(metadata.ACTIVITIES),
        "cameras": {k: manifest["sequences"][k]["camera"] for k in keys},
        "projection_residual_px": {k: manifest["sequences"][k]["residual_px"] for k in keys},
        "frame": "0-based index into the sequence's annot_data.mat arrays; source image img_{frame+1:06d}.jpg",
        "coordinates": "test camera frame, mm (R = I, t = 0); crops undistorted (pinhole K)",
    }
    path = out / "labels.npz"
    L.save_3dhp_labels(path, cols, meta)
    return path, len(cols["frame"])


def preprocess_3dhp(root: str | Path, out_dir: str | Path, options: Preprocess3DHPOptions | None = None,
                    progress: Callable[[str, dict], None] | None = None) -> PreprocessReport:
    """MPI-INF-3DHP test set -> processed folder (see the module docstring). Resumable and idempotent.

    Args:
        root: the ``mpi_inf_3dhp_test_set`` folder or its parent.
        out_dir: processed folder (created).
        options: settings (:class:`Preprocess3DHPOptions`).
        progress: ``progress(event, info)`` as in :func:`ctxpose.data.h36m.preprocess.preprocess_h36m`.

    Returns:
        The report (``done`` holds :class:`Sequence3DHPResult`); ``report.ok`` is False if a sequence failed.

    Raises:
        DataError: bad options, no test set under ``root``, or ``out_dir`` made with other settings.
    """
    opts = options or Preprocess3DHPOptions()
    check_options(opts)
    test_set, out = metadata.find_test_set(root), Path(out_dir)
    emit = progress or (lambda event, info: None)
    manifest_path = out / "manifest.json"
    manifest = _read_manifest(manifest_path, opts, MANIFEST_FORMAT)
    report = PreprocessReport()
    jobs = []
    for seq in opts.sequences or metadata.SEQUENCES:
        if not (test_set / seq / metadata.ANNOTATION_FILE).is_file():
            report.absent.append(seq)
        elif seq in manifest["sequences"] and (out / manifest["sequences"][seq]["part"]).is_file():
            report.skipped.append(seq)
        else:
            jobs.append(Sequence3DHPJob(seq, test_set, out, opts.image_size, opts.jpeg_quality, opts.margin,
                                        opts.all_frames))
    planned = {}
    for job in jobs:
        try:
            planned[job.sequence] = len(_kept_frames(read_annotations(test_set / job.sequence /
                                                                      metadata.ANNOTATION_FILE), opts.all_frames))
        except DataError:
            planned[job.sequence] = 0  # the worker reports the error
        report.planned.append({"sequence": job.sequence, "cameras": [camera_name(job.sequence)],
                               "frames": planned[job.sequence], "crops": planned[job.sequence]})
    if opts.dry_run:
        return report
    start = time.perf_counter()
    emit("plan", {"sequences": len(jobs), "frames": sum(planned.values())})
    out.mkdir(parents=True, exist_ok=True)
    _collect(_run_jobs(jobs, opts.workers, emit, process_3dhp_sequence), planned, report, manifest, manifest_path,
             emit, lambda r: {"part": f"parts/{r.key}.npz", "rows": r.rows, "valid_frames": r.valid_frames,
                              "camera": r.camera, "residual_px": r.residual_px})
    if manifest["sequences"] or not (out / "labels.npz").exists():
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True))
        report.labels_path, report.rows = _merge(out, manifest, opts)
    report.seconds = time.perf_counter() - start
    return report
