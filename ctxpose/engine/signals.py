"""Ctrl-C and SIGTERM as a request to stop at the next safe point (after the current training step).

A run stopped between steps can be checkpointed exactly (weights, optimiser, batch-norm statistics and
random streams of the last completed step), so a resumed run continues bit-for-bit. A signal that
arrives within :data:`REPEAT_GRACE_S` of the first counts as the same request: a terminal's Ctrl-C
reaches every process of the foreground group and the elastic agent forwards it once more, and
``timeout`` signals the whole group. A signal after that stops at once (``KeyboardInterrupt``),
keeping only the last checkpoint written.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType, TracebackType
from typing import Any

logger = logging.getLogger(__name__)

REPEAT_GRACE_S = 2.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Context manager: while active, SIGINT/SIGTERM set :attr:`requested` instead of interrupting.

    Outside the main thread (signal handlers cannot be installed there) it is inert.
    """

    def __init__(self, message: str = "stopping after the current step") -> None:
        self.message = message
        self.requested = False
        self.signal: int | None = None
        self._first: float | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first, self.requested, self.signal = now, True, signum
            self._on_first(signum)
        elif now - self._first > REPEAT_GRACE_S:
            self._on_again(signum)

    def _on_first(self, signum: int) -> None:
        """The first signal (and its repeats within :data:`REPEAT_GRACE_S`): only recorded, and announced."""
        logger.warning("%s received: %s (press Ctrl-C again to stop at once, losing the current step)",
                       signal.Signals(signum).name, self.message)

    def _on_again(self, signum: int) -> None:
        """A signal later than :data:`REPEAT_GRACE_S` after the first: stop at once."""
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopping at once")

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
