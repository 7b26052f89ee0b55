"""The preprocessing runner both datasets share (``preprocess h36m`` and ``preprocess 3dhp``).

A dataset plans its sequences and makes one :class:`Job` per sequence to do; a :class:`Run` then runs the
jobs (in this process, or with ``workers`` > 1 in worker processes, :func:`run_in_workers`) and keeps the
processed folder consistent whatever happens:

* every finished sequence is recorded in ``manifest.json`` as soon as its shard is on disk (a Ctrl-C or
  SIGTERM is held while that happens, :meth:`ctxpose.utils.signals.StopSignals.held`; shards are saved by
  this process, never by a worker), so a re-run skips it;
* a failure (bad input) is reported once, as it happens, and fails only its sequence or camera;
* Ctrl-C or SIGTERM stops promptly (queued sequences never start, a worker stops after the crop it is
  writing), the labels are rebuilt from the sequences finished before, and :class:`ctxpose.errors.Stopped`
  carries the report; a bug or an output that cannot be written stops the run the same way but re-raises its error;
* a run with nothing left to do leaves every output untouched and writes only ``preprocess_report.json``.

Worker processes come from the standard library's process pool, started with the ``spawn`` method (a fresh
interpreter, never a fork of a threaded parent): a script that calls the Python API with ``workers`` > 1 must
do so under ``if __name__ == "__main__":``, as for a torch DataLoader with workers.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

from ctxpose.data.labels import read_labels_meta
from ctxpose.errors import CtxposeError, DataError, OutputError, Stopped
from ctxpose.utils.io import atomic_write_bytes, atomic_write_text
from ctxpose.utils.signals import StopSignals

logger = logging.getLogger(__name__)

REPORT_NAME = "preprocess_report.json"
MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.npz"
#: Seconds a stopped worker gets to finish the crop it is writing before it is killed.
STOP_GRACE_S = 10.0


@dataclass
class SequenceResult:
    """What the work on one sequence did (also what a dead worker's sequence gets: ``error`` only).

    Attributes:
        key: the sequence, e.g. "S1/Walking-1" or "TS1".
        rows, frames_written, bytes_written: shard rows (kept rows included), crops and bytes written now.
        cameras: cameras in the shard (kept ones included); empty when the sequence failed.
        bbox_sources: camera -> what its crop boxes were made from ("masks", "poses", "annot2"), for the
            cameras cropped now.
        error: why the whole sequence failed (e.g. its pose or annotation file), else None.
        camera_errors: camera -> why that camera failed (its video or mask); the others are kept.
    """

    key: str
    rows: int = 0
    frames_written: int = 0
    bytes_written: int = 0
    cameras: list[str] = field(default_factory=list)
    bbox_sources: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    camera_errors: dict[str, str] = field(default_factory=dict)


class Job(Protocol):
    """One sequence's work, picklable: ``crop`` runs in this process or in a worker, ``save`` in this process.

    ``crop`` writes the crops (with :func:`write_output`, calling ``progress(n)`` after each) and returns the
    label shard, not yet saved (None when nothing is left to save), and the result; only data errors (bad
    input, named in ``result.error`` / ``result.camera_errors``) are caught, an output that cannot be written
    raises :class:`ctxpose.errors.OutputError`, and anything else is a bug. ``save`` writes the shard
    atomically; the runner records the sequence right after, so every shard on disk reaches the manifest.
    """

    @property
    def key(self) -> str: ...

    @property
    def planned_crops(self) -> int: ...

    def crop(self, progress: Callable[[int], None]) -> tuple[Any | None, SequenceResult]: ...

    def save(self, shard: Any, result: SequenceResult) -> None: ...


class WorkerCrash(RuntimeError):
    """A worker process raised an unexpected exception (a bug; the message holds its traceback) or could not
    start."""


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


@contextlib.contextmanager
def output_errors(path: Path) -> Iterator[None]:
    """Turn an OS error inside the block into one :class:`OutputError` line naming the file (``path`` or the
    error's own file name): the run cannot go on."""
    try:
        yield
    except OSError as e:
        raise OutputError(f"{e.filename or path}: cannot write ({e.strerror or e})") from None


def write_output(path: Path, data: bytes) -> None:
    """Write one output file (a crop) atomically; an OS error is an :class:`OutputError` naming it.

    A stop (Ctrl-C, or a worker's SIGTERM) that arrives meanwhile waits until the file is complete.
    """
    with output_errors(path), StopSignals.held():
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

    def commit(self, job: Job, shard: Any | None, result: SequenceResult) -> None:
        """Take one sequence's outcome: save its shard, then record it (a stop is held meanwhile, so a shard
        on disk is always in the manifest)."""
        with StopSignals.held():
            if shard is not None:
                job.save(shard, result)
            self._record(result)

    def _record(self, result: SequenceResult) -> None:
        """The failures of one sequence and, if any camera is in its shard, its manifest entry."""
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
            Stopped: Ctrl-C or SIGTERM; workers stopped, everything finished before recorded; ``report``
                is the run's :class:`PreprocessReport`, the message says how to continue.
        """
        with StopSignals(at_once=True):
            self._execute(make_jobs, workers)

    def _execute(self, make_jobs: Callable[[Run], list[Job]], workers: int) -> None:
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
                run_in_workers(jobs, workers, frames, self.commit)
            else:
                for job in jobs:
                    self.commit(job, *job.crop(frames))
        except BaseException as e:
            self.report.interrupted = isinstance(e, (KeyboardInterrupt, Stopped))
            try:  # keep what was finished, then raise
                self.finish()
            except Exception as nested:
                logger.warning("could not rebuild the labels after the stop: %s", nested)
            if self.report.interrupted:
                done = len(self.report.done)
                raise Stopped(f"{done} sequence{' is' if done == 1 else 's are'} finished in this run and recorded "
                              f"in {self.out / MANIFEST_NAME}; run the same command again to continue",
                              report=self.report) from None
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


# ----------------------------------------------------------------------------------------------- worker processes


def run_in_workers(jobs: Iterable[Job], workers: int, on_frames: Callable[[int], None],
                   on_done: Callable[[Job, Any | None, SequenceResult], None]) -> None:
    """Crop ``jobs`` in ``workers`` processes; ``on_frames(n)`` and ``on_done(job, shard, result)`` run here.

    Each worker is a spawn-context ``ProcessPoolExecutor`` of one process, so that the sequence a process
    dies on is known: it fails alone (``result.error`` says how the process died) and a new worker takes the
    sequences left. On return, and on any exception (``Stopped`` included), the workers are stopped
    (SIGTERM: a worker exits at once, or right after the crop it is writing) and queued jobs never start.
    A stop signal is held through each pass of the loop (at most 0.1 s of waiting plus a finished sequence's
    saving): raised inside ``concurrent.futures`` it could leave a future's lock taken, and the executor's
    shutdown would then wait for ever.

    Raises:
        CtxposeError: as raised in a worker (e.g. :class:`ctxpose.errors.OutputError`: a full disk).
        WorkerCrash: a worker raised anything else (a bug), with its traceback; or it could not start.
    """
    context = multiprocessing.get_context("spawn")
    pending, pool = collections.deque(jobs), []
    try:
        while pending or pool:
            with StopSignals.held():
                _step_workers(context, pending, pool, workers, on_frames, on_done)
    finally:
        for w in pool:  # all at once, then wait for each
            w.terminate()
        for w in pool:
            w.stop()


def _step_workers(context: Any, pending: collections.deque, pool: list[_Worker], workers: int,
                  on_frames: Callable[[int], None], on_done: Callable[[Job, Any | None, SequenceResult], None]) -> None:
    """One pass of :func:`run_in_workers`' loop: start workers, wait up to 0.1 s, take what finished."""
    while pending and len(pool) < workers:
        pool.append(_Worker(context, pending.popleft()))
    done, _ = concurrent.futures.wait([w.future for w in pool], timeout=0.1,
                                      return_when=concurrent.futures.FIRST_COMPLETED)
    if n := sum(w.new_crops() for w in pool):
        on_frames(n)
    for w in [w for w in pool if w.future in done]:
        error = w.future.exception()
        if isinstance(error, BrokenProcessPool):  # the process died
            pool.remove(w)
            w.stop()
            if w.crops.value < 0 and w.exitcode is not None and w.exitcode >= 0:
                raise WorkerCrash(f"a worker process could not start ({describe_exit(w.exitcode)}, its "
                                  "error is above); a script calling this with workers > 1 must do "
                                  'so under `if __name__ == "__main__":`') from None
            result = SequenceResult(key=w.job.key,
                                    error=f"its worker process died ({describe_exit(w.exitcode)})")
            on_done(w.job, None, result)
        elif error is not None:
            raise error from None
        else:
            job, (shard, result) = w.job, w.future.result()
            if pending:  # the worker goes on while this process saves the shard
                w.submit(pending.popleft())
            else:
                pool.remove(w)
                w.stop()
            on_done(job, shard, result)


def describe_exit(code: int | None) -> str:
    """"exit code 3", "killed by signal 9 (SIGKILL; out of memory?)" for a ``Process.exitcode``."""
    if code is None:
        return "exit status unknown"
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown signal"
    hint = "; out of memory?" if name == "SIGKILL" else ""
    return f"killed by signal {-code} ({name}{hint})"


class _Worker:
    """One worker process and the job it runs: a ``ProcessPoolExecutor`` of one, started with the first job."""

    def __init__(self, context: Any, job: Job) -> None:
        self.crops = context.RawValue("q", -1)  # crops written, counted by the worker; -1 until it has started
        self.seen = 0
        self.executor = concurrent.futures.ProcessPoolExecutor(1, context, _start_worker,
                                                               (os.getpid(), self.crops))
        before = set(multiprocessing.active_children())
        with StopSignals.starting_child():  # a group Ctrl-C cannot cut its start-up short
            self.submit(job)  # starts the process
        self.process = next(iter(set(multiprocessing.active_children()) - before), None)
        self.exitcode: int | None = None

    def submit(self, job: Job) -> None:
        self.job, self.future = job, self.executor.submit(_crop, job)

    def new_crops(self) -> int:
        """Crops written since the last call."""
        total = max(self.crops.value, 0)
        n, self.seen = total - self.seen, total
        return n

    def terminate(self) -> None:
        """Send SIGTERM: the worker exits at once, or right after the crop it is writing."""
        if self.process is not None and self.process.exitcode is None:
            self.process.terminate()

    def stop(self) -> None:
        """SIGTERM (SIGKILL after :data:`STOP_GRACE_S`), then release the executor; sets ``exitcode``."""
        self.terminate()
        if self.process is not None:
            self.process.join(STOP_GRACE_S)
            if self.process.exitcode is None:
                self.process.kill()
        self.executor.shutdown(wait=True, cancel_futures=True)  # joins the process
        self.exitcode = self.process.exitcode if self.process is not None else None


_crops: Any = None  # the worker's crop counter, shared with the parent


def _start_worker(parent: int, crops: Any) -> None:
    """Initializer of a worker process: it dies with the parent (Linux), leaves Ctrl-C to the parent (a
    terminal sends it to the whole process group), exits on SIGTERM at once or right after the crop it is
    writing (:meth:`ctxpose.utils.signals.StopSignals.worker`), uses one thread."""
    global _crops
    StopSignals.worker()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, ctypes.c_ulong(signal.SIGTERM))  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:  # the parent died before that
        os._exit(1)
    import cv2

    cv2.setNumThreads(1)
    # preprocessing needs no torch, so no `import torch` (1-2 s of CPU); one thread if anything loads it
    os.environ["OMP_NUM_THREADS"] = "1"
    if (torch := sys.modules.get("torch")) is not None:  # a script's main module imported it, say
        torch.set_num_threads(1)
    _crops = crops
    crops.value = 0


def _count(n: int) -> None:
    _crops.value += n


def _crop(job: Job) -> tuple[Any | None, SequenceResult]:
    """``job.crop`` in a worker; an unexpected exception becomes a :class:`WorkerCrash` holding its traceback."""
    try:
        return job.crop(_count)
    except CtxposeError:
        raise
    except Exception:
        raise WorkerCrash(f"preprocessing {job.key} failed in a worker process (a bug):\n"
                          f"{traceback.format_exc()}") from None
