"""``ctxpose preprocess h36m``: raw Human3.6M (archives or extracted) -> square crops + labels, resumable.

Output (the processed folder)::

    images/<subject>/<Action-trial>/<camera>/<frame:06d>.jpg   undistorted square crops (frame 0-based)
    labels.npz                       one row per (frame, camera), schema in ctxpose.data.labels
    mean_and_std_limb_length.h5      datasets mean, std (L,): bone lengths over the training subjects
    manifest.json                    settings + finished sequences (a re-run skips them)
    parts/<subject>/<Action-trial>.npz   label shard of each finished sequence

Every file is written to a temporary name and renamed; ``labels.npz`` is rebuilt from the shards of
all finished sequences at the end of every run, so killing the process at any moment leaves the previous
complete labels (or none) and never a half-written file under a final name.

Frame selection (``every_n``): every n-th pose frame, per split, recorded in ``labels.npz`` meta. Default 5
for both splits: the 26,634-frame test set documented in the original ``mvn/datasets/human36m.py``
(``retain_every_n_frames_in_test``) equals every 5th frame of S9/S11 minus the damaged S9 sequences
(frame counts from ``metadata.xml``), and ContextPose evaluates it with ``retain_every_n_frames_in_test: 1``.
The original training images were chosen by motion (``process_h36m.py``: keep a frame once a joint has
moved 40 mm; 159,181 frames, about every 2.4th), which a fixed stride replaces; ``--train-every 2`` comes
closest in count, ``1`` keeps all frames. ``selection="original"`` keeps exactly the original table's frames
instead (:mod:`ctxpose.data.h36m.selection`), so the released pelvis estimates line up with the labels.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ctxpose._version import __version__
from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.archives import extract_members, list_archives
from ctxpose.data.h36m.cameras import image_size, load_h36m_cameras
from ctxpose.data.h36m.process_sequence import SequenceJob, SequenceResult, process_sequence
from ctxpose.data.h36m.selection import (
    SELECTIONS,
    needs_universal_poses,
    selection_meta,
    sequence_frames,
    universal_relpath,
)
from ctxpose.data.labels import FORMAT, VERSION, Labels, load_labels
from ctxpose.errors import DataError
from ctxpose.skeleton import get_skeleton
from ctxpose.utils.io import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

BBOX_SOURCES = ("auto", "masks", "poses")
_SETTINGS_KEYS = ("image_size", "jpeg_quality", "train_every", "test_every", "bbox_source", "bbox_scale", "selection")


@dataclass(frozen=True)
class PreprocessOptions:
    """Settings of a preprocessing run.

    Attributes:
        image_size: crop side, px (ContextPose ``image_shape: [384, 384]``).
        jpeg_quality: JPEG quality 0..100 (95 = OpenCV's default, as the original's undistorted images).
        train_every: keep every n-th pose frame of training subjects (1 = all frames).
        test_every: same for test subjects.
        selection: "stride" (every n-th frame) or "original" (the original's frames and order, see
            :mod:`ctxpose.data.h36m.selection`; train_every/test_every must stay at their defaults).
        bbox_source: "auto" (masks if present, else projected poses), "masks" or "poses".
        bbox_scale: scale of the square box about its centre (original ``scale_bbox``; ContextPose 1.0).
        subjects, actions, cameras: filters (None = all); actions as "Walking" or "Walking-1".
        workers: parallel processes over sequences.
        cameras_file: una-dinosauria ``cameras.h5`` overriding the packaged cameras.
        extract_dir: where archive members are extracted (default ``<out>/.raw``).
        keep_extracted: keep ``extract_dir`` after a run without failures.
        dry_run: only list what would be done.
    """

    image_size: int = 384
    jpeg_quality: int = 95
    train_every: int = 5
    test_every: int = 5
    selection: str = "stride"
    bbox_source: str = "auto"
    bbox_scale: float = 1.0
    subjects: tuple[str, ...] | None = None
    actions: tuple[str, ...] | None = None
    cameras: tuple[str, ...] | None = None
    workers: int = 1
    cameras_file: Path | None = None
    extract_dir: Path | None = None
    keep_extracted: bool = False
    dry_run: bool = False

    def settings(self) -> dict:
        """The settings that must not change between runs into the same folder."""
        return {k: getattr(self, k) for k in _SETTINGS_KEYS}


@dataclass
class PreprocessReport:
    """Outcome of a run: per-sequence results, skipped and failed sequences, totals."""

    done: list[SequenceResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    planned: list[dict] = field(default_factory=list)
    frames_written: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    rows: int = 0
    labels_path: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict:
        """JSON-serialisable summary (same numbers as the CLI table)."""
        return {
            "done": [asdict(r) for r in self.done], "skipped": self.skipped, "absent": self.absent,
            "failed": self.failed,
            "planned": self.planned, "frames_written": self.frames_written, "bytes_written": self.bytes_written,
            "seconds": self.seconds, "frames_per_second": self.frames_written / self.seconds if self.seconds else 0.0,
            "bytes_per_frame": self.bytes_written / self.frames_written if self.frames_written else 0.0,
            "rows": self.rows, "labels_path": str(self.labels_path) if self.labels_path else None,
        }


def check_options(opts: PreprocessOptions) -> None:
    """Raise :class:`DataError` (one line naming the option) for invalid settings."""
    if opts.bbox_source not in BBOX_SOURCES:
        raise DataError(f"--bbox-source {opts.bbox_source!r}: expected one of {BBOX_SOURCES}")
    if opts.image_size < 8 or not 0 <= opts.jpeg_quality <= 100:
        raise DataError(f"--image-size {opts.image_size} / --jpeg-quality {opts.jpeg_quality}: expected >= 8 / 0..100")
    if opts.train_every < 1 or opts.test_every < 1:
        raise DataError("--train-every/--test-every must be >= 1")
    if opts.selection not in SELECTIONS:
        raise DataError(f"--selection {opts.selection!r}: expected one of {SELECTIONS}")
    if opts.selection == "original" and (opts.train_every, opts.test_every) != (5, 5):
        raise DataError("--train-every/--test-every/--all-frames apply to --selection stride; --selection original "
                        "keeps the original's frames (motion rule for training, every 64th for test)")
    for c in opts.cameras or ():
        if c not in metadata.camera_ids():
            raise DataError(f"--cameras: unknown camera {c!r}; expected some of {metadata.camera_ids()}")


def _locate(raw_dir: Path, extract_dir: Path, rel: str) -> Path | None:
    for root in (raw_dir, extract_dir):
        p = root / rel
        if p.is_file():
            return p
    return None


def _any_present(raw_dir: Path, extract_dir: Path, seq: metadata.Sequence, cams: list[str]) -> bool:
    """Whether the pose file or any video of the sequence exists (loose or already extracted)."""
    need = _needed_files(seq, cams)
    return any(_locate(raw_dir, extract_dir, rel) is not None for key, (kind, rel) in need.items()
               if kind in ("D3_Positions", "Videos"))


def _needed_files(seq: metadata.Sequence, cams: list[str], selection: str = "stride") -> dict[str, tuple[str, str]]:
    """key -> (raw kind, relative path) of the files one sequence needs."""
    need = {"D3_Positions": ("D3_Positions", metadata.raw_relpath("D3_Positions", seq.subject, seq.base_name))}
    if needs_universal_poses(seq, selection):
        need["universal"] = ("D3_Positions_mono_universal", universal_relpath(seq))
    for c in cams:
        need[f"Videos:{c}"] = ("Videos", metadata.raw_relpath("Videos", seq.subject, seq.base_name, c))
        need[f"ground_truth_bb:{c}"] = ("ground_truth_bb",
                                        metadata.raw_relpath("ground_truth_bb", seq.subject, seq.base_name, c))
    return need


def _extract_archives(raw_dir: Path, extract_dir: Path, todo: list[tuple[metadata.Sequence, list[str]]],
                      opts: PreprocessOptions, report: PreprocessReport) -> None:
    """Extract the members the pending sequences need from official archives (loose files win)."""
    archives = list_archives(raw_dir)
    wanted: dict[Path, set[str]] = {}
    for seq, cams in todo:
        for kind, rel in _needed_files(seq, cams, opts.selection).values():
            if kind == "ground_truth_bb" and opts.bbox_source == "poses":
                continue
            if _locate(raw_dir, extract_dir, rel) is None and (kind, seq.subject) in archives:
                wanted.setdefault(archives[(kind, seq.subject)], set()).add(Path(rel).name)
    for archive, names in sorted(wanted.items()):
        logger.info("extracting %d files from %s", len(names), archive.name)
        try:
            extract_members(archive, extract_dir, names)
        except DataError as e:
            report.failed[f"archive {archive.name}"] = str(e)


def _read_manifest(path: Path, opts: PreprocessOptions, fmt: str = "ctxpose-h36m-manifest") -> dict:
    """The manifest of finished sequences (a new one if absent); ``opts.settings()`` must match the file's."""
    if not path.is_file():
        return {"format": fmt, "version": 1, "settings": opts.settings(), "sequences": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e}); delete it to start over") from None
    old = {"selection": "stride", **manifest.get("settings", {})}  # folders made before --selection: stride
    diff = {k: (old.get(k), v) for k, v in opts.settings().items() if old.get(k) != v}
    if diff:
        raise DataError(f"{path.parent}: made with other settings {diff} (old, new); use another output folder")
    return manifest


