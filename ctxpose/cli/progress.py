"""The progress bar of the ``preprocess`` commands, driven by their ``progress(event, info)`` callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@contextmanager
def preprocess_progress(console: Console, title: str) -> Iterator[Callable[[str, dict], None]]:
    """A bar with crops/s and the time left; yields the callback for ``preprocess_*(..., progress=)``.

    Events: "plan" {"frames"} sets the total, "frames" {"n"} advances, "done" {"unused"} shrinks the total by
    crops that will not be made; "failed" prints its {"key", "error"} line, once, as it happens. A stop
    (:class:`ctxpose.errors.Stopped`, Ctrl-C or SIGTERM) in the block stops the bar and prints its message (what
    was kept, how to continue) as a "stopped:" line; the command then exits 130.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ctxpose.errors import Stopped

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(title, total=None, rate="")

        def on_event(event: str, info: dict) -> None:
            state = bar.tasks[0]
            if event == "plan":
                bar.update(task, total=info["frames"])
            elif event == "frames":
                bar.advance(task, info["n"])
                bar.update(task, rate=f"{state.speed:6.1f} crops/s" if state.speed else "")
            elif event == "done":
                if state.total is not None and info.get("unused"):
                    bar.update(task, total=max(state.total - info["unused"], state.completed))
            elif event == "failed":  # printed once, here; the final table only counts them
                console.print(f"[red]failed[/red] {info['key']}: {info['error']}", highlight=False, soft_wrap=True)

        try:
            yield on_event
        except Stopped as stop:
            bar.stop()
            console.print(f"[yellow]stopped:[/yellow] {stop}", highlight=False, soft_wrap=True)
            raise Stopped("preprocessing stopped", report=stop.report) from None  # said once, here
