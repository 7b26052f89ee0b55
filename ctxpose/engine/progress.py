"""Rich progress bars for training and evaluation (shown by rank 0, on stderr)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@cache
def stderr_console() -> Console:
    """The console progress bars and log lines share (stderr, so stdout stays for results)."""
    return Console(stderr=True)


@contextlib.contextmanager
def train_progress(enabled: bool = True) -> Iterator[Callable[[int, int, dict[str, float]], None] | None]:
    """A bar of steps with the loss, samples/s and the time left; yields the trainer's ``progress`` callback."""
    if not enabled:
        yield None
        return
    columns = [TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[sps]:.1f} samples/s"),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]
    state: dict[str, Any] = {}
    with Progress(*columns, console=stderr_console(), transient=False) as bar:

        def update(step: int, total: int, scalars: dict[str, float]) -> None:
            if "task" not in state:  # a resumed run starts its bar where it left off
                state["task"] = bar.add_task("train", total=total, completed=step - 1, loss=float("nan"), sps=0.0)
            fields = {"sps": scalars.get("samples_per_s", 0.0)}
            if "loss/total" in scalars:
                fields["loss"] = scalars["loss/total"]
            bar.update(state["task"], completed=step, total=total, **fields)

        yield update


@contextlib.contextmanager
def eval_progress(enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """A bar of evaluation batches; yields the evaluator's ``progress`` callback."""
    if not enabled:
        yield None
        return
    columns = [TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=stderr_console()) as bar:
        task = bar.add_task("eval", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