def _merge(out: Path, manifest: dict, opts: PreprocessOptions) -> tuple[Path, int]:
    """Rebuild labels.npz and the limb-length file from the shards of all finished sequences."""
    skeleton = get_skeleton()
    keys = sorted(manifest["sequences"])
    shards = [load_labels(out / manifest["sequences"][k]["part"]) for k in keys]
    meta = {
        "format": FORMAT, "version": VERSION, "ctxpose_version": __version__, "dataset": "human36m",
        "skeleton": skeleton.name, "joint_names": list(skeleton.names), "image_size": opts.image_size,
        "jpeg_quality": opts.jpeg_quality, "bbox_source": opts.bbox_source, "bbox_scale": opts.bbox_scale,
        "bbox_sources_used": {k: manifest["sequences"][k]["bbox_sources"] for k in keys},
        "dist_model": "h36m (source cameras); crops are undistorted pinholes",
        "frame": "0-based pose frame index; image file name = frame",
        "selection": selection_meta(opts.selection, opts.train_every, opts.test_every),
        "sequences": keys,
    }
    labels = Labels.concatenate(shards, meta) if shards else Labels.empty(skeleton.num_joints, meta)
    labels_path = out / "labels.npz"
    labels.save(labels_path)
    _write_limb_lengths(out / "mean_and_std_limb_length.h5", labels)
    return labels_path, len(labels)


