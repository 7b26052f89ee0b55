"""``ctxpose synthesize h36m OUT``: a small synthetic raw Human3.6M dataset (demo and tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctxpose.cli.options import comma_list
from ctxpose.cli.synthesize_3dhp import main as synthesize_3dhp_main
from ctxpose.data.h36m.metadata import DEFAULT_ACTIONS, DEFAULT_SUBJECTS, MAX_SIZE, MIN_SIZE

app = typer.Typer(help="Write synthetic raw datasets in the official layouts (for the demo and the tests).\n\n"
                       "Example: ctxpose synthesize h36m /tmp/h36m_raw --size 500 --frames 20",
                  no_args_is_help=True)
app.command("3dhp")(synthesize_3dhp_main)


@app.command()
def h36m(
    out: Annotated[Path, typer.Argument(help="Destination folder (raw Human3.6M layout).")],
    subjects: Annotated[str, typer.Option(help="Comma-separated subjects.")] = ",".join(DEFAULT_SUBJECTS),
    actions: Annotated[str, typer.Option(help="Comma-separated sequences or actions.")] = ",".join(DEFAULT_ACTIONS),
    frames: Annotated[int, typer.Option(help="Pose frames per sequence (>= 1).")] = 30,
    size: Annotated[int | None, typer.Option(
        help=f"Frame width, px, {MIN_SIZE}..{MAX_SIZE} (default: real 1000x1002/1000x1000).")] = None,
    seed: Annotated[int, typer.Option(help="Motion and texture seed (>= 0).")] = 0,
    archives: Annotated[bool, typer.Option("--archives", help="Pack as the official .tgz archives.")] = False,
) -> None:
    """Render a walking 32-joint body through the real Human3.6M cameras into CDF poses, MP4 videos and
    MATLAB v7.3 masks, in the raw layout `ctxpose preprocess h36m` reads.

    Example:

        ctxpose synthesize h36m /tmp/h36m_raw --size 500 --frames 20 --archives

        ctxpose preprocess h36m /tmp/h36m_raw /tmp/h36m_processed
    """
    from rich.console import Console
    from rich.progress import Progress

    from ctxpose.data.h36m.synthesize import select_sequences, synthesize_h36m

    subject_list = list(comma_list(subjects) or ())
    action_list = list(comma_list(actions) or ())
    total = len(select_sequences(subject_list, action_list))
    console = Console()
    with Progress(console=console) as bar:
        task = bar.add_task("synthesize h36m", total=total)
        report = synthesize_h36m(out, subject_list, action_list, n_frames=frames, size=size, seed=seed,
                                 archives=archives, progress=lambda key: bar.advance(task))
    console.print(f"[green]wrote[/green] {len(report.sequences)} sequences, {len(report.files)} files to {out}")
