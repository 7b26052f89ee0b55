"""``ctxpose preprocess 3dhp``: the MPI-INF-3DHP test set -> square undistorted crops + labels, resumable.

Output (the processed folder)::

    images/TS1/img_000124.jpg        crop of TS1/imageSequence/img_000124.jpg (annotation frame 123)
    labels.npz                       one row per kept frame, schema in ``ctxpose.data.mpi_inf_3dhp.labels``
    manifest.json                    settings + finished sequences (a re-run skips them)
    parts/TS1.npz                    label shard of each finished sequence
    preprocess_report.json           the last run's report

The box of a frame is the square around its 17 ``annot2`` joints, grown by ``margin`` (a fraction of the
larger side) on every side. Each crop is ONE ``cv2.remap`` from the full frame (undistortion, crop and
resize in one map, :func:`ctxpose.data.transforms.undistorted_crop`), so it is the image of the
pinhole crop camera whose intrinsics are stored with it; TS5-6 crops are thereby undistorted. Every
sequence's ``annot3`` is projected through its camera and compared with ``annot2``: the residual (px, over
valid frames and joints) is reported and stored in the labels' meta.

The runner is the one ``preprocess h36m`` uses (:mod:`ctxpose.data.preprocessing`), with the same
guarantees: resuming (finished sequences are skipped, a re-run with nothing to do leaves every output
untouched), atomic files, the progress events, worker processes with ``workers`` > 1 that stop with Ctrl-C
and die with their parent, and per-sequence failures: a missing or corrupt annotation file or image fails
that sequence with one line naming the file, the others go on; an output that cannot be written stops the
run with one line; a bug keeps its traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ctxpose._version import __version__
from ctxpose.data.mpi_inf_3dhp import labels as L
from ctxpose.data.mpi_inf_3dhp import metadata
from ctxpose.data.mpi_inf_3dhp.annotations import read_annotations
from ctxpose.data.mpi_inf_3dhp.cameras import camera_name, load_3dhp_camera, projection_residuals
from ctxpose.data.preprocessing import (
    MANIFEST_NAME,
    PreprocessReport,
    Run,
    SequenceResult,
    labels_meta_or_none,
    opencv_error,
    output_errors,
    read_manifest,
    write_output,
)
from ctxpose.data.transforms import undistorted_crop
from ctxpose.errors import DataError
from ctxpose.skeleton import H36M_CONTEXTPOSE, MPI_INF_3DHP, MPI_INF_3DHP_TO_CONTEXTPOSE_INDEX

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
        workers: parallel processes over sequences (>= 1).
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
    """One sequence's work (picklable), a job of the shared runner: paths, the settings and the planned crops."""

    sequence: str
    test_set: Path
    out_dir: Path
    image_size: int
    jpeg_quality: int
    margin: float
    all_frames: bool
    planned_crops: int = 0

    @property
    def key(self) -> str:
        return self.sequence

    @property
    def part_path(self) -> Path:
        return self.out_dir / "parts" / f"{self.sequence}.npz"

    def crop(self, progress: Callable[[int], None]) -> tuple[dict[str, np.ndarray] | None, Sequence3DHPResult]:
        return crop_3dhp_sequence(self, progress)

    def save(self, shard: dict[str, np.ndarray], result: SequenceResult) -> None:
        with output_errors(self.part_path):
            L.save_3dhp_labels(self.part_path, shard, {"part": self.sequence})
            result.bytes_written += os.path.getsize(self.part_path)


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
    if opts.workers < 1:
        raise DataError(f"--workers {opts.workers}: expected at least 1 process")
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


def crop_3dhp_sequence(job: Sequence3DHPJob, progress: Callable[[int], None] | None = None
                       ) -> tuple[dict[str, np.ndarray] | None, Sequence3DHPResult]:
    """Write the crops of one sequence and build its label shard (not yet saved, see :meth:`Sequence3DHPJob.save`).

    Returns:
        (shard columns, result); the shard is None when the sequence failed (``result.error``: one line
        naming the annotation file or image).

    Raises:
        OutputError: a crop cannot be written.
    """
    progress = progress or (lambda n: None)
    result = Sequence3DHPResult(key=job.sequence)
    seq_dir = job.test_set / job.sequence
    source: Path = seq_dir / metadata.ANNOTATION_FILE  # what is being read, for an OpenCV error
    try:
        ann = read_annotations(source)
        frames = _kept_frames(ann, job.all_frames)
        if len(frames) == 0:
            raise DataError(f"{source}: no valid frame with finite annotations")
        source = job.test_set / metadata.image_relpath(job.sequence, int(frames[0]))
        first = _read_image(source, None)
        hw = first.shape[:2]
        camera = load_3dhp_camera(job.sequence, hw)
        valid = ann.valid[frames]
        residual = projection_residuals(ann.annot3[frames][valid], ann.annot2[frames][valid], camera)
        boxes = square_boxes(ann.annot2[frames], job.margin)
        out_hw = (job.image_size, job.image_size)
        params = [cv2.IMWRITE_JPEG_QUALITY, int(job.jpeg_quality)]
        Ks, paths = [], []
        for i, frame in enumerate(frames):
            source = job.test_set / metadata.image_relpath(job.sequence, int(frame))
            image = first if i == 0 else _read_image(source, hw)
            crop, crop_cam = undistorted_crop(image, camera, boxes[i], out_hw)
            ok, buf = cv2.imencode(".jpg", crop, params)
            if not ok:
                raise DataError(f"cannot JPEG-encode a crop of {source}")
            rel = f"images/{source.parent.parent.name}/{source.name}"
            write_output(job.out_dir / rel, buf.tobytes())
            result.bytes_written += len(buf)
            Ks.append(crop_cam.K)
            paths.append(rel)
            progress(1)
    except DataError as e:
        result.error = str(e)
        return None, result
    except cv2.error as e:
        result.error = opencv_error(source, e)
        return None, result
    to_ours = list(MPI_INF_3DHP_TO_CONTEXTPOSE_INDEX)
    shard = {
        "sequence": np.full(len(frames), job.sequence), "frame": frames, "valid": valid,
        "activity": ann.activity[frames], "keypoints_3d": ann.annot3[frames][:, to_ours],
        "keypoints_3d_univ": ann.univ_annot3[frames][:, to_ours], "annot3": ann.annot3[frames],
        "univ_annot3": ann.univ_annot3[frames], "annot2": ann.annot2[frames], "bbox": boxes,
        "K": np.stack(Ks), "image": np.array(paths),
    }
    result.rows = result.frames_written = len(frames)
    result.valid_frames = int(valid.sum())
    result.cameras = [camera.name]
    result.bbox_sources = {camera.name: "annot2"}
    result.camera = camera.to_dict()
    result.residual_px = {"median": float(np.median(residual)), "mean": float(residual.mean()),
                          "max": float(residual.max())} if residual.size else {}
    return shard, result


