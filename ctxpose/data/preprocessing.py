"""The preprocessing runner both datasets share (``preprocess h36m`` and ``preprocess 3dhp``).

A dataset plans its sequences and makes one :class:`ctxpose.data.workers.Job` per sequence to do; a
:class:`Run` then runs the jobs (in this process, or in worker processes with ``workers`` > 1) and keeps
the processed folder consistent whatever happens:

* every finished sequence is recorded in ``manifest.json`` as soon as its shard is on disk (a Ctrl-C is
  held while that happens), so a re-run skips it;
* a failure (bad input) is reported once, as it happens, and fails only its sequence or camera;
* Ctrl-C stops promptly (queued sequences never start, a worker stops after the crop it is writing), the
  labels are rebuilt from the sequences finished before, and :class:`PreprocessInterrupted` carries the
  report; a bug or an output that cannot be written stops the run the same way but re-raises its error;
* a run with nothing left to do leaves every output untouched and writes only ``preprocess_report.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ctxpose.data.labels import read_labels_meta
from ctxpose.data.workers import Job, SequenceResult, run_in_workers
from ctxpose.errors import DataError, OutputError
from ctxpose.utils.io import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

REPORT_NAME = "preprocess_report.json"
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.npz"


@dataclass
class PreprocessReport:
    """Outcome of a run (also written as ``<out>/preprocess_report.json``).

    Attributes:
        done: sequences finished in this run (a sequence with some failed cameras included).
        skipped: sequences finished by an earlier run.
        absent: sequences not in this download.
        failed: "S1/Walking-1" (its pose file), "S1/Walking-1/54138969" (one camera's video or mask),
            "archive Videos_S1.tgz" or "TS2" (its annotations or an image) -> one line naming the file.
        planned: per sequence to do: cameras, frames (counted in its files where they are on disk), crops.
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
    """Ctrl-C stopped a preprocessing run; ``report`` says what was finished (and recorded) before."""

    def __init__(self, report: PreprocessReport) -> None:
        super().__init__("preprocessing interrupted")
        self.report = report


@contextlib.contextmanager
def output_errors(path: Path) -> Iterator[None]:
    """Turn an OS error inside the block into one :class:`OutputError` line naming the file (``path`` or the
    error's own file name): the run cannot go on."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"{e.filename or path}: cannot write ({e.strerror or e})") from None


def write_output(path: Path, data: bytes) -> None:
    """Write one output file (a crop) atomically; an OS error is an :class:`OutputError` naming it."""
    with output_errors(path):
        atomic_write_bytes(path, data)


def opencv_error(source: str | Path, error: Exception) -> str:
    """One line for an OpenCV ``cv2.error`` while reading ``source``: its last, informative line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{source}: OpenCV error ({lines[-1] if lines else 'unknown'})"


def read_manifest(path: Path, opts: Any, fmt: str) -> dict:
    """The manifest of finished sequences (a new one if absent).

    Args:
        path: ``<out>/manifest.json``.
        opts: the run's options (a dataclass with ``settings()``); the file's settings must match them, a
            setting the file does not have (added in a later version) counts as its default.
        fmt: the manifest's ``format`` (one per dataset).

    Raises:
        DataError: not JSON, or made with other settings.
    """
    if not path.is_file():
        return {"format": fmt, "version": 1, "settings": opts.settings(), "sequences": {}}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); delete it to start over") from None
    old = manifest.get("settings", {})
    defaults = {f.name: f.default for f in fields(opts)}  # settings added after a folder was made
    diff = {k: (old.get(k, defaults[k]), v) for k, v in opts.settings().items() if old.get(k, defaults[k]) != v}
    if diff:
        raise DataError(f"{path.parent}: made with other settings {diff} (old, new); use another output folder")
    manifest["settings"] = opts.settings()
    return manifest


def labels_meta_or_none(out: Path) -> dict | None:
    """The meta of ``<out>/labels.npz`` (only that member read), or None if it is missing or unreadable."""
    try:
        return read_labels_meta(out / LABELS_NAME)
    except DataError:
        return None


@contextlib.contextmanager
def holding_ctrl_c() -> Iterator[None]:
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


def write_report(out: Path, report: PreprocessReport) -> Path:
    """Write ``report`` as ``<out>/preprocess_report.json`` (what the command prints, as JSON)."""
    path = out / REPORT_NAME
    with output_errors(path):
        atomic_write_text(path, json.dumps(report.to_dict(), indent=1))
    return path


