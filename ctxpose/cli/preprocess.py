"""``ctxpose preprocess h36m RAW OUT``: raw Human3.6M -> cropped, undistorted images + labels."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ctxpose.data.h36m.preprocess import (
    REPORT_NAME,
    PreprocessInterrupted,
    PreprocessOptions,
    PreprocessReport,
    check_options,
    preprocess_h36m,
)
from ctxpose.skeleton import SKELETONS

app = typer.Typer(help="Turn raw datasets into processed folders (crops + labels).", no_args_is_help=True)

ListOpt = Annotated[str | None, typer.Option(help="Comma-separated filter, e.g. S1,S5 (default: all present).")]
SkeletonName = enum.Enum("SkeletonName", {name: name for name in SKELETONS}, type=str)  # type: ignore[misc]


def _split(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


@app.command()
def h36m(
    raw: Annotated[Path, typer.Argument(help="Folder with the official .tgz archives and/or extracted S*/ folders.",
                                        exists=True, file_okay=False)],
    out: Annotated[Path, typer.Argument(help="Processed folder to create or resume.")],
    image_size: Annotated[int, typer.Option(help="Crop side, px.")] = 384,
    jpeg_quality: Annotated[int, typer.Option(help="JPEG quality 0..100.")] = 95,
    train_every: Annotated[int, typer.Option(help="Keep every n-th frame of training subjects (1 = all).")] = 5,
    test_every: Annotated[int, typer.Option(help="Keep every n-th frame of test subjects (1 = all).")] = 5,
    all_frames: Annotated[bool, typer.Option("--all-frames", help="Keep every frame (both splits).")] = False,
    bbox_source: Annotated[Literal["auto", "masks", "poses"], typer.Option(
        help="Boxes from the ground-truth masks, the projected poses, or auto (masks, else poses).")] = "auto",
    bbox_scale: Annotated[float, typer.Option(help="Scale of the square box (ContextPose: 1.0).")] = 1.0,
    skeleton: Annotated[SkeletonName, typer.Option(
        help="Joint order of the labels and bones of the limb prior (the config's model.skeleton).")] = (
        SkeletonName("contextpose17")),
    subjects: ListOpt = None,
    actions: Annotated[str | None, typer.Option(help="Comma-separated, e.g. Walking,Directions-1.")] = None,
    cameras: Annotated[str | None, typer.Option(help="Comma-separated camera ids, e.g. 54138969.")] = None,
    workers: Annotated[int, typer.Option(help="Parallel processes over sequences (>= 1).")] = 1,
    cameras_file: Annotated[Path | None, typer.Option(help="una-dinosauria cameras.h5 override.",
                                                      exists=True, dir_okay=False)] = None,
    extract_dir: Annotated[Path | None, typer.Option(help="Where archive members go (default OUT/.raw).")] = None,
    keep_extracted: Annotated[bool, typer.Option(help="Keep extracted archive members.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be done, write nothing.")] = False,
) -> None:
    """Crop, undistort and label Human3.6M; resumable (finished sequences are skipped, Ctrl-C keeps them).

    Example:

        ctxpose preprocess h36m ~/h36m_raw data/human36m --workers 8

        ctxpose preprocess h36m ~/h36m_raw data/h36m_s1 --subjects S1 --actions Walking --dry-run
    """
    every = (1, 1) if all_frames else (train_every, test_every)
    opts = PreprocessOptions(
        image_size=image_size, jpeg_quality=jpeg_quality, train_every=every[0], test_every=every[1],
        bbox_source=bbox_source, bbox_scale=bbox_scale, skeleton=SkeletonName(skeleton).value,
        subjects=_split(subjects), actions=_split(actions), cameras=_split(cameras), workers=workers,
        cameras_file=cameras_file, extract_dir=extract_dir, keep_extracted=keep_extracted, dry_run=dry_run)
    check_options(opts)
    console = Console()
    if dry_run:
        _print_plan(console, preprocess_h36m(raw, out, opts))
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("preprocess h36m", total=None, rate="")

        def on_event(event: str, info: dict) -> None:
            if event == "plan":
                bar.update(task, total=info["frames"])
            elif event == "frames":
                bar.advance(task, info["n"])
                speed = bar.tasks[0].speed
                bar.update(task, rate=f"{speed:6.1f} crops/s" if speed else "")
            elif event == "done":
                total = bar.tasks[0].total
                if total is not None and info.get("unused"):
                    bar.update(task, total=max(total - info["unused"], bar.tasks[0].completed))
            elif event == "failed":  # printed once, here; the final table only counts them
                console.print(f"[red]failed[/red] {info['key']}: {info['error']}", highlight=False, soft_wrap=True)

        try:
            report = preprocess_h36m(raw, out, opts, progress=on_event)
        except PreprocessInterrupted as stop:
            bar.stop()
            done = len(stop.report.done)
            console.print(f"[yellow]stopped:[/yellow] {done} sequence{' is' if done == 1 else 's are'} finished in "
                          f"this run and recorded in {out / 'manifest.json'}; run the same command again to continue",
                          highlight=False, soft_wrap=True)
            raise
    _print_report(console, report, out)
    if not report.ok:
        raise typer.Exit(code=1)


def _print_plan(console: Console, report: PreprocessReport) -> None:
    table = Table(title="would process", caption="frames counted in the pose files; 'official count' where the "
                                                 "pose file is still in an archive (archives are not opened)")
    for col in ("sequence", "cameras", "frames", "crops", "frames from"):
        table.add_column(col)
    for p in report.planned:
        table.add_row(p["sequence"], ",".join(p["cameras"]), str(p["frames"]), str(p["crops"]), p["frames_from"])
    console.print(table)
    console.print(f"{len(report.planned)} to do, {sum(p['crops'] for p in report.planned)} crops; "
                  f"{len(report.skipped)} already done, {len(report.absent)} not in this download")


def _print_report(console: Console, report: PreprocessReport, out: Path) -> None:
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
