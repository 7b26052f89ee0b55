"""The preprocessing runner's worker loop and a stop signal: a Ctrl-C never lands inside ``concurrent.futures``.

A stop raised inside ``concurrent.futures.wait`` while it holds a future's lock left that lock taken; the
executor's shutdown then waited for ever (seen as a ``preprocess 3dhp --workers 2`` that did not stop). The
loop holds a stop through each pass; the signal here is sent from inside ``wait`` itself, so the test does not
depend on timing.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass

import pytest

from ctxpose.data.preprocessing import SequenceResult, run_in_workers
from ctxpose.errors import Stopped
from ctxpose.utils.signals import StopSignals

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="POSIX signals")


@dataclass(frozen=True)
class SlowJob:
    """A sequence that takes ``seconds`` in its worker and writes nothing."""

    key: str
    seconds: float = 20.0
    planned_crops: int = 1

    def crop(self, progress):
        time.sleep(self.seconds)
        return None, SequenceResult(key=self.key)

    def save(self, shard, result) -> None:
        raise AssertionError("nothing to save")


def test_a_stop_during_the_wait_for_workers_acts_after_it_and_the_workers_end(monkeypatch) -> None:
    real_wait, calls = concurrent.futures.wait, []

    def wait_with_a_ctrl_c(fs, timeout=None, return_when=concurrent.futures.ALL_COMPLETED):
        if not calls:
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs at the next bytecode, still in here
            time.sleep(0.05)
        calls.append("finished")  # not reached when the stop is raised in here
        return real_wait(fs, timeout=timeout, return_when=return_when)

    monkeypatch.setattr(concurrent.futures, "wait", wait_with_a_ctrl_c)
    start = time.monotonic()
    with pytest.raises(Stopped), StopSignals("stopped", at_once=True):
        run_in_workers([SlowJob("a"), SlowJob("b"), SlowJob("c")], 2, lambda n: None,
                       lambda job, shard, result: pytest.fail(f"{job.key} finished"))
    assert calls == ["finished"]  # the stop acted after the wait, not inside concurrent.futures
    assert time.monotonic() - start < 15  # the workers were stopped, not waited for (each sleeps 20 s)
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]