def _write_limb_lengths(path: Path, labels: Labels) -> None:
    """Bone-length mean/std over the training subjects' frames (one per frame, as the original's rows)."""
    import h5py

    skeleton = get_skeleton()
    train = np.isin(labels.subject, metadata.train_subjects())
    subjects = metadata.train_subjects()
    if not train.any():
        logger.warning("no training subject processed: limb lengths computed over all processed subjects")
        train, subjects = np.ones(len(labels), dtype=bool), sorted(set(labels.subject.tolist()))
    ids = np.char.add(np.char.add(labels.subject, "/"), np.char.add(labels.action, labels.trial.astype(str)))
    ids = np.char.add(np.char.add(ids, "/"), labels.frame.astype(str))
    _, first = np.unique(ids[train], return_index=True)
    lengths = skeleton.bone_lengths(labels.keypoints_3d[train][first]).reshape(-1, skeleton.num_bones)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f["mean"] = lengths.mean(axis=0) if len(lengths) else np.zeros(skeleton.num_bones)
        f["std"] = lengths.std(axis=0) if len(lengths) else np.zeros(skeleton.num_bones)
        f.attrs["bones"] = np.array(skeleton.bones)
        f.attrs["subjects"] = ",".join(subjects)
        f.attrs["frames"] = len(lengths)


