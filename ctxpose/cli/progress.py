"""The progress bar of the ``preprocess`` commands, driven by their ``progress(event, info)`` callbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextmanager
def preprocess_progress(console: Console, title: str) -> Iterator[Callable[[str, dict], None]]:
    """A bar with crops/s and the time left; yields the callback for ``preprocess_*(..., progress=)``.

    Events: "plan" {"frames"} sets the total, "frames" {"n"} advances, "done"/"failed" {"unused"} shrink
    the total by crops that will not be made; "failed" also prints its {"key", "error"} line.
    """
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
            elif event in ("done", "failed"):
                if state.total is not None and info.get("unused"):
                    bar.update(task, total=max(state.total - info["unused"], state.completed))
                if event == "failed":
                    console.print(f"[red]failed[/red] {info['key']}: {info['error']}", highlight=False)

        yield on_event
