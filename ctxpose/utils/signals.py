"""SIGINT and SIGTERM for the whole program: one class, :class:`StopSignals`.

While it is active the first signal is a request to stop at the next safe point (after the current training step,
before the next evaluation batch), so finished work is kept. A repeat within :data:`REPEAT_GRACE_S` is the same
request: a terminal's Ctrl-C and ``timeout`` signal every process of the group, and the launcher passes its copy
on to its workers as well. A signal after that stops at once with :class:`ctxpose.errors.Stopped`. Worker
processes that only compute for a parent (data loader workers) ignore both signals: :meth:`StopSignals.ignore`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from types import FrameType, TracebackType
from typing import Any

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

    Attributes:
        requested: a signal arrived. signal: the first one's number. escalated: a later one stopped at once.

    Outside the main thread (signal handlers cannot be installed there) it is inert.
    """

    def __init__(self, message: str = "stopping after the current step", *, forward: bool = False) -> None:
        self.message, self.forward = message, forward
        self.requested, self.escalated = False, False
        self.signal: int | None = None
        self._first: float | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now, name = time.monotonic(), signal.Signals(signum).name
        if self._first is None:
            self._first, self.requested, self.signal = now, True, signum
            self._pass_on(signum)
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
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @staticmethod
    def ignore() -> None:
        """In a worker process that computes for a parent: leave SIGINT/SIGTERM to the parent, which stops it.

        A terminal's Ctrl-C reaches the whole process group; a data loader worker that died of it would make its
        parent's next batch fail ("DataLoader worker exited unexpectedly") instead of letting it stop cleanly.
        """
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
