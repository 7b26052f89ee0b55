"""``ctxpose preprocess h36m RAW OUT``: raw Human3.6M -> cropped, undistorted images + labels."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from ctxpose.cli.options import CropSizeOpt, DryRunOpt, JpegQualityOpt, ProcessedOutArg, WorkersOpt, comma_list
from ctxpose.cli.preprocess_3dhp import main as preprocess_3dhp_main
from ctxpose.skeleton import SKELETONS

if TYPE_CHECKING:
    from rich.console import Console

    from ctxpose.data.preprocessing import PreprocessReport

app = typer.Typer(help="Turn raw datasets into processed folders (crops + labels).\n\n"
                       "Example: ctxpose preprocess h36m ~/h36m_raw data/human36m/processed --workers 8",
                  no_args_is_help=True)
app.command("3dhp")(preprocess_3dhp_main)

ListOpt = Annotated[str | None, typer.Option(help="Comma-separated filter, e.g. S1,S5 (default: all present).")]
SkeletonName = enum.Enum("SkeletonName", {name: name for name in SKELETONS}, type=str)  # type: ignore[misc]


@app.command()
def h36m(
    raw: Annotated[Path, typer.Argument(help="Folder with the official .tgz archives and/or extracted S*/ folders.",
                                        exists=True, file_okay=False)],
    out: ProcessedOutArg,
    image_size: CropSizeOpt = 384,
    jpeg_quality: JpegQualityOpt = 95,
    train_every: Annotated[int, typer.Option(help="Keep every n-th frame of training subjects (1 = all).")] = 5,
    test_every: Annotated[int, typer.Option(help="Keep every n-th frame of test subjects (1 = all).")] = 5,
    all_frames: Annotated[bool, typer.Option("--all-frames", help="Keep every frame (both splits).")] = False,
    selection: Annotated[Literal["stride", "original"], typer.Option(
        help="Every n-th frame (stride), or the original's frames (original), so the released pelvis estimates "
             "line up.")] = "stride",
    bbox_source: Annotated[Literal["auto", "masks", "poses"], typer.Option(
        help="Boxes from the ground-truth masks, the projected poses, or auto (masks, else poses).")] = "auto",
    bbox_scale: Annotated[float, typer.Option(help="Scale of the square box (ContextPose: 1.0).")] = 1.0,
    skeleton: Annotated[SkeletonName, typer.Option(
        help="Joint order of the labels and bones of the limb prior (the config's model.skeleton).")] = (
        SkeletonName("contextpose17")),
    subjects: ListOpt = None,
    actions: Annotated[str | None, typer.Option(help="Comma-separated, e.g. Walking,Directions-1.")] = None,
    cameras: Annotated[str | None, typer.Option(help="Comma-separated camera ids, e.g. 54138969.")] = None,
    workers: WorkersOpt = 1,
    cameras_file: Annotated[Path | None, typer.Option(help="una-dinosauria cameras.h5 override.",
                                                      exists=True, dir_okay=False)] = None,
    extract_dir: Annotated[Path | None, typer.Option(help="Where archive members go (default OUT/.raw).")] = None,
    keep_extracted: Annotated[bool, typer.Option(help="Keep extracted archive members.")] = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Crop, undistort and label Human3.6M; resumable (finished sequences are skipped, Ctrl-C keeps them).

    Example:

        ctxpose preprocess h36m ~/h36m_raw data/human36m --workers 8

        ctxpose preprocess h36m ~/h36m_raw data/h36m_s1 --subjects S1 --actions Walking --dry-run

        ctxpose preprocess h36m ~/h36m_raw data/human36m_original --selection original --workers 8
    """
    from rich.console import Console

    from ctxpose.cli.progress import preprocess_progress
    from ctxpose.data.h36m.preprocess import PreprocessOptions, check_options, preprocess_h36m

    every = (1, 1) if all_frames else (train_every, test_every)
    opts = PreprocessOptions(
        image_size=image_size, jpeg_quality=jpeg_quality, train_every=every[0], test_every=every[1],
        selection=selection, bbox_source=bbox_source, bbox_scale=bbox_scale, skeleton=SkeletonName(skeleton).value,
        subjects=comma_list(subjects), actions=comma_list(actions), cameras=comma_list(cameras), workers=workers,
        cameras_file=cameras_file, extract_dir=extract_dir, keep_extracted=keep_extracted, dry_run=dry_run)
    check_options(opts)
    console = Console()
    if dry_run:
        _print_plan(console, preprocess_h36m(raw, out, opts))
        return
    with preprocess_progress(console, "preprocess h36m") as on_event:
        report = preprocess_h36m(raw, out, opts, progress=on_event)
    _print_report(console, report, out)
    if not report.ok:
        raise typer.Exit(code=1)


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _print_plan(console: Console, report: PreprocessReport) -> None:
    from rich.table import Table

    table = Table(title="would process",
                  caption="frames counted in the pose files; 'official count' where the pose file is still in an "
                          "archive (archives are not opened); ? = chosen by motion (--selection original), known "
                          "once the poses are read")
    for col in ("sequence", "cameras", "frames", "crops", "frames from"):
        table.add_column(col)
    for p in report.planned:
        table.add_row(p["sequence"], ",".join(p["cameras"]), _count(p["frames"]), _count(p["crops"]), p["frames_from"])
    console.print(table)
    known = [p["crops"] for p in report.planned if p["crops"] is not None]
    more = " and ? by motion" if len(known) < len(report.planned) else ""
    console.print(f"{len(report.planned)} to do, {sum(known)} crops{more}; "
                  f"{len(report.skipped)} already done, {len(report.absent)} not in this download")


def _print_report(console: Console, report: PreprocessReport, out: Path) -> None:
    from rich.table import Table

    from ctxpose.data.preprocessing import REPORT_NAME

    table = Table(title="preprocess h36m")
    for col in ("status", "count", "crops", "MB"):
        table.add_column(col)
    table.add_row("sequences done", str(len(report.done)), str(report.frames_written),
                  f"{report.bytes_written / 1e6:.1f}")
    table.add_row("skipped (already done)", str(len(report.skipped)), "", "")
    table.add_row("not in this download", str(len(report.absent)), "", "")
    table.add_row("[red]failed[/red] (listed above)" if report.failed else "failed", str(len(report.failed)), "", "")
    console.print(table)
    if report.labels_path:
        rate = report.frames_written / report.seconds if report.seconds else 0.0
        console.print(f"{report.rows} label rows in {report.labels_path} ({rate:.1f} crops/s this run); "
                      f"report: {out / REPORT_NAME}")
