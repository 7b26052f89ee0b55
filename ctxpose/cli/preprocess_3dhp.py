"""``ctxpose preprocess 3dhp ROOT OUT``: the MPI-INF-3DHP test set -> undistorted square crops + labels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ctxpose.cli.options import CropSizeOpt, DryRunOpt, JpegQualityOpt, ProcessedOutArg, WorkersOpt, comma_list

if TYPE_CHECKING:
    from rich.console import Console

    from ctxpose.data.preprocessing import PreprocessReport


def main(
    root: Annotated[Path, typer.Argument(help="mpi_inf_3dhp_test_set/ (with TS1..TS6) or its parent.",
                                         exists=True, file_okay=False)],
    out: ProcessedOutArg,
    image_size: CropSizeOpt = 384,
    jpeg_quality: JpegQualityOpt = 95,
    margin: Annotated[float, typer.Option(help="Added on each side of the annot2 box, x its larger side.")] = 0.15,
    all_frames: Annotated[bool, typer.Option("--all-frames", help="Also crop frames that are not valid.")] = False,
    sequences: Annotated[str | None, typer.Option(help="Comma-separated, e.g. TS1,TS5 (default: all).")] = None,
    workers: WorkersOpt = 1,
    dry_run: DryRunOpt = False,
) -> None:
    """Crop (one undistorting remap, TS5-6 undistorted), label and check the cameras of the 3DHP test set;
    resumable (finished sequences are skipped, Ctrl-C keeps them). Prints the annot3 -> annot2 projection
    residual per sequence.

    Example:

        ctxpose preprocess 3dhp ~/data/mpi_inf_3dhp_test_set data/3dhp_processed --workers 4

        ctxpose preprocess 3dhp /tmp/3dhp /tmp/3dhp_processed --image-size 128 --sequences TS1,TS5
    """
    from rich.console import Console

    from ctxpose.cli.progress import preprocess_progress
    from ctxpose.data.mpi_inf_3dhp.preprocess import Preprocess3DHPOptions, check_options, preprocess_3dhp

    names = comma_list(sequences)
    opts = Preprocess3DHPOptions(image_size=image_size, jpeg_quality=jpeg_quality, margin=margin,
                                 all_frames=all_frames, sequences=names, workers=workers, dry_run=dry_run)
    check_options(opts)
    console = Console()
    if dry_run:
        print_report(console, preprocess_3dhp(root, out, opts), dry_run)
        return
    with preprocess_progress(console, "preprocess 3dhp") as on_event:
        report = preprocess_3dhp(root, out, opts, progress=on_event)
    print_report(console, report, dry_run)
    if not report.ok:
        raise typer.Exit(code=1)


def print_report(console: Console, report: PreprocessReport, dry_run: bool) -> None:
    """One row per sequence: status, kept (valid) frames, the release's valid count, projection residual.

    Failures are not repeated here: the progress bar printed each one as it happened.
    """
    from rich.table import Table

    from ctxpose.data.mpi_inf_3dhp.metadata import OFFICIAL_VALID_FRAMES
    from ctxpose.data.preprocessing import REPORT_NAME

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
    if report.labels_path:
        console.print(f"{report.rows} label rows in {report.labels_path}; report: "
                      f"{report.labels_path.parent / REPORT_NAME}")
