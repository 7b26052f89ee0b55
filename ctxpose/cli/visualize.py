"""``ctxpose visualize dataset|predictions|model|run``: pictures, videos and plots (library: :mod:`ctxpose.viz`).

Examples::

    ctxpose visualize dataset data/human36m/processed --subject S9 --action Walking-1 --frames 0:200:10
    ctxpose visualize predictions runs/<run>/eval_val --dataset data/human36m/processed --gif worst.gif
    ctxpose visualize model configs/human36m_contextpose.yaml --checkpoint weights.pth --sample S9/Walking-1/54138969/40
    ctxpose visualize run runs/<run>
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

app = typer.Typer(help="Pictures, videos and plots of the data, predictions, network internals and runs.\n\n"
                       "Example: ctxpose visualize predictions runs/<run>/eval_val --dataset data/human36m/processed",
                  no_args_is_help=True)
console = Console()

Out = Annotated[Path | None, typer.Option("--out", help="Output folder (default given per mode).")]
Size = Annotated[int, typer.Option(help="Side of one image tile, px.")]
LineWidth = Annotated[int | None, typer.Option(help="Bone thickness, px (default size/128).")]
JointRadius = Annotated[int | None, typer.Option(help="Joint radius, px (default line width + 1).")]
FontScale = Annotated[float | None, typer.Option(help="Title font scale (default size/700).")]
Video = Annotated[Path | None, typer.Option(help="Also write the frame sequence as this .mp4 (OpenCV).")]
Gif = Annotated[Path | None, typer.Option(help="Also write the frame sequence as this .gif (Pillow).")]
Fps = Annotated[float, typer.Option(help="Frames per second of --video / --gif.")]
Tensorboard = Annotated[Path | None, typer.Option(help="Also log the images to this run folder's TensorBoard events.")]
Up = Annotated[str, typer.Option(help="The world's vertical axis for 3D views: x, y, z, -x, -y or -z.")]


def _style(size: int, line_width: int | None, joint_radius: int | None, font_scale: float | None):
    from ctxpose.viz.style import Style

    return Style(size=size, line_width=line_width, joint_radius=joint_radius, font_scale=font_scale)


def _check_up(up: str) -> str:
    from ctxpose.errors import ConfigError
    from ctxpose.viz.figures import up_vector

    try:
        up_vector(up)
    except ValueError as e:
        raise ConfigError(f"--up {up}: {e}") from None
    return up


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _sink(out: Path, video: Path | None = None, gif: Path | None = None, tensorboard: Path | None = None,
          fps: float = 10.0, tag: str = "viz"):
    from ctxpose.viz.output import ImageSink

    return ImageSink(out, video=video, gif=gif, tensorboard=tensorboard, fps=fps, tag=tag)


def _done(sink, extra: str = "") -> None:
    console.print(f"[green]wrote[/green] {len(sink.written)} files{extra} to [bold]{sink.out_dir}[/bold]")
    for path in sink.written:
        if path.suffix in (".mp4", ".gif"):
            console.print(f"  {path}")


@app.command()
def dataset(
    processed: Annotated[Path, typer.Argument(help="Processed dataset folder (labels.npz + images/).")],
    subject: Annotated[str | None, typer.Option(help="Subject, e.g. S9 (default: the first).")] = None,
    action: Annotated[str | None, typer.Option(help="Sequence (Walking-1) or action (Walking); default the first.")
                      ] = None,
    camera: Annotated[str | None, typer.Option(help="Camera id, e.g. 54138969 (default: the first).")] = None,
    frames: Annotated[str | None, typer.Option(help="start:stop:step over frame numbers (default: all).")] = None,
    raw: Annotated[Path | None, typer.Option(help="Raw dataset folder: also show the full distorted frame and box.")
                   ] = None,
    sheet: Annotated[int, typer.Option(help="Crops on contact_sheet.png (0: none).")] = 16,
    out: Out = None, size: Size = 384, line_width: LineWidth = None, joint_radius: JointRadius = None,
    font_scale: FontScale = None, video: Video = None, gif: Gif = None, fps: Fps = 10.0,
    tensorboard: Tensorboard = None,
) -> None:
    """Crops with the ground truth projected through each label's camera; --raw adds the full frame.

    The quickest check that preprocessing is right. Writes one PNG per image and contact_sheet.png.

    Example:

        ctxpose visualize dataset data/human36m/processed --subject S9 --action Walking-1 --camera 54138969
        --frames 0:200:10 --raw ~/h36m_raw --video s9.mp4
    """
    from ctxpose.viz.dataset import visualize_dataset

    style = _style(size, line_width, joint_radius, font_scale)
    with _sink(out or Path("viz/dataset"), video, gif, tensorboard, fps, "viz/dataset") as sink, \
            _progress("dataset") as progress:
        report = visualize_dataset(processed, sink, subject, action, camera, frames, raw, style, sheet, progress)
    _done(sink, f" ({len(report.rows)} images)")


@app.command()
def predictions(
    source: Annotated[Path, typer.Argument(help="predictions.npz or an eval folder (metrics.json + predictions.npz).")],
    dataset: Annotated[Path | None, typer.Option(help="Processed dataset with the crops (when the file has no "
                                                      "image_paths, or to relocate them).")] = None,
    index: Annotated[str | None, typer.Option(help="Comma-separated dataset indices to render, e.g. 3,17,40.")
                     ] = None,
    samples: Annotated[int, typer.Option(help="Samples to render without --index, evenly spaced (-1: all).")] = 8,
    worst: Annotated[int, typer.Option(help="Samples in the worst-sample gallery (0: none).")] = 12,
    extent: Annotated[float, typer.Option(help="Half side of the 3D views, mm.")] = 1000.0,
    up: Up = "z",
    out: Out = None, size: Size = 384, line_width: LineWidth = None, joint_radius: JointRadius = None,
    font_scale: FontScale = None, video: Video = None, gif: Gif = None, fps: Fps = 2.0,
    tensorboard: Tensorboard = None,
) -> None:
    """Predicted vs true skeletons per sample (crop, 3D view, joint errors), worst samples, error plots.

    Writes samples/<index>.png, worst.png, per_action.png, per_joint.png, error_distribution.png, summary.json.

    Example:

        ctxpose visualize predictions runs/<run>/eval_val --dataset data/human36m/processed --samples 20
        --video samples.mp4
    """
    from ctxpose.errors import ConfigError
    from ctxpose.viz.predictions import visualize_predictions

    try:
        indices = [int(v) for v in index.split(",") if v.strip()] if index else None
    except ValueError:
        raise ConfigError(f"--index {index}: expected comma-separated integers, e.g. 3,17,40") from None
    if extent <= 0:
        raise ConfigError(f"--extent {extent}: expected a positive number of mm")
    style = _style(size, line_width, joint_radius, font_scale)
    default_out = (source if source.is_dir() else source.parent) / "viz"
    with _sink(out or default_out, video, gif, tensorboard, fps, "viz/predictions") as sink, \
            _progress("predictions") as progress:
        report = visualize_predictions(source, sink, dataset, indices, samples, worst, style, _check_up(up), extent,
                                       progress)
    if report.crops_note:
        console.print(f"[yellow]no crops:[/yellow] {report.crops_note}")
    table = Table(title="MPJPE per action (mm)")
    for col in ("action", "samples", "MPJPE", "PA-MPJPE"):
        table.add_column(col, justify="left" if col == "action" else "right")
    for name, m in sorted(report.per_action.items()):
        table.add_row(name, f"{int(m.get('n_samples', 0))}", f"{m['mpjpe']:.1f}", f"{m['pa_mpjpe']:.1f}")
    console.print(table)
    _done(sink, f" ({len(report.samples)} samples, summary.json)")


@app.command()
def model(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (model, dataset, limb prior).")],
    checkpoint: Annotated[Path, typer.Option(help="Weights: run checkpoint, ours or the original's.")],
    sample: Annotated[str, typer.Option(help="Dataset index or SUBJECT/Action-trial/CAMERA/FRAME.")] = "0",
    split: Annotated[str, typer.Option(help="val or train.")] = "val",
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if available).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config override, e.g. dataset.root=DIR.")] = None,
    out: Out = None, size: Size = 384, line_width: LineWidth = None, joint_radius: JointRadius = None,
    font_scale: FontScale = None, tensorboard: Tensorboard = None,
) -> None:
    """The network on one sample: heatmaps, 3D volumes, global attention, the cuboid on the image.

    Heatmaps per joint over the crop; maximum-intensity projections of each joint's volume and of the context
    block's global attention on three planes; the cuboid's edges and both skeletons projected onto the crop.

    Example:

        ctxpose visualize model configs/human36m_contextpose.yaml --checkpoint weights.pth
        --sample S9/Walking-1/54138969/40
    """
    from ctxpose.config import load_config
    from ctxpose.engine.dist import default_device
    from ctxpose.viz.model import visualize_model

    cfg = load_config(config, set_ or [])
    style = _style(size, line_width, joint_radius, font_scale)
    with _sink(out or Path("viz/model"), tensorboard=tensorboard, tag="viz/model") as sink, \
            _progress("model") as progress:
        result = visualize_model(cfg, checkpoint, sample, sink, split, default_device(device), style, progress)
    _done(sink, f" ({result.name.strip()})")


@app.command()
def run(
    run_dir: Annotated[Path, typer.Argument(help="Run folder of `ctxpose train` (scalars.jsonl, metrics.json).")],
    smoothing: Annotated[float, typer.Option(help="Moving-average weight of the step curves, 0 <= w < 1.")] = 0.9,
    out: Out = None, size: Size = 384, line_width: LineWidth = None, joint_radius: JointRadius = None,
    font_scale: FontScale = None, tensorboard: Tensorboard = None,
) -> None:
    """Training curves (losses, learning rates, validation metrics) and their last and best values.

    Example:

        ctxpose visualize run runs/tiny_cpu_20260101-120000
    """
    from ctxpose.viz.run import visualize_run

    style = _style(size, line_width, joint_radius, font_scale)
    with _sink(out or run_dir / "viz", tensorboard=tensorboard, tag="viz/run") as sink:
        summary = visualize_run(run_dir, sink, style, smoothing)
    table = Table(title=f"Validation ({summary['epochs']} epochs)")
    for col in ("metric", "last", "best", "at step"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for key, v in summary["val"].items():
        table.add_row(key, f"{v['last']:.4g}", f"{v['best']:.4g}", f"{int(v['best_step'])}")
    if summary["val"]:
        console.print(table)
    _done(sink, " (curves.png, summary.json)")