class Run:
    """One run into a processed folder: failures (each reported once), finished sequences, the manifest.

    Args:
        out: the processed folder.
        manifest: from :func:`read_manifest`.
        report: filled in as the run goes (``skipped``/``absent``/``planned`` by the dataset's plan).
        emit: the ``progress(event, info)`` callback: ("plan", {"sequences", "frames"}), ("frames", {"n"}),
            ("failed", {"key", "error"}) once per failure, ("done", {"key", "unused"}) per sequence, failed
            or not ("unused": planned crops not made, to shrink a progress total).
        entry: ``entry(result, old)`` -> the manifest entry of a finished sequence (without its time);
            ``old`` is the sequence's previous entry or None.
        merge: rebuilds ``labels.npz`` (and any other merged file) from the manifest; returns (path, rows).
        labels_current: whether the merged files already hold exactly the manifest's sequences.
    """

    def __init__(self, out: Path, manifest: dict, report: PreprocessReport, emit: Callable[[str, dict], None],
                 entry: Callable[[SequenceResult, dict | None], dict], merge: Callable[[dict], tuple[Path, int]],
                 labels_current: Callable[[dict], bool]) -> None:
        self.out, self.manifest, self.report, self.emit = out, manifest, report, emit
        self.entry, self.merge, self.labels_current = entry, merge, labels_current
        self.planned: dict[str, int] = {}
        self.changed = False
        self.start = time.perf_counter()

    def fail(self, key: str, error: str) -> None:
        self.report.failed[key] = error
        self.emit("failed", {"key": key, "error": error})

    def record(self, result: SequenceResult) -> None:
        """Take one sequence's result: failures, and if any camera is in its shard, the manifest entry."""
        with holding_ctrl_c():
            self._record(result)

    def _record(self, result: SequenceResult) -> None:
        if result.error:
            self.fail(result.key, result.error)
        for cam, error in result.camera_errors.items():
            self.fail(f"{result.key}/{cam}", error)
        if result.cameras:
            old = self.manifest["sequences"].get(result.key)
            self.manifest["sequences"][result.key] = {**self.entry(result, old),
                                                      "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
            self.write_manifest()
            self.report.done.append(result)
            self.report.frames_written += result.frames_written
            self.report.bytes_written += result.bytes_written
        self.emit("done", {"key": result.key, "unused": self.planned.get(result.key, 0) - result.frames_written})

    def write_manifest(self) -> None:
        path = self.out / MANIFEST_NAME
        with output_errors(path):
            atomic_write_text(path, json.dumps(self.manifest, indent=1, sort_keys=True))
        self.changed = True

    def execute(self, make_jobs: Callable[[Run], list[Job]], workers: int) -> None:
        """Create the folder, run the jobs ``make_jobs(self)`` returns, rebuild the labels, write the report.

        ``make_jobs`` runs inside the guarded part (it may extract archives and report failures with
        :meth:`fail`); the jobs' ``planned_crops`` make the "plan" event.

        Raises:
            OutputError: the folder or an output cannot be written (what finished before is kept).
            PreprocessInterrupted: Ctrl-C; workers stopped, everything finished before recorded.
        """
        with output_errors(self.out):
            self.out.mkdir(parents=True, exist_ok=True)
        if not (self.out / MANIFEST_NAME).is_file():
            self.write_manifest()  # records the settings; fails early on an output that cannot be written
        try:
            jobs = make_jobs(self)
            self.planned.update({j.key: j.planned_crops for j in jobs})
            self.emit("plan", {"sequences": len(jobs), "frames": sum(self.planned.values())})
            frames = lambda n: self.emit("frames", {"n": n})  # noqa: E731
            if workers > 1 and len(jobs) > 1:
                run_in_workers(jobs, workers, frames, self.record)
            else:
                for job in jobs:
                    shard, result = job.crop(frames)
                    with holding_ctrl_c():  # a shard on disk is always in the manifest
                        if shard is not None:
                            job.save(shard, result)
                        self.record(result)
        except BaseException as e:
            self.report.interrupted = isinstance(e, KeyboardInterrupt)
            try:  # keep what was finished, then raise
                self.finish()
            except Exception as nested:
                logger.warning("could not rebuild the labels after the stop: %s", nested)
            if self.report.interrupted:
                raise PreprocessInterrupted(self.report) from None
            raise
        self.finish()

    def finish(self) -> None:
        """Rebuild the labels if anything changed (or they are stale or missing), then write the report."""
        report, sequences = self.report, self.manifest["sequences"]
        if sequences and (self.changed or not self.labels_current(self.manifest)):
            report.labels_path, report.rows = self.merge(self.manifest)
        elif (self.out / LABELS_NAME).is_file():
            report.labels_path = self.out / LABELS_NAME
            report.rows = sum(v["rows"] for v in sequences.values())
        report.seconds = time.perf_counter() - self.start
        write_report(self.out, report)