def _plan(raw_dir: Path, out: Path, extract_dir: Path, opts: PreprocessOptions, manifest: dict,
          report: PreprocessReport) -> list[tuple[metadata.Sequence, list[str]]]:
    """Sequences to process with their cameras; fills ``report.skipped`` and ``report.absent``."""
    cams_wanted = list(opts.cameras) if opts.cameras else metadata.camera_ids()
    todo = []
    for seq in metadata.sequences(list(opts.subjects) if opts.subjects else None,
                                  list(opts.actions) if opts.actions else None):
        cams = [c for c in cams_wanted if not metadata.is_missing_video(seq.subject, seq.name, c)]
        done = manifest["sequences"].get(seq.key)
        if done and set(cams) <= set(done["cameras"]) and (out / done["part"]).is_file():
            report.skipped.append(seq.key)
            continue
        todo.append((seq, cams))
    archived = {s for kind, s in list_archives(raw_dir) if kind in ("D3_Positions", "Videos")}
    present = []
    for seq, cams in todo:  # a sequence none of whose files exist is not in this download: not a failure
        if seq.subject in archived or _any_present(raw_dir, extract_dir, seq, cams):
            present.append((seq, cams))
        else:
            report.absent.append(seq.key)
    return present


def preprocess_h36m(raw_dir: str | Path, out_dir: str | Path, options: PreprocessOptions | None = None,
                    progress: Callable[[str, dict], None] | None = None) -> PreprocessReport:
    """Raw Human3.6M -> processed folder (see the module docstring). Resumable and idempotent.

    Args:
        raw_dir: folder with the official archives (``Videos_S1.tgz``...) and/or their extracted
            ``S1/...`` folders.
        out_dir: processed folder (created).
        options: settings; defaults as documented on :class:`PreprocessOptions`.
        progress: called as ``progress(event, info)``: ("plan", {"sequences", "frames"}),
            ("frames", {"n"}), ("done"|"failed", {"key", "unused", "error"?}); "unused" = planned crops
            that were not made (short sequences, failures), to shrink a progress total.

    Returns:
        :class:`PreprocessReport`; ``report.ok`` is False if any sequence or archive failed.

    Raises:
        DataError: bad options, or ``out_dir`` was made with other settings.
    """
    opts = options or PreprocessOptions()
    check_options(opts)
    raw_dir, out = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise DataError(f"raw folder {raw_dir} does not exist")
    emit = progress or (lambda event, info: None)
    extract_dir = Path(opts.extract_dir) if opts.extract_dir else out / ".raw"
    manifest_path = out / "manifest.json"
    manifest = _read_manifest(manifest_path, opts)
    report = PreprocessReport()
    todo = _plan(raw_dir, out, extract_dir, opts, manifest, report)
    for seq, cams in todo:  # the motion rule's count is known once the poses are read (not in a dry run)
        frames = (None if needs_universal_poses(seq, opts.selection)
                  else len(sequence_frames(seq, opts.selection, opts.train_every, opts.test_every)))
        report.planned.append({"sequence": seq.key, "cameras": cams, "frames": frames,
                               "crops": None if frames is None else frames * len(cams)})
    if opts.dry_run:
        return report
    start = time.perf_counter()
    _extract_archives(raw_dir, extract_dir, todo, opts, report)
    cameras = load_h36m_cameras(opts.cameras_file)
    jobs = []
    for seq, cams in todo:
        files = {k: _locate(raw_dir, extract_dir, rel)
                 for k, (_, rel) in _needed_files(seq, cams, opts.selection).items()}
        if not _any_present(raw_dir, extract_dir, seq, cams):  # not in these archives either
            report.absent.append(seq.key)
            continue
        try:
            frames = sequence_frames(seq, opts.selection, opts.train_every, opts.test_every,
                                     files.pop("universal", None))
        except DataError as e:
            report.failed[seq.key] = str(e)
            continue
        jobs.append(SequenceJob(
            seq=seq, cameras={c: cameras[(seq.subject, c)] for c in cams},
            nominal_hw={c: image_size(seq.subject, c) for c in cams}, files=files,
            frames=frames, out_dir=out,
            part_path=out / "parts" / seq.subject / f"{seq.name}.npz", image_size=opts.image_size,
            jpeg_quality=opts.jpeg_quality, bbox_source=opts.bbox_source, bbox_scale=opts.bbox_scale))
    emit("plan", {"sequences": len(jobs), "frames": sum(len(j.frames) * len(j.cameras) for j in jobs)})
    out.mkdir(parents=True, exist_ok=True)
    planned = {j.seq.key: len(j.frames) * len(j.cameras) for j in jobs}
    _collect(_run_jobs(jobs, opts.workers, emit), planned, report, manifest, manifest_path, emit,
             lambda r: {"part": str((out / "parts" / f"{r.key}.npz").relative_to(out)), "rows": r.rows,
                        "cameras": r.cameras, "bbox_sources": r.bbox_sources})
    if manifest["sequences"] or not (out / "labels.npz").exists():
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True))
        report.labels_path, report.rows = _merge(out, manifest, opts)
    report.seconds = time.perf_counter() - start
    if report.ok and not opts.keep_extracted and extract_dir == out / ".raw" and extract_dir.exists():
        shutil.rmtree(extract_dir)
    return report


