"""Options shared by several commands (one definition of each flag's name, metavar and help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctxpose.config import Amp, DeviceKind

ConfigArg = Annotated[str, typer.Argument(
    metavar="CONFIG", show_default=False,
    help="Experiment YAML (ours or the original ContextPose one), or a shipped config's name: tiny_cpu, "
         "human36m_contextpose (see `ctxpose config list`).")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="Config override, repeatable, e.g. --set train.batch_size=8.")]
DeviceOpt = Annotated[DeviceKind | None, typer.Option(
    help="Where to compute (default: cuda when available).", show_default=False)]
AmpOpt = Annotated[Amp | None, typer.Option(
    help="Mixed precision (default: float32); fp16 needs CUDA.", show_default=False)]
GpusOpt = Annotated[int | None, typer.Option(
    metavar="N", help="GPU processes on this machine, one per GPU (NCCL).", show_default=False)]
ProcsOpt = Annotated[int | None, typer.Option(
    metavar="N", help="Processes on this machine on any device (Gloo on CPU).", show_default=False)]

# the preprocess commands
ProcessedOutArg = Annotated[Path, typer.Argument(help="Processed folder to create or resume.")]
CropSizeOpt = Annotated[int, typer.Option(help="Crop side, px.")]
JpegQualityOpt = Annotated[int, typer.Option(help="JPEG quality 0..100.")]
WorkersOpt = Annotated[int, typer.Option(help="Parallel processes over sequences (>= 1).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="List what would be done, write nothing.")]


def comma_list(value: str | None) -> tuple[str, ...] | None:
    """``"S1, S5,"`` -> ``("S1", "S5")``; None or an empty value -> None (the option's default)."""
    items = tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()
    return items or None


def nproc(gpus: int | None, procs: int | None, device: DeviceKind | None) -> tuple[int, DeviceKind | None]:
    """Processes per machine and the device from ``--gpus``/``--procs``/``--device``.

    Raises:
        ConfigError: both counts, or ``--gpus`` with ``--device cpu``.
    """
    from ctxpose.errors import ConfigError

    if gpus is not None and procs is not None:
        raise ConfigError("--gpus and --procs: give one of them")
    if gpus is not None:
        if device is DeviceKind.CPU:
            raise ConfigError("--gpus: needs --device cuda (use --procs N for CPU processes)")
        return gpus, DeviceKind.CUDA
    return (1 if procs is None else procs), device
