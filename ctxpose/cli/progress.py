"""The progress bar of the ``preprocess`` commands, driven by their ``progress(event, info)`` callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@contextmanager
def preprocess_progress(console: Console, title: str, out: Path) -> Iterator[Callable[[str, dict], None]]:
    """A bar with crops/s and the time left; yields the callback for ``preprocess_*(..., progress=)``.

    Events: "plan" {"frames"} sets the total, "frames" {"n"} advances, "done" {"unused"} shrinks the total by
    crops that will not be made; "failed" prints its {"key", "error"} line, once, as it happens. A Ctrl-C
    (:class:`ctxpose.data.preprocessing.PreprocessInterrupted`) in the block stops the bar and prints what
    was kept in ``out`` before it is re-raised (exit 130).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ctxpose.data.preprocessing import MANIFEST_NAME, PreprocessInterrupted

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
        except PreprocessInterrupted as stop:
            bar.stop()
            done = len(stop.report.done)
            console.print(f"[yellow]stopped:[/yellow] {done} sequence{' is' if done == 1 else 's are'} finished in "
                          f"this run and recorded in {out / MANIFEST_NAME}; run the same command again to continue",
                          highlight=False, soft_wrap=True)
            raise
