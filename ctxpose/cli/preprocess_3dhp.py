"""``ctxpose preprocess 3dhp ROOT OUT``: the MPI-INF-3DHP test set -> undistorted square crops + labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ctxpose.cli.progress import preprocess_progress
from ctxpose.data.h36m.preprocess import PreprocessReport
from ctxpose.data.mpi_inf_3dhp.metadata import OFFICIAL_VALID_FRAMES
from ctxpose.data.mpi_inf_3dhp.preprocess import Preprocess3DHPOptions, check_options, preprocess_3dhp
from ctxpose.errors import DataError
from ctxpose.utils.io import atomic_write_text


def main(
    root: Annotated[Path, typer.Argument(help="mpi_inf_3dhp_test_set/ (with TS1..TS6) or its parent.",
                                         exists=True, file_okay=False)],
    out: Annotated[Path, typer.Argument(help="Processed folder to create or resume.")],
    image_size: Annotated[int, typer.Option(help="Crop side, px.")] = 384,
    jpeg_quality: Annotated[int, typer.Option(help="JPEG quality 0..100.")] = 95,
    margin: Annotated[float, typer.Option(help="Added on each side of the annot2 box, x its larger side.")] = 0.15,
    all_frames: Annotated[bool, typer.Option("--all-frames", help="Also crop frames that are not valid.")] = False,
    sequences: Annotated[str | None, typer.Option(help="Comma-separated, e.g. TS1,TS5 (default: all).")] = None,
    workers: Annotated[int, typer.Option(help="Parallel processes over sequences.")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be done, write nothing.")] = False,
) -> None:
    """Crop (one undistorting remap, TS5-6 undistorted), label and check the cameras of the 3DHP test set;
    resumable (finished sequences are skipped). Prints the annot3 -> annot2 projection residual per sequence.

    Example:

        ctxpose preprocess 3dhp ~/data/mpi_inf_3dhp_test_set data/3dhp_processed --workers 4

        ctxpose preprocess 3dhp /tmp/3dhp /tmp/3dhp_processed --image-size 128 --sequences TS1,TS5
    """
    names = tuple(s.strip() for s in sequences.split(",") if s.strip()) if sequences else None
    opts = Preprocess3DHPOptions(image_size=image_size, jpeg_quality=jpeg_quality, margin=margin,
                                 all_frames=all_frames, sequences=names, workers=workers, dry_run=dry_run)
    check_options(opts)
    console = Console()
    try:
        if dry_run:
            report = preprocess_3dhp(root, out, opts)
        else:
            with preprocess_progress(console, "preprocess 3dhp") as on_event:
                report = preprocess_3dhp(root, out, opts, progress=on_event)
        print_report(console, report, dry_run)
        if dry_run:
            return
        atomic_write_text(out / "preprocess_report.json", json.dumps(report.to_dict(), indent=1))
    except OSError as e:  # the manifest or labels could not be written (full disk, read-only, ...)
        raise DataError(f"{e.filename or out}: cannot write ({e.strerror or e}); finished sequences are kept") from None
    if not report.ok:
        raise typer.Exit(code=1)


def print_report(console: Console, report: PreprocessReport, dry_run: bool) -> None:
    """One row per sequence: status, kept (valid) frames, the release's valid count, projection residual."""
    table = Table(title="preprocess 3dhp" + (" (dry run)" if dry_run else ""),
                  caption="residual: |project(annot3) - annot2| over valid frames and joints, px")
    for col in ("sequence", "status", "frames", "valid", "release valid", "residual median", "residual max"):
        table.add_column(col, justify="left" if col in ("sequence", "status") else "right")
    done = {r.key: r for r in report.done}
    planned = {p["sequence"]: p for p in report.planned}
    for seq in sorted({*done, *planned, *report.skipped, *report.absent, *report.failed}):
        r = done.get(seq)
        status = ("done" if r else "[red]failed[/red]" if seq in report.failed else "already done"
                  if seq in report.skipped else "absent" if seq in report.absent else "planned")
        frames = str(r.frames_written) if r else str(planned[seq]["frames"]) if seq in planned else ""
        res = r.residual_px if r else {}
        table.add_row(seq, status, frames, str(r.valid_frames) if r else "", str(OFFICIAL_VALID_FRAMES[seq]),
                      f"{res['median']:.3f}" if res else "", f"{res['max']:.3f}" if res else "")
    console.print(table)
    for key, error in report.failed.items():
        console.print(f"[red]failed[/red] {key}: {error}", highlight=False, soft_wrap=True)
    if report.labels_path:
        console.print(f"{report.rows} label rows in {report.labels_path}")
