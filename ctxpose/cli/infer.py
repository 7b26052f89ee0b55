"""``ctxpose infer``: metric 3D poses from one's own images and videos (library: :mod:`ctxpose.engine.infer`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ctxpose.cli.options import AmpOpt, DeviceOpt, SetOpt


class RootMethod(str, Enum):
    """How ``--root`` finds each person's cuboid centre (docs/commands/infer.md)."""

    ROOTNET = "rootnet"
    BONES = "bones"
    NETWORK = "network"
    BOX = "box"


class Detector(str, Enum):
    BUILTIN = "builtin"


def main(
    inputs: Annotated[list[Path], typer.Argument(
        metavar="INPUT...", show_default=False, help="Image files, folders of images, or video files.")],
    config: Annotated[str, typer.Option(
        metavar="CONFIG|RUN", show_default=False,
        help="Experiment config (a file or a shipped name) with --checkpoint, or a run folder.")],
    checkpoint: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False, help="Weights (default: a run folder's checkpoints/last.pt).")] = None,
    out: Annotated[Path, typer.Option(metavar="DIR", help="Output folder.")] = Path("infer"),
    boxes: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False,
        help="Person boxes from any detector: a COCO results .json or a .csv (frame,x,y,w,h,score[,file]).")] = None,
    box: Annotated[str | None, typer.Option(
        metavar="X,Y,W,H", show_default=False, help="One fixed person box for every frame, px.")] = None,
    detector: Annotated[Detector | None, typer.Option(
        show_default=False,
        help="torchvision's Faster R-CNN person detector (needs pip install 'ctxpose\\[detect]').")] = None,
    detector_weights: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False,
        help="The built-in detector's weights (default: the file `ctxpose fetch-weights person-detector` puts in "
             "the data root).")] = None,
    min_score: Annotated[float, typer.Option(help="Ignore boxes scoring below this.")] = 0.5,
    calibration: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False,
        help="Several synchronized views (one INPUT each) of calibrated cameras: K, dist, R, t per view "
             "(docs/commands/infer.md); runs a multi-view model, world-frame poses.")] = None,
    root_config: Annotated[str | None, typer.Option(
        metavar="CONFIG|RUN", show_default=False,
        help="With --calibration and a volumetric model: centre the first cuboid on this algebraic/RANSAC model's "
             "pelvis (default: the views' box centres triangulated).")] = None,
    root_checkpoint: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False, help="--root-config's weights.")] = None,
    camera: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False,
        help="Intrinsics: JSON/YAML with fx, fy, cx, cy[, dist] or OpenCV's camera_matrix[, "
             "distortion_coefficients].")] = None,
    focal: Annotated[float | None, typer.Option(
        metavar="PX", show_default=False, help="Focal length, px (principal point at the centre).")] = None,
    fov: Annotated[float | None, typer.Option(
        metavar="DEG", show_default=False,
        help="Horizontal field of view, degrees (default 60 when no camera is given).")] = None,
    root: Annotated[RootMethod, typer.Option(
        help="Root (cuboid centre) estimation (see docs/commands/infer.md).")] = RootMethod.ROOTNET,
    root_depth: Annotated[float | None, typer.Option(
        metavar="MM", show_default=False, help="Put every person's root at this depth along its ray, mm.")] = None,
    person_size: Annotated[float | None, typer.Option(
        metavar="MM", show_default=False,
        help="RootNet depth: the real length of a person box's longer side (default 1800; RootNet's: 1600).")] = None,
    pitch: Annotated[float, typer.Option(
        metavar="DEG", help="Camera tilted down by this many degrees (no roll assumed).")] = 0.0,
    smooth: Annotated[float | None, typer.Option(
        metavar="SIGMA", show_default=False,
        help="Videos: also write keypoints_3d_smooth, Gaussian over SIGMA frames per track.")] = None,
    render: Annotated[bool, typer.Option(
        "--render", help="Also draw the 2D skeletons and a 3D view: OUT/render/<video>.mp4 or <image>.png.")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="People per network batch.")] = 16,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    set_: SetOpt = None,
) -> None:
    """3D poses (camera frame, mm) of every person in images or videos; writes predictions.npz and
    predictions.jsonl.

    Example: ctxpose infer clip.mp4 --config runs/tiny_cpu_20260101-120000 --boxes detections.json --fov 55

    More: ctxpose infer photos/ --config configs/human36m_contextpose.yaml --checkpoint weights.pth --box
    100,40,220,500 --camera calib.yaml --out poses
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from ctxpose.config import load_config
    from ctxpose.data.infer_inputs import parse_box
    from ctxpose.engine.dist import default_device
    from ctxpose.engine.infer import DEFAULT_PERSON_SIZE_MM, InferOptions, InferRequest, PoseEstimator, run_infer
    from ctxpose.engine.progress import stderr_console
    from ctxpose.engine.runs import resolve_eval_target
    from ctxpose.errors import Stopped

    if calibration is not None:
        single = {"--camera": camera, "--focal": focal, "--fov": fov, "--root-depth": root_depth,
                  "--person-size": person_size, "--smooth": smooth, "--render": render or None,
                  "--pitch": pitch or None, "--root": None if root is RootMethod.ROOTNET else root}
        _multiview(inputs, calibration, config, checkpoint, out, boxes, box, detector, detector_weights, min_score,
                   batch_size, device, amp, set_, [k for k, v in single.items() if v is not None], root_config,
                   root_checkpoint)
        return
    if root_config is not None or root_checkpoint is not None:
        from ctxpose.errors import ConfigError

        raise ConfigError("--root-config/--root-checkpoint: only with --calibration (several calibrated views)")
    options = InferOptions(root_method=root.value, root_depth=root_depth, pitch=pitch, batch_size=batch_size,
                           person_size_mm=DEFAULT_PERSON_SIZE_MM if person_size is None else person_size)
    request = InferRequest(inputs=list(inputs), out=out, detections=boxes, box=parse_box(box) if box else None,
                           detector=detector.value if detector else None, detector_weights=detector_weights,
                           camera_file=camera, focal=focal, fov=fov, min_score=min_score, smooth=smooth, render=render)
    cfg_path, weights = resolve_eval_target(config, checkpoint)
    cfg = load_config(cfg_path, set_ or [])
    dev = default_device(device)
    with Progress(TextColumn("[bold]infer {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[fps]}"), TimeElapsedColumn(), console=stderr_console()) as bar:
        task = bar.add_task("", total=None, fps="")
        frames = {}

        def progress(name: str, done: int, total: int, seconds: float) -> None:
            frames[name] = done
            bar.update(task, description=name, completed=done, total=total or None,
                       fps=f"{sum(frames.values()) / max(seconds, 1e-9):.1f} frames/s")

        try:
            summary = run_infer(request, lambda: PoseEstimator.from_config(cfg, weights, dev, amp), options,
                                progress, meta={"config": str(cfg_path), "checkpoint": str(weights)})
        except (KeyboardInterrupt, Stopped):
            raise Stopped(f"stopped; the frames done so far are in {out / 'predictions.npz'} "
                          "(meta: interrupted)") from None
    console = Console()
    table = Table(title="ctxpose infer")
    for col in ("frames", "people", "empty frames", "frames/s", "root"):
        table.add_column(col, justify="right")
    table.add_row(str(summary.frames), str(summary.people), str(summary.empty_frames),
                  f"{summary.frames_per_second:.1f}", options.root_method)
    console.print(table)
    for line in summary.cameras:
        console.print(f"camera {line}")
    console.print(f"wrote {out / 'predictions.npz'} and {out / 'predictions.jsonl'}"
                  + (f" and {len(summary.rendered)} renders" if summary.rendered else ""))


def _multiview(inputs: list[Path], calibration: Path, config: str, checkpoint: Path | None, out: Path,
               boxes: Path | None, box: str | None, detector: Detector | None, detector_weights: Path | None,
               min_score: float, batch_size: int, device: Any, amp: Any, set_: list[str] | None,
               single_view_options: list[str], root_config: str | None = None,
               root_checkpoint: Path | None = None) -> None:
    """``infer --calibration``: :func:`ctxpose.engine.infer_multiview.run_infer_multiview` with a progress bar."""
    from functools import partial

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ctxpose.config import load_config
    from ctxpose.data.infer_inputs import parse_box
    from ctxpose.engine.dist import default_device
    from ctxpose.engine.infer_multiview import (
        TRIANGULATION,
        MultiViewEstimator,
        MultiViewOptions,
        MultiViewRequest,
        run_infer_multiview,
    )
    from ctxpose.engine.progress import stderr_console
    from ctxpose.engine.runs import resolve_eval_target
    from ctxpose.errors import ConfigError, Stopped

    if single_view_options:
        raise ConfigError(f"{', '.join(single_view_options)}: single-camera options; with --calibration the cameras "
                          "and the world come from the calibration file")
    request = MultiViewRequest(inputs=list(inputs), calibration=calibration, out=out, detections=boxes,
                               box=parse_box(box) if box else None, detector=detector.value if detector else None,
                               detector_weights=detector_weights, min_score=min_score, frames_per_batch=batch_size)
    cfg_path, weights = resolve_eval_target(config, checkpoint)
    cfg = load_config(cfg_path, set_ or [])
    dev = default_device(device)
    root_model = None
    if root_config is not None:
        root_cfg_path, root_weights = resolve_eval_target(root_config, root_checkpoint)
        root_cfg = load_config(root_cfg_path)
        if root_cfg.model.architecture not in TRIANGULATION:  # refused before any model is loaded
            raise ConfigError(f"--root-config {root_config}: model.architecture {root_cfg.model.architecture}; the "
                              "root model is an algebraic or ransac model")
        root_model = partial(MultiViewEstimator.from_config, root_cfg, root_weights, dev, amp)
    elif root_checkpoint is not None:
        raise ConfigError("--root-checkpoint: only with --root-config")
    with Progress(TextColumn("[bold]infer {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[fps]}"), TimeElapsedColumn(), console=stderr_console()) as bar:
        task = bar.add_task(f"{len(inputs)} cameras", total=None, fps="")

        def progress(done: int, total: int, seconds: float) -> None:
            bar.update(task, completed=done, total=total or None, fps=f"{done / max(seconds, 1e-9):.1f} frames/s")

        try:
            summary = run_infer_multiview(
                request, lambda: MultiViewEstimator.from_config(cfg, weights, dev, amp),
                MultiViewOptions(batch_size=batch_size), progress,
                meta={"config": str(cfg_path), "checkpoint": str(weights), "calibration": str(calibration)},
                root_model=root_model)
        except (KeyboardInterrupt, Stopped):
            raise Stopped(f"stopped; the frames done so far are in {out / 'predictions.npz'} "
                          "(meta: interrupted)") from None
    console = Console()
    if len(set(summary.lengths)) > 1:
        console.print(f"views of different lengths {summary.lengths}: the shortest sets the length")
    console.print(f"{summary.frames} synchronized frames of {len(inputs)} views, {summary.people} with a person "
                  f"(world frame of {calibration}), {summary.frames_per_second:.1f} frames/s")
    console.print(f"wrote {out / 'predictions.npz'} and {out / 'predictions.jsonl'}")
