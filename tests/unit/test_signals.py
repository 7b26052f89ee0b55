"""The program's one handler of SIGINT/SIGTERM: a repeat within the grace period is the same request, a later one
stops at once; the launcher's copy passes each signal on to its worker processes and kills them when it escalates.

Real signals are sent to this process (and to real child processes); the clock the handler reads is replaced so no
test waits.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from ctxpose.errors import Stopped
from ctxpose.utils import signals as S


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


def test_the_first_signal_is_recorded_repeats_ignored_a_later_one_stops_at_once(clock: _Clock) -> None:
    before = signal.getsignal(signal.SIGINT)
    with S.StopSignals() as stop:
        assert not stop.requested
        _send(signal.SIGTERM)
        assert stop.requested and stop.signal == signal.SIGTERM and not stop.escalated
        clock.now += S.REPEAT_GRACE_S - 0.1
        _send(signal.SIGINT)  # the launcher's forwarded copy, the terminal's group-wide Ctrl-C
        assert stop.signal == signal.SIGTERM and not stop.escalated
        clock.now += 0.2
        with pytest.raises(Stopped, match="^SIGINT again: stopped at once$"):
            _send(signal.SIGINT)
        assert stop.escalated
    assert signal.getsignal(signal.SIGINT) is before


def _sleeper() -> multiprocessing.Process:
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), daemon=True)
    child.start()
    return child


def test_forwarding_passes_signals_to_the_workers_and_kills_them_when_it_escalates(clock: _Clock) -> None:
    first = _sleeper()
    with S.StopSignals(forward=True) as stop:
        _send(signal.SIGTERM)
        first.join(30)
        assert first.exitcode == -signal.SIGTERM and stop.requested  # a sleeping child dies of SIGTERM
        second = _sleeper()
        clock.now += S.REPEAT_GRACE_S + 0.1
        with pytest.raises(Stopped, match="SIGINT again: stopped at once, the workers were killed"):
            _send(signal.SIGINT)
        second.join(30)
        assert second.exitcode == -signal.SIGKILL


def test_workers_can_leave_both_signals_to_their_parent() -> None:
    saved = {sig: signal.getsignal(sig) for sig in S.SIGNALS}
    try:
        S.StopSignals.ignore()
        _send(signal.SIGINT)
        _send(signal.SIGTERM)  # nothing happens: this test goes on
        assert all(signal.getsignal(sig) is signal.SIG_IGN for sig in S.SIGNALS)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_at_once_the_first_signal_stops_where_it_lands_and_a_repeat_is_the_same_stop(clock: _Clock) -> None:
    with S.StopSignals("kept what was finished", at_once=True) as stop:
        with pytest.raises(Stopped, match="^kept what was finished$"):
            _send(signal.SIGTERM)
        assert stop.requested and stop.signal == signal.SIGTERM
        clock.now += S.REPEAT_GRACE_S - 0.1
        _send(signal.SIGINT)  # the same stop (a group-wide Ctrl-C's second copy): the cleanup goes on
        clock.now += 0.2
        with pytest.raises(Stopped, match="^SIGINT again: stopped at once$"):
            _send(signal.SIGINT)


def test_a_held_block_finishes_before_the_signal_acts() -> None:
    steps = []
    with S.StopSignals(at_once=True):
        with pytest.raises(Stopped):
            with S.StopSignals.held():
                _send(signal.SIGINT)
                steps.append("the block went on")
        assert steps == ["the block went on"]
    with S.StopSignals(at_once=True):  # a block that fails: its own error goes on, not the held stop
        with pytest.raises(ValueError, match="the block's own error"):
            with S.StopSignals.held():
                _send(signal.SIGINT)
                raise ValueError("the block's own error")
    with S.StopSignals.held():  # no instance entered: nothing is held, nothing is installed
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_child_started_meanwhile_starts_ignoring_ctrl_c() -> None:
    before = signal.getsignal(signal.SIGINT)
    with S.StopSignals.starting_child():
        seen = subprocess.run([sys.executable, "-c", "import signal; print(int(signal.getsignal(signal.SIGINT)))"],
                              capture_output=True, text=True, check=True).stdout.strip()
    assert seen == str(int(signal.SIG_IGN)) and signal.getsignal(signal.SIGINT) is before
