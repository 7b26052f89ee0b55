"""Worker processes of the preprocessing runner (``preprocess h36m|3dhp --workers N``): fresh interpreters
that stop on request and die with their parent.

A job is any picklable object with the :class:`Job` methods (``ctxpose.data.h36m.process_sequence.SequenceJob``,
``ctxpose.data.mpi_inf_3dhp.preprocess.Sequence3DHPJob``); the worker imports its class when it unpickles it.

Each worker is ``python -c "...; worker_main(parent_pid)"`` started with :mod:`subprocess`, not
:mod:`multiprocessing`, so that

* the caller's ``__main__`` is never re-imported: the ``spawn`` and ``forkserver`` start methods re-run a
  script that calls the Python API at module level (and fail), ``fork`` copies a threaded parent;
* no Manager or resource-tracker process exists that could outlive the run;
* the channel is the worker's stdin (jobs, one at a time, so nothing is queued in a worker) and a duplicate
  of its stdout (frame ticks, results, errors): length-prefixed pickles between a parent and the children
  it started. The worker's own file descriptor 1 then points at stderr, so a library printing to stdout
  cannot corrupt the channel.

Stopping: the parent sends SIGTERM (Windows: TerminateProcess). The worker stops after the crop it is
writing (so no temporary file is left) and exits; while it saves a finished shard and sends its result it
finishes both first, so every shard on disk reaches the parent's manifest. Workers ignore SIGINT: Ctrl-C in a
terminal reaches the whole process group, and the parent decides.

Parent death (SIGKILL, a crash): on Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)``; everywhere, a thread that
sees the end of stdin (the parent's end of the pipe closes when it dies) and, on POSIX, a thread that sees
the parent pid change. Either stops the worker as SIGTERM does, and exits it hard after a grace period.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import io
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from ctxpose.errors import CtxposeError

#: Seconds a stopped worker gets to clean up before it is killed.
STOP_GRACE_S = 10.0
_HEADER = struct.Struct("<Q")
_BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); "
              "from ctxpose.data.workers import worker_main; worker_main(int(sys.argv[2]))")


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
    """One sequence's work, picklable; run in this process or in a worker, the same two steps.

    ``crop`` writes the crops (calling ``progress(n)`` after each, the point where a worker may be stopped)
    and returns the label shard, not yet saved (None when nothing is left to save), and the result; only
    data errors (bad input, named in ``result.error`` / ``result.camera_errors``) are caught, an output that
    cannot be written raises :class:`ctxpose.errors.OutputError`, and anything else is a bug. ``save``
    writes the shard atomically; the runner records the sequence right after, so every shard on disk
    reaches the manifest.
    """

    @property
    def key(self) -> str: ...

    @property
    def planned_crops(self) -> int: ...

    def crop(self, progress: Callable[[int], None]) -> tuple[Any | None, SequenceResult]: ...

    def save(self, shard: Any, result: SequenceResult) -> None: ...


class WorkerCrash(RuntimeError):
    """A worker raised an unexpected exception (a bug); the message holds the worker's traceback."""


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream: IO[bytes], n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        block = stream.read(n - got)
        if not block:
            return None
        chunks.append(block)
        got += len(block)
    return b"".join(chunks)


def _recv(stream: IO[bytes]) -> Any:
    """The next message, or None at the end of the stream (or a message cut off by a dying peer)."""
    head = _read_exact(stream, _HEADER.size)
    if head is None:
        return None
    data = _read_exact(stream, _HEADER.unpack(head)[0])
    return None if data is None else pickle.loads(data)


def describe_exit(code: int | None) -> str:
    """"exit code 3", "killed by signal 9 (SIGKILL)" for a ``Popen.returncode``."""
    if code is None:
        return "still running"
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown signal"
    hint = "; out of memory?" if name == "SIGKILL" else ""
    return f"killed by signal {-code} ({name}{hint})"


# ----------------------------------------------------------------------------------------------- parent side


class _Worker:
    """One worker process, its pipes and the thread that forwards its messages to ``events``."""

    def __init__(self, events: queue.Queue) -> None:
        root = str(Path(__file__).resolve().parents[2])  # the folder holding this ctxpose package
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOTSTRAP, root, str(os.getpid())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.job: Job | None = None
        self.reader = threading.Thread(target=self._forward, args=(events,), daemon=True)
        self.reader.start()

    def _forward(self, events: queue.Queue) -> None:
        while True:
            try:
                message = _recv(self.proc.stdout)
            except (OSError, EOFError, pickle.UnpicklingError, struct.error):
                message = None
            events.put((self, message if message is not None else ("exit",)))
            if message is None:
                return

    def submit(self, job: Job | None) -> bool:
        """Send a job (None: no more work); False if the worker is gone."""
        self.job = job
        try:
            if job is None:
                self.proc.stdin.close()
            else:
                _send(self.proc.stdin, job)
        except OSError:
            return False
        return True


def _stop(pool: list[_Worker]) -> None:
    """Stop every worker (SIGTERM to busy ones, end of input to idle ones); kill those that outlast the grace."""
    for w in pool:
        if w.proc.poll() is None:
            if w.job is not None:
                w.proc.terminate()
            else:
                w.submit(None)
    deadline = time.monotonic() + STOP_GRACE_S
    for w in pool:
        try:
            w.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            w.proc.kill()
            w.proc.wait()
    for w in pool:
        _close(w)


def _close(w: _Worker) -> None:
    w.reader.join(timeout=STOP_GRACE_S)
    for stream in (w.proc.stdin, w.proc.stdout):
        try:
            stream.close()
        except OSError:
            pass


