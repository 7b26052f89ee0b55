"""The stop-request handlers: a repeat within the grace period is the same request, a later one escalates.

Real signals are sent to this process; the clock the handlers read is replaced so no test waits.
"""

from __future__ import annotations

import os
import signal

import pytest

from ctxpose.engine import dist
from ctxpose.engine import signals as S


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    c = _Clock()
    monkeypatch.setattr(S.time, "monotonic", c)
    return c


def _send(sig: int) -> None:
    os.kill(os.getpid(), sig)  # the Python handler runs before the next statement of the main thread


def test_graceful_stop_records_the_first_ignores_repeats_and_escalates_later(clock: _Clock) -> None:
    before = signal.getsignal(signal.SIGINT)
    with S.GracefulStop() as stop:
        assert not stop.requested
        _send(signal.SIGTERM)
        assert stop.requested and stop.signal == signal.SIGTERM
        clock.now += S.REPEAT_GRACE_S - 0.1
        _send(signal.SIGINT)  # the elastic agent's forwarded copy, the terminal's group-wide Ctrl-C
        assert stop.signal == signal.SIGTERM
        clock.now += 0.2
        with pytest.raises(KeyboardInterrupt, match="SIGINT again"):
            _send(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_agent_stop_forwards_the_first_and_kills_the_workers_on_a_later_one(
        clock: _Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    monkeypatch.setattr(dist, "_signal_children", sent.append)
    before = signal.getsignal(signal.SIGTERM)
    with dist._AgentStop() as stop:
        _send(signal.SIGINT)
        assert sent == [signal.SIGINT] and stop.signal == signal.SIGINT
        clock.now += 1.0
        _send(signal.SIGINT)
        assert sent == [signal.SIGINT]
        clock.now += S.REPEAT_GRACE_S
        with pytest.raises(KeyboardInterrupt, match="workers were killed"):
            _send(signal.SIGTERM)
        assert sent == [signal.SIGINT, signal.SIGKILL]
    assert signal.getsignal(signal.SIGTERM) is before