def _merge(out: Path, manifest: dict, opts: Preprocess3DHPOptions) -> tuple[Path, int]:
    """Rebuild labels.npz from the shards of all finished sequences."""
    keys = _finished(manifest)
    shards = [L.load_3dhp_labels(out / manifest["sequences"][k]["part"])[0] for k in keys]
    cols = L.concatenate(shards)  # the runner merges only when a sequence is finished
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


def _finished(manifest: dict) -> list[str]:
    """The manifest's sequences in the release's order."""
    return [s for s in metadata.SEQUENCES if s in manifest["sequences"]]


def _labels_current(manifest: dict, out: Path) -> bool:
    """Whether labels.npz holds exactly the manifest's sequences (its meta only read)."""
    meta = labels_meta_or_none(out)
    return meta is not None and meta.get("format") == L.FORMAT and meta.get("sequences") == _finished(manifest)


def _manifest_entry(result: Sequence3DHPResult, old: dict | None) -> dict:
    return {"part": f"parts/{result.key}.npz", "rows": result.rows, "cameras": result.cameras,
            "valid_frames": result.valid_frames, "camera": result.camera, "residual_px": result.residual_px}


def preprocess_3dhp(root: str | Path, out_dir: str | Path, options: Preprocess3DHPOptions | None = None,
                    progress: Callable[[str, dict], None] | None = None) -> PreprocessReport:
    """MPI-INF-3DHP test set -> processed folder (see the module docstring). Resumable and idempotent.

    With ``workers`` > 1, a script must call this under ``if __name__ == "__main__":`` (as for
    :func:`ctxpose.data.h36m.preprocess.preprocess_h36m`).

    Args:
        root: the ``mpi_inf_3dhp_test_set`` folder or its parent.
        out_dir: processed folder (created).
        options: settings (:class:`Preprocess3DHPOptions`).
        progress: ``progress(event, info)`` as in :func:`ctxpose.data.h36m.preprocess.preprocess_h36m`.

    Returns:
        The report (``done`` holds :class:`Sequence3DHPResult`), also written to
        ``<out>/preprocess_report.json`` (not by a dry run); ``report.ok`` is False if a sequence failed.

    Raises:
        DataError: bad options, no test set under ``root``, or ``out_dir`` made with other settings.
        OutputError: ``out_dir`` cannot be written (one line naming the path; finished work is kept).
        ctxpose.errors.Stopped: Ctrl-C or SIGTERM (``report``: this :class:`PreprocessReport`); the workers are
            stopped, the sequences finished before are recorded in the manifest and the labels, no partial file
            is left.
    """
    opts = options or Preprocess3DHPOptions()
    check_options(opts)
    test_set, out = metadata.find_test_set(Path(root).expanduser()), Path(out_dir).expanduser()
    emit = progress or (lambda event, info: None)
    manifest = read_manifest(out / MANIFEST_NAME, opts, MANIFEST_FORMAT)
    report = PreprocessReport()
    jobs = []
    for seq in opts.sequences or metadata.SEQUENCES:
        if not (test_set / seq / metadata.ANNOTATION_FILE).is_file():
            report.absent.append(seq)
        elif seq in manifest["sequences"] and (out / manifest["sequences"][seq]["part"]).is_file():
            report.skipped.append(seq)
        else:
            try:
                planned = len(_kept_frames(read_annotations(test_set / seq / metadata.ANNOTATION_FILE),
                                           opts.all_frames))
            except DataError:
                planned = 0  # cropping reports the error
            jobs.append(Sequence3DHPJob(seq, test_set, out, opts.image_size, opts.jpeg_quality, opts.margin,
                                        opts.all_frames, planned))
            report.planned.append({"sequence": seq, "cameras": [camera_name(seq)], "frames": planned,
                                   "crops": planned})
    if opts.dry_run:
        return report
    run = Run(out, manifest, report, emit, _manifest_entry, lambda m: _merge(out, m, opts),
              lambda m: _labels_current(m, out))
    run.execute(lambda run: jobs, opts.workers)
    return report