def run_in_workers(jobs: Iterable[Job], workers: int, on_frames: Callable[[int], None],
                   on_result: Callable[[SequenceResult], None]) -> None:
    """Run jobs in ``workers`` processes; ``on_frames(n)`` and ``on_result(result)`` run in this thread.

    A worker that dies fails its sequence (``result.error`` says how it died) and is replaced while work
    remains. On return, and on any exception (KeyboardInterrupt included), every worker is stopped first and
    ``on_result`` is called for each result a worker had sent before the stop; queued jobs are never started.

    Raises:
        CtxposeError: as raised in a worker (e.g. :class:`ctxpose.errors.OutputError`: a full disk).
        WorkerCrash: a worker raised anything else (a bug), with its traceback.
    """
    events: queue.Queue = queue.Queue()
    pending = collections.deque(jobs)
    pool: list[_Worker] = []

    def feed(w: _Worker) -> None:
        while pending:
            job = pending.popleft()
            if w.submit(job):
                return
            pending.appendleft(job)  # the worker is gone; its "exit" message replaces it
            return
        w.submit(None)

    def handle(w: _Worker, message: tuple) -> None:
        kind = message[0]
        if kind == "frames":
            on_frames(message[1])
        elif kind == "result":
            w.job = None
            on_result(message[1])
            feed(w)
        elif kind == "error":
            raise message[1]
        elif kind == "bug":
            raise WorkerCrash(f"preprocessing {message[1]} failed in a worker process (a bug):\n{message[2]}")
        elif kind == "exit":
            pool.remove(w)
            code = w.proc.wait()
            _close(w)
            if w.job is not None:
                on_result(SequenceResult(key=w.job.key, error=f"its worker process died ({describe_exit(code)})"))
            if pending and len(pool) < workers:
                replacement = _Worker(events)
                pool.append(replacement)
                feed(replacement)

    try:
        for _ in range(min(workers, len(pending))):
            pool.append(_Worker(events))
        for w in list(pool):
            feed(w)
        while pool:
            try:
                w, message = events.get(timeout=0.5)
            except queue.Empty:
                continue
            handle(w, message)
    finally:
        _stop(pool)
        while True:  # results sent before the stop
            try:
                _, message = events.get_nowait()
            except queue.Empty:
                break
            if message[0] == "result":
                on_result(message[1])


# ----------------------------------------------------------------------------------------------- worker side


class _State:
    busy = False  # working on a job
    committing = False  # saving a finished shard and sending its result: a stop waits until both are done
    stop_requested = False
    stopper: threading.Thread | None = None


def _request_stop() -> None:
    """Stop (SIGTERM, the parent's death): the main thread stops after the crop it is writing; exit when idle.

    Nothing is raised from a signal handler (an exception raised inside a finalizer would be lost, and one
    raised while a temporary file is being created could leave it behind): the main thread checks the flag
    between crops, and a thread exits the process once the main thread is neither busy nor committing, or
    after ``STOP_GRACE_S`` / 2 in a long read (no temporary file is open then).
    """
    _State.stop_requested = True
    if _State.stopper is None:
        _State.stopper = threading.Thread(target=_exit_when_safe, daemon=True)
        _State.stopper.start()


def _on_sigterm(signum: int, frame: Any) -> None:
    _request_stop()


def _exit_when_safe() -> None:
    deadline = time.monotonic() + STOP_GRACE_S / 2
    while _State.committing or (_State.busy and time.monotonic() < deadline):
        time.sleep(0.02)
    sys.stderr.flush()
    os._exit(128 + int(signal.SIGTERM))


def _tick(channel: IO[bytes], n: int) -> None:
    """Progress of the main thread after each crop written: the safe point to stop at."""
    if _State.stop_requested:
        raise SystemExit(128 + int(signal.SIGTERM))
    _send(channel, ("frames", n))


def _read_jobs(stream: IO[bytes], jobs: queue.Queue) -> None:
    while True:
        try:
            job = _recv(stream)
        except (OSError, EOFError, pickle.UnpicklingError, struct.error):
            job = None
        jobs.put(job)
        if job is None:  # no more work, or the parent is gone
            if _State.busy:
                _request_stop()
            return


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(0.5)
    _request_stop()


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.name == "posix":
        if os.getppid() != parent_pid:  # the parent died before the death signal was armed
            os._exit(1)
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def worker_main(parent_pid: int) -> None:
    """Entry point of a worker process (see the module docstring); exits when there is no more work."""
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, not into the channel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _die_with_parent(parent_pid)
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    jobs: queue.Queue = queue.Queue()
    # A raw (unbuffered) reader: a daemon thread blocked in a buffered one aborts the interpreter's shutdown.
    stdin = io.FileIO(os.dup(0), "rb")
    threading.Thread(target=_read_jobs, args=(stdin, jobs), daemon=True).start()
    try:
        code = _serve(channel, jobs)
    except SystemExit as stop:  # stopped between two crops
        code = int(stop.code or 0)
    sys.stderr.flush()
    os._exit(code)  # skip the interpreter's slow teardown: the channel is flushed after every message


def _serve(channel: IO[bytes], jobs: queue.Queue) -> int:
    """Run jobs until there are no more (0), the parent is gone or a stop was asked for; the exit status."""
    while (job := jobs.get()) is not None:
        _State.busy = True
        try:
            shard, result = job.crop(lambda n: _tick(channel, n))
            _State.committing = True
            if shard is not None:
                job.save(shard, result)
            _send(channel, ("result", result))
        except BrokenPipeError:  # the parent is gone
            return 1
        except CtxposeError as e:
            _send(channel, ("error", e))
            return 1
        except Exception:
            _send(channel, ("bug", job.key, traceback.format_exc()))
            return 1
        finally:
            _State.busy = _State.committing = False
        if _State.stop_requested:
            return 128 + int(signal.SIGTERM)
    return 0
