"""``ctxpose synthesize 3dhp OUT``: a small synthetic MPI-INF-3DHP test set in the release's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctxpose.cli.options import comma_list


def main(
    out: Annotated[Path, typer.Argument(help="Destination; the sequences go to OUT/mpi_inf_3dhp_test_set/.")],
    sequences: Annotated[str | None, typer.Option(
        show_default=False, help="Comma-separated, e.g. TS1,TS5 (default: all six, TS1..TS6).")] = None,
    frames: Annotated[int, typer.Option(help="Annotated frames per sequence (>= 9: all 7 activities).")] = 21,
    size: Annotated[int | None, typer.Option(help="Image width, px (default: real 2048 / 1920).")] = None,
    seed: Annotated[int, typer.Option(help="Motion and texture seed.")] = 0,
) -> None:
    """Render a walking body through the real 3DHP test cameras (GoPro distortion for TS5-6) into
    imageSequence/img_%06d.jpg and MATLAB v7.3 annot_data.mat files (annot2, annot3, univ_annot3,
    valid_frame with a few invalid frames, all 7 activities).

    Example:

        ctxpose synthesize 3dhp /tmp/3dhp --size 512 --frames 21

        ctxpose preprocess 3dhp /tmp/3dhp /tmp/3dhp_processed --image-size 128
    """
    from rich.console import Console
    from rich.progress import Progress

    from ctxpose.data.mpi_inf_3dhp.metadata import SEQUENCES
    from ctxpose.data.mpi_inf_3dhp.synthesize import synthesize_3dhp
    from ctxpose.errors import DataError

    names = comma_list(sequences) or SEQUENCES
    console = Console()
    try:
        with Progress(console=console) as bar:
            task = bar.add_task("synthesize 3dhp", total=len(names))
            report = synthesize_3dhp(out, names, n_frames=frames, size=size, seed=seed,
                                     progress=lambda name: bar.advance(task))
    except ValueError as e:
        raise DataError(str(e)) from None
    except OSError as e:
        raise DataError(f"{e.filename or out}: cannot write ({e.strerror or e})") from None
    console.print(f"[green]wrote[/green] {len(report.sequences)} sequences, {len(report.files)} files to "
                  f"{report.test_set}")
