"""``ctxpose preprocess h36m``: raw Human3.6M (archives or extracted) -> square crops + labels, resumable.

Output (the processed folder)::

    images/<subject>/<Action-trial>/<camera>/<frame:06d>.jpg   undistorted square crops (frame 0-based)
    labels.npz                       one row per (frame, camera), schema in ctxpose.data.labels
    mean_and_std_limb_length.h5      datasets mean, std (L,): bone lengths over the training subjects
    manifest.json                    settings + finished sequences (a re-run skips them)
    parts/<subject>/<Action-trial>.npz   label shard of each finished sequence
    preprocess_report.json           the last run's :class:`PreprocessReport`

Every file is written to a temporary name and renamed; ``labels.npz`` is rebuilt from the shards of
all finished sequences at the end of every run that finished one (also when it is interrupted), so killing
the process at any moment leaves the previous complete labels (or none) and never a half-written file under
a final name. A run with nothing left to do leaves every output untouched and writes only the report
``preprocess_report.json``. With ``workers`` > 1 the sequences run in worker processes
(:mod:`ctxpose.data.h36m.workers`) that stop with Ctrl-C and die with their parent.

Frame selection (``every_n``): every n-th pose frame, per split, recorded in ``labels.npz`` meta. Default 5
for both splits: the 26,634-frame test set documented in the original ``mvn/datasets/human36m.py``
(``retain_every_n_frames_in_test``) equals every 5th frame of S9/S11 minus the damaged S9 sequences
(frame counts from ``metadata.xml``), and ContextPose evaluates it with ``retain_every_n_frames_in_test: 1``.
The original training images were chosen by motion (``process_h36m.py``: keep a frame once a joint has
moved 40 mm; 159,181 frames, about every 2.4th), which a fixed stride replaces; ``--train-every 2`` comes
closest in count, ``1`` keeps all frames.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ctxpose import __version__
from ctxpose.data.h36m import metadata
from ctxpose.data.h36m.archives import extract_members, list_archives
from ctxpose.data.h36m.cameras import image_size, load_h36m_cameras
from ctxpose.data.h36m.process_sequence import SequenceJob, SequenceResult, crop_sequence, save_shard
from ctxpose.data.h36m.raw import cdf_frame_count
from ctxpose.data.h36m.workers import run_in_workers
from ctxpose.data.labels import Labels, labels_meta, load_labels
from ctxpose.errors import DataError, OutputError
from ctxpose.skeleton import SKELETONS, Skeleton, get_skeleton
from ctxpose.utils.io import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

BBOX_SOURCES = ("auto", "masks", "poses")
_SETTINGS_KEYS = ("image_size", "jpeg_quality", "train_every", "test_every", "bbox_source", "bbox_scale",
                  "skeleton")
REPORT_NAME = "preprocess_report.json"


@dataclass(frozen=True)
class PreprocessOptions:
    """Settings of a preprocessing run.

    Attributes:
        image_size: crop side, px (ContextPose ``image_shape: [384, 384]``).
        jpeg_quality: JPEG quality 0..100 (95 = OpenCV's default, as the original's undistorted images).
        train_every: keep every n-th pose frame of training subjects (1 = all frames).
        test_every: same for test subjects.
        bbox_source: "auto" (masks if present, else projected poses), "masks" or "poses".
        bbox_scale: scale of the square box about its centre (original ``scale_bbox``; ContextPose 1.0).
        skeleton: joint order of the labels (``ctxpose.skeleton.SKELETONS``; the config's ``model.skeleton``):
            which of the 32 mocap joints ``keypoints_3d`` holds, and the bones of the limb-length prior.
        subjects, actions, cameras: filters (None = all); actions as "Walking" or "Walking-1".
        workers: parallel processes over sequences (>= 1).
        cameras_file: una-dinosauria ``cameras.h5`` overriding the packaged cameras.
        extract_dir: where archive members are extracted (default ``<out>/.raw``).
        keep_extracted: keep ``extract_dir`` after a run without failures.
        dry_run: only list what would be done.
    """

    image_size: int = 384
    jpeg_quality: int = 95
    train_every: int = 5
    test_every: int = 5
    bbox_source: str = "auto"
    bbox_scale: float = 1.0
    skeleton: str = "contextpose17"
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
    """Outcome of a run (also written as ``<out>/preprocess_report.json``).

    Attributes:
        done: sequences finished in this run (a sequence with some failed cameras included).
        skipped: sequences finished by an earlier run.
        absent: sequences not in this download.
        failed: "S1/Walking-1" (its pose file), "S1/Walking-1/54138969" (one camera's video or mask) or
            "archive Videos_S1.tgz" -> one line naming the file.
        planned: per sequence to do: cameras, frames (counted in its pose file, or the official count
            while it is still in an archive), crops.
        interrupted: the run was stopped (Ctrl-C); everything finished before is recorded.
    """

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
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def to_dict(self) -> dict:
        """JSON-serialisable summary (same numbers as the CLI table)."""
        return {
            "done": [asdict(r) for r in self.done], "skipped": self.skipped, "absent": self.absent,
            "failed": self.failed, "interrupted": self.interrupted,
            "planned": self.planned, "frames_written": self.frames_written, "bytes_written": self.bytes_written,
            "seconds": self.seconds, "frames_per_second": self.frames_written / self.seconds if self.seconds else 0.0,
            "bytes_per_frame": self.bytes_written / self.frames_written if self.frames_written else 0.0,
            "rows": self.rows, "labels_path": str(self.labels_path) if self.labels_path else None,
        }


class PreprocessInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped :func:`preprocess_h36m`; ``report`` says what was finished (and recorded) before."""

    def __init__(self, report: PreprocessReport) -> None:
        super().__init__("preprocessing interrupted")
        self.report = report


def check_options(opts: PreprocessOptions) -> None:
    """Raise :class:`DataError` (one line naming the option) for invalid settings."""
    if opts.bbox_source not in BBOX_SOURCES:
        raise DataError(f"--bbox-source {opts.bbox_source!r}: expected one of {BBOX_SOURCES}")
    if opts.image_size < 8 or not 0 <= opts.jpeg_quality <= 100:
        raise DataError(f"--image-size {opts.image_size} / --jpeg-quality {opts.jpeg_quality}: expected >= 8 / 0..100")
    if opts.train_every < 1 or opts.test_every < 1:
        raise DataError("--train-every/--test-every must be >= 1")
    if opts.workers < 1:
        raise DataError(f"--workers {opts.workers}: expected at least 1 process")
    if opts.skeleton not in SKELETONS:
        raise DataError(f"--skeleton {opts.skeleton!r}: expected one of {sorted(SKELETONS)}")
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


def _needed_files(seq: metadata.Sequence, cams: list[str]) -> dict[str, tuple[str, str]]:
    """key -> (raw kind, relative path) of the files one sequence needs."""
    need = {"D3_Positions": ("D3_Positions", metadata.raw_relpath("D3_Positions", seq.subject, seq.base_name))}
    for c in cams:
        need[f"Videos:{c}"] = ("Videos", metadata.raw_relpath("Videos", seq.subject, seq.base_name, c))
        need[f"ground_truth_bb:{c}"] = ("ground_truth_bb",
                                        metadata.raw_relpath("ground_truth_bb", seq.subject, seq.base_name, c))
    return need


@dataclass
class _Todo:
    """A sequence to process: the cameras to crop now, and the shard whose other cameras are kept."""

    seq: metadata.Sequence
    cameras: list[str]
    keep_part: Path | None = None


def _pose_frames(raw_dir: Path, extract_dir: Path, seq: metadata.Sequence) -> tuple[int, str]:
    """Frames of the sequence and where the number comes from: its pose file's header, if it is on disk."""
    path = _locate(raw_dir, extract_dir, metadata.raw_relpath("D3_Positions", seq.subject, seq.base_name))
    if path is not None:
        try:
            return cdf_frame_count(path), "pose file"
        except DataError:  # processing names the file
            pass
    return seq.num_frames, "official count"


def _cameras_present(raw_dir: Path, extract_dir: Path, seq: metadata.Sequence, cams: list[str],
                     archived_videos: set[str]) -> list[str]:
    """Cameras whose video is on disk or (maybe) in the subject's Videos archive."""
    if seq.subject in archived_videos:
        return list(cams)
    return [c for c in cams if _locate(raw_dir, extract_dir, _needed_files(seq, [c])[f"Videos:{c}"][1])]


def _extract_archives(raw_dir: Path, extract_dir: Path, todo: list[_Todo], opts: PreprocessOptions,
                      fail: Callable[[str, str], None]) -> None:
    """Extract the members the pending sequences need from official archives (loose files win)."""
    archives = list_archives(raw_dir)
    wanted: dict[Path, set[str]] = {}
    for t in todo:
        for kind, rel in _needed_files(t.seq, t.cameras).values():
            if kind == "ground_truth_bb" and opts.bbox_source == "poses":
                continue
            if _locate(raw_dir, extract_dir, rel) is None and (kind, t.seq.subject) in archives:
                wanted.setdefault(archives[(kind, t.seq.subject)], set()).add(Path(rel).name)
    for archive, names in sorted(wanted.items()):
        logger.info("extracting %d files from %s", len(names), archive.name)
        try:
            extract_members(archive, extract_dir, names)
        except DataError as e:
            fail(f"archive {archive.name}", str(e))


def _read_manifest(path: Path, opts: PreprocessOptions) -> dict:
    if not path.is_file():
        return {"format": "ctxpose-h36m-manifest", "version": 1, "settings": opts.settings(), "sequences": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); delete it to start over") from None
    old = manifest.get("settings", {})
    defaults = {f.name: f.default for f in fields(PreprocessOptions)}  # settings added after a folder was made
    diff = {k: (old.get(k, defaults[k]), v) for k, v in opts.settings().items() if old.get(k, defaults[k]) != v}
    if diff:
        raise DataError(f"{path.parent}: made with other settings {diff} (old, new); use another output folder")
    manifest["settings"] = opts.settings()
    return manifest


def _labels_current(out: Path, manifest: dict) -> bool:
    """Whether labels.npz and the limb file exist and hold exactly the manifest's sequences (meta only read)."""
    labels, limbs = out / "labels.npz", out / "mean_and_std_limb_length.h5"
    if not labels.is_file() or not limbs.is_file():
        return False
    try:
        with np.load(labels, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError):
        return False
    return meta.get("sequences") == sorted(manifest["sequences"]) and meta.get("bbox_sources_used") == {
        k: v["bbox_sources"] for k, v in manifest["sequences"].items()}


def _merge(out: Path, manifest: dict, opts: PreprocessOptions) -> tuple[Path, int]:
    """Rebuild labels.npz and the limb-length file from the shards of all finished sequences."""
    skeleton = get_skeleton(opts.skeleton)
    keys = sorted(manifest["sequences"])
    shards = [load_labels(out / manifest["sequences"][k]["part"]) for k in keys]
    meta = labels_meta(
        ctxpose_version=__version__, dataset="human36m", skeleton=skeleton.name,
        joint_names=list(skeleton.names), bones=[list(b) for b in skeleton.bones], image_size=opts.image_size,
        jpeg_quality=opts.jpeg_quality, bbox_source=opts.bbox_source, bbox_scale=opts.bbox_scale,
        bbox_sources_used={k: manifest["sequences"][k]["bbox_sources"] for k in keys},
        dist_model="h36m (source cameras); crops are undistorted pinholes",
        frame="0-based pose frame index; image file name = frame",
        selection={"train_every": opts.train_every, "test_every": opts.test_every,
                   "train_subjects": metadata.train_subjects(), "test_subjects": metadata.test_subjects()},
        sequences=keys,
    )
    labels = Labels.concatenate(shards, meta)
    labels_path = out / "labels.npz"
    labels.save(labels_path)
    _write_limb_lengths(out / "mean_and_std_limb_length.h5", labels, skeleton)
    return labels_path, len(labels)


def _write_limb_lengths(path: Path, labels: Labels, skeleton: Skeleton) -> None:
    """Bone-length mean/std over the training subjects' frames (one per frame, as the original's rows)."""
    import h5py

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
        f["mean"] = lengths.mean(axis=0)
        f["std"] = lengths.std(axis=0)
        f.attrs["bones"] = np.array(skeleton.bones)
        f.attrs["skeleton"] = skeleton.name
        f.attrs["subjects"] = ",".join(subjects)
        f.attrs["frames"] = len(lengths)


def _plan(raw_dir: Path, out: Path, extract_dir: Path, opts: PreprocessOptions, manifest: dict,
          report: PreprocessReport) -> list[_Todo]:
    """Sequences to process with their cameras; fills ``report.skipped`` and ``report.absent``."""
    cams_wanted = list(opts.cameras) if opts.cameras else metadata.camera_ids()
    todo = []
    for seq in metadata.sequences(list(opts.subjects) if opts.subjects else None,
                                  list(opts.actions) if opts.actions else None):
        cams = [c for c in cams_wanted if not metadata.is_missing_video(seq.subject, seq.name, c)]
        done = manifest["sequences"].get(seq.key)
        part = out / done["part"] if done else None
        if part is None or not part.is_file():
            todo.append(_Todo(seq, cams))
        elif set(cams) <= set(done["cameras"]):
            report.skipped.append(seq.key)
        else:  # a camera that failed or was not asked for before: crop it, keep the others
            todo.append(_Todo(seq, [c for c in cams if c not in done["cameras"]], part))
    archived = {s for kind, s in list_archives(raw_dir) if kind in ("D3_Positions", "Videos")}
    present = []
    for t in todo:  # a sequence none of whose files exist is not in this download: not a failure
        if t.seq.subject in archived or _any_present(raw_dir, extract_dir, t.seq, t.cameras):
            present.append(t)
        else:
            report.absent.append(t.seq.key)
    return present


def _nothing_found(raw_dir: Path, opts: PreprocessOptions) -> DataError:
    seq = metadata.sequence("S1", "Directions-1")
    expected = (f"{metadata.raw_relpath('D3_Positions', 'S1', seq.base_name)} and "
                f"{metadata.raw_relpath('Videos', 'S1', seq.base_name, metadata.camera_ids()[0])}, or official "
                f"archives such as {metadata.archive_name('D3_Positions', 'S1')} and "
                f"{metadata.archive_name('Videos', 'S1')}")
    filters = "".join(f" --{name} {','.join(value)}" for name, value in
                      (("subjects", opts.subjects), ("actions", opts.actions), ("cameras", opts.cameras)) if value)
    where = f" matching{filters}" if filters else ""
    nested = sorted({p.parent for s in metadata.subjects() for p in raw_dir.glob(f"*/{s}") if p.is_dir()} |
                    {p.parent for p in raw_dir.glob("*/*.tgz")})
    hint = f"; found some one folder down: {nested[0]}" if nested else ""
    return DataError(f"no Human3.6M sequences under {raw_dir}{where} (expected e.g. {expected}){hint}")


@contextlib.contextmanager
def _holding_ctrl_c() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT with Python's default handler, main thread) until the block is done, then raise it."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


class _Run:
    """Bookkeeping of one run: failures (each reported once), finished sequences, the manifest."""

    def __init__(self, out: Path, manifest: dict, report: PreprocessReport, emit: Callable[[str, dict], None],
                 planned: dict[str, int]) -> None:
        self.out, self.manifest, self.report, self.emit, self.planned = out, manifest, report, emit, planned
        self.changed = False

    def fail(self, key: str, error: str) -> None:
        self.report.failed[key] = error
        self.emit("failed", {"key": key, "error": error})

    def record(self, result: SequenceResult) -> None:
        """Take one sequence's result: failures, and if any camera is in its shard, the manifest entry."""
        with _holding_ctrl_c():
            self._record(result)

    def _record(self, result: SequenceResult) -> None:
        if result.error:
            self.fail(result.key, result.error)
        for cam, error in result.camera_errors.items():
            self.fail(f"{result.key}/{cam}", error)
        if result.cameras:
            old = self.manifest["sequences"].get(result.key, {})
            sources = {**old.get("bbox_sources", {}), **result.bbox_sources}
            self.manifest["sequences"][result.key] = {
                "part": str(Path("parts") / f"{result.key}.npz"), "rows": result.rows, "cameras": result.cameras,
                "bbox_sources": {c: sources[c] for c in result.cameras},
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
            self.write_manifest()
            self.report.done.append(result)
            self.report.frames_written += result.frames_written
            self.report.bytes_written += result.bytes_written
        self.emit("done", {"key": result.key, "unused": self.planned.get(result.key, 0) - result.frames_written})

    def write_manifest(self) -> None:
        try:
            atomic_write_text(self.out / "manifest.json", json.dumps(self.manifest, indent=1, sort_keys=True))
        except OSError as e:
            raise OutputError(f"{self.out / 'manifest.json'}: cannot write ({e.strerror or e})") from None
        self.changed = True


def _finish(out: Path, run: _Run, opts: PreprocessOptions, start: float) -> None:
    """Rebuild the labels if anything changed (or they are stale), then write the report."""
    report = run.report
    if run.manifest["sequences"] and (run.changed or not _labels_current(out, run.manifest)):
        report.labels_path, report.rows = _merge(out, run.manifest, opts)
    elif (out / "labels.npz").is_file():
        report.labels_path = out / "labels.npz"
        report.rows = sum(v["rows"] for v in run.manifest["sequences"].values())
    report.seconds = time.perf_counter() - start
    write_report(out, report)


def write_report(out: Path, report: PreprocessReport) -> Path:
    """Write ``report`` as ``<out>/preprocess_report.json`` (what the command prints, as JSON)."""
    path = out / REPORT_NAME
    try:
        atomic_write_text(path, json.dumps(report.to_dict(), indent=1))
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def preprocess_h36m(raw_dir: str | Path, out_dir: str | Path, options: PreprocessOptions | None = None,
                    progress: Callable[[str, dict], None] | None = None) -> PreprocessReport:
    """Raw Human3.6M -> processed folder (see the module docstring). Resumable and idempotent.

    Safe to call from a script without an ``if __name__ == "__main__":`` guard, also with ``workers`` > 1
    (worker processes never re-import the caller's script).

    Args:
        raw_dir: folder with the official archives (``Videos_S1.tgz``...) and/or their extracted
            ``S1/...`` folders.
        out_dir: processed folder (created).
        options: settings; defaults as documented on :class:`PreprocessOptions`.
        progress: called as ``progress(event, info)``: ("plan", {"sequences", "frames"}) with the crops
            planned from the pose files on disk, ("frames", {"n"}) as crops are written, ("failed",
            {"key", "error"}) once per failure, ("done", {"key", "unused"}) per sequence, failed or not;
            "unused" = planned crops that were not made, to shrink a progress total.

    Returns:
        :class:`PreprocessReport`, also written to ``<out>/preprocess_report.json`` (not by a dry run);
        ``report.ok`` is False if any sequence, camera or archive failed.

    Raises:
        DataError: bad options, no Human3.6M sequence under ``raw_dir`` (nothing is written then), or
            ``out_dir`` was made with other settings.
        OutputError: ``out_dir`` cannot be written (one line naming the path; finished work is kept).
        PreprocessInterrupted: Ctrl-C (a ``KeyboardInterrupt``); the workers are stopped, the sequences
            finished before are recorded in the manifest and the labels, no partial file is left.
    """
    opts = options or PreprocessOptions()
    check_options(opts)
    raw_dir, out = Path(raw_dir).expanduser(), Path(out_dir).expanduser()
    if not raw_dir.is_dir():
        raise DataError(f"raw folder {raw_dir} does not exist")
    emit = progress or (lambda event, info: None)
    extract_dir = Path(opts.extract_dir) if opts.extract_dir else out / ".raw"
    manifest = _read_manifest(out / "manifest.json", opts)
    report = PreprocessReport()
    todo = _plan(raw_dir, out, extract_dir, opts, manifest, report)
    if not todo and not report.skipped:
        raise _nothing_found(raw_dir, opts)
    every = {s: opts.train_every if metadata.split_of(s) == "train" else opts.test_every for s in metadata.subjects()}
    archived_videos = {s for kind, s in list_archives(raw_dir) if kind == "Videos"}
    for t in todo:
        n, source = _pose_frames(raw_dir, extract_dir, t.seq)
        frames = len(range(0, n, every[t.seq.subject]))
        cams = _cameras_present(raw_dir, extract_dir, t.seq, t.cameras, archived_videos)
        report.planned.append({"sequence": t.seq.key, "cameras": t.cameras, "frames": frames,
                               "crops": frames * len(cams), "frames_from": source})
    if opts.dry_run:
        return report
    start = time.perf_counter()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    run = _Run(out, manifest, report, emit, {})
    if not (out / "manifest.json").is_file():
        run.write_manifest()  # records the settings; fails early on an output that cannot be written
    try:
        jobs = _jobs(raw_dir, out, extract_dir, opts, todo, report, run, every)
        # crops planned: selected frames of the pose file x cameras whose video is there
        run.planned.update({j.seq.key: len(j.frames) * sum(j.files[f"Videos:{c}"] is not None for c in j.cameras)
                            for j in jobs})
        emit("plan", {"sequences": len(jobs), "frames": sum(run.planned.values())})
        frames = lambda n: emit("frames", {"n": n})  # noqa: E731
        if opts.workers > 1 and len(jobs) > 1:
            run_in_workers(jobs, opts.workers, frames, run.record)
        else:
            for job in jobs:
                shard, result = crop_sequence(job, frames)
                with _holding_ctrl_c():  # a shard on disk is always in the manifest
                    if shard is not None:
                        save_shard(job, shard, result)
                    run.record(result)
    except BaseException as e:
        report.interrupted = isinstance(e, KeyboardInterrupt)
        try:  # keep what was finished, then raise
            _finish(out, run, opts, start)
        except Exception as nested:
            logger.warning("could not rebuild the labels after the stop: %s", nested)
        if report.interrupted:
            raise PreprocessInterrupted(report) from None
        raise
    _finish(out, run, opts, start)
    if report.ok and not opts.keep_extracted and extract_dir == out / ".raw" and extract_dir.exists():
        shutil.rmtree(extract_dir)
    return report


def _jobs(raw_dir: Path, out: Path, extract_dir: Path, opts: PreprocessOptions, todo: list[_Todo],
          report: PreprocessReport, run: _Run, every: dict[str, int]) -> list[SequenceJob]:
    """Extract what the sequences need from archives, then one job per sequence whose files are there."""
    _extract_archives(raw_dir, extract_dir, todo, opts, run.fail)
    cameras = load_h36m_cameras(opts.cameras_file)
    skeleton = get_skeleton(opts.skeleton)
    jobs = []
    for t in todo:
        seq, cams = t.seq, t.cameras
        if not _any_present(raw_dir, extract_dir, seq, cams):  # not in these archives either
            report.absent.append(seq.key)
            continue
        files = {k: _locate(raw_dir, extract_dir, rel) for k, (_, rel) in _needed_files(seq, cams).items()}
        n, _ = _pose_frames(raw_dir, extract_dir, seq)
        jobs.append(SequenceJob(
            seq=seq, cameras={c: cameras[(seq.subject, c)] for c in cams},
            nominal_hw={c: image_size(seq.subject, c) for c in cams}, files=files,
            frames=tuple(range(0, n, every[seq.subject])), out_dir=out,
            part_path=out / "parts" / seq.subject / f"{seq.name}.npz", image_size=opts.image_size,
            jpeg_quality=opts.jpeg_quality, bbox_source=opts.bbox_source, bbox_scale=opts.bbox_scale,
            skeleton=skeleton, keep_part=t.keep_part))
    return jobs