def _collect(results: Iterator[SequenceResult], planned: dict[str, int], report: PreprocessReport, manifest: dict,
             manifest_path: Path, emit: Callable[[str, dict], None],
             entry: Callable[[SequenceResult], dict]) -> None:
    """Book results as they arrive: a failure into ``report.failed``; a finished sequence into the report and
    the manifest (``entry(result)`` plus the time, written after each); emits "failed" / "done" with the
    planned crops that were not made ("unused": poses shorter than the official count, failures)."""
    for result in results:
        unused = planned[result.key] - result.frames_written
        if result.error:
            report.failed[result.key] = result.error
            emit("failed", {"key": result.key, "error": result.error, "unused": unused})
            continue
        report.done.append(result)
        report.frames_written += result.frames_written
        report.bytes_written += result.bytes_written
        manifest["sequences"][result.key] = {**entry(result), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        atomic_write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True))
        emit("done", {"key": result.key, "unused": unused})


def _run_jobs(jobs: list, workers: int, emit: Callable[[str, dict], None], process: Callable = process_sequence):
    """Yield results as sequences finish; frame ticks go to ``emit("frames", {"n": k})``.

    ``process(job, progress)`` (module-level, picklable) turns a job into a result; the MPI-INF-3DHP
    preprocessing passes its own.
    """
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield process(job, lambda n: emit("frames", {"n": n}))
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        queue = manager.Queue()
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = [pool.submit(_worker, process, job, queue) for job in jobs]
            pending = set(futures)
            while pending:
                _drain(queue, emit)
                finished = [f for f in pending if f.done()]
                for f in finished:
                    pending.discard(f)
                    yield f.result()
                if not finished:
                    time.sleep(0.05)
            _drain(queue, emit)


def _drain(queue, emit) -> None:
    total = 0
    while not queue.empty():
        total += queue.get()
    if total:
        emit("frames", {"n": total})


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _worker(process: Callable, job, queue) -> SequenceResult:
    return process(job, queue.put)
