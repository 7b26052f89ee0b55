"""SIGINT and SIGTERM for the whole program: one class, :class:`StopSignals`.

While it is active the first signal is a request to stop at the next safe point (after the current training step,
before the next evaluation batch), so finished work is kept. A repeat within :data:`REPEAT_GRACE_S` is the same
request: a terminal's Ctrl-C and ``timeout`` signal every process of the group, and the launcher passes its copy
on to its workers as well. A signal after that stops at once with :class:`ctxpose.errors.Stopped`. With
``at_once`` (work that keeps each finished piece as it goes: preprocessing, and the command line as a whole) the
first signal raises ``Stopped`` where it lands; :meth:`StopSignals.held` holds a signal until a block that must not
be cut (a shard and its manifest entry, a crop file) ends. Worker processes that only compute for a parent (data
loader workers) ignore both signals (:meth:`StopSignals.ignore`); those the parent stops with SIGTERM exit at once,
or right after a held block (:meth:`StopSignals.worker`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any, ClassVar

from ctxpose.errors import Stopped

logger = logging.getLogger(__name__)

REPEAT_GRACE_S = 2.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Context manager: while active, SIGINT/SIGTERM set :attr:`requested`; a later signal raises ``Stopped``.

    Args:
        message: what the first signal announces (a warning).
        forward: pass every signal on to this process's ``multiprocessing`` children (the launcher's workers, which
            stop on their own); the escalating signal kills them (SIGKILL) before ``Stopped`` is raised.
        at_once: the first signal raises ``Stopped(message)`` where it lands (inside :meth:`held`: when the block
            ends), for work whose finished pieces are already kept; a repeat within the grace period is ignored.

    Attributes:
        requested: a signal arrived. signal: the first one's number. escalated: a later one stopped at once.

    Outside the main thread (signal handlers cannot be installed there) it is inert.
    """

    _active: ClassVar[list[StopSignals]] = []  # the entered instances of this process, innermost last

    def __init__(self, message: str = "stopping after the current step", *, forward: bool = False,
                 at_once: bool = False) -> None:
        self.message, self.forward, self.at_once = message, forward, at_once
        self.requested, self.escalated = False, False
        self.signal: int | None = None
        self._first: float | None = None
        self._previous: dict[int, Any] = {}
        self._exit = False  # a worker's: a signal ends the process (worker())
        self._holding = 0
        self._held: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._holding:
            self._held = signum if self._held is None else self._held
        else:
            self._act(signum)

    def _act(self, signum: int) -> None:
        if self._exit:
            os._exit(128 + signum)
        now, name = time.monotonic(), signal.Signals(signum).name
        if self._first is None:
            self._first, self.requested, self.signal = now, True, signum
            self._pass_on(signum)
            if self.at_once:
                raise Stopped(self.message)
            logger.warning("%s received: %s (press Ctrl-C again to stop at once, losing the current step)", name,
                           self.message)
        elif now - self._first > REPEAT_GRACE_S:
            self.escalated = True
            self._pass_on(signal.SIGKILL)
            raise Stopped(f"{name} again: stopped at once" + (", the workers were killed" if self.forward else ""))

    def _pass_on(self, signum: int) -> None:
        if self.forward:
            for child in multiprocessing.active_children():
                try:
                    os.kill(child.pid, signum)  # type: ignore[arg-type]
                except (ProcessLookupError, TypeError):
                    pass

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
            StopSignals._active.append(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._previous:
            StopSignals._active.remove(self)
        self._previous.clear()

    @classmethod
    @contextlib.contextmanager
    def held(cls) -> Iterator[None]:
        """Hold a signal that arrives in the block until the block ends, then act on it (in the main thread, with
        an instance entered; otherwise nothing is held). If the block raises, its exception goes on (a worker
        still exits)."""
        stop = cls._active[-1] if cls._active and threading.current_thread() is threading.main_thread() else None
        if stop is None:
            yield
            return
        stop._holding += 1
        try:
            yield
        except BaseException:
            stop._release(act=stop._exit)
            raise
        stop._release(act=True)

    def _release(self, act: bool) -> None:
        self._holding -= 1
        if not self._holding and self._held is not None:
            signum, self._held = self._held, None
            if act:
                self._act(signum)

    @classmethod
    def worker(cls) -> StopSignals:
        """In a worker process its parent stops with SIGTERM (also sent by the kernel when the parent dies, with
        ``PR_SET_PDEATHSIG``): SIGINT is left to the parent (ignored, as in :meth:`ignore`); SIGTERM ends the
        process at once with status 128 + 15, or right after a :meth:`held` block (a crop file is completed, no
        temporary file is left). Stays for the life of the process."""
        stop = cls()
        stop._exit = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, stop._handle)
        cls._active.append(stop)
        return stop

    @staticmethod
    @contextlib.contextmanager
    def starting_child() -> Iterator[None]:
        """While a child process is started (main thread): SIGINT ignored, so the new interpreter starts ignoring
        it until it sets its own handlers (:meth:`worker`), and a Ctrl-C to the process group cannot cut its
        start-up short with a traceback. A Ctrl-C in that moment is lost (the user presses again)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            if previous is not None:  # None: a handler not set from Python, which cannot be put back
                signal.signal(signal.SIGINT, previous)

    @staticmethod
    def ignore() -> None:
        """In a worker process that computes for a parent: leave SIGINT/SIGTERM to the parent, which stops it.

        A terminal's Ctrl-C reaches the whole process group; a data loader worker that died of it would make its
        parent's next batch fail ("DataLoader worker exited unexpectedly") instead of letting it stop cleanly.
        """
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
