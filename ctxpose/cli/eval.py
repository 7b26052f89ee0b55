"""``ctxpose eval``: parse, call :func:`ctxpose.engine.launch.launch_eval`, print the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ctxpose.cli.options import AmpOpt, DeviceOpt, GpusOpt, ProcsOpt, SetOpt, nproc
from ctxpose.config import Split


def main(
    target: Annotated[str, typer.Argument(
        metavar="RUN|CONFIG", show_default=False,
        help="A run folder (its config.yaml and checkpoints/last.pt) or an experiment config with --checkpoint.")],
    checkpoint: Annotated[Path | None, typer.Option(
        metavar="FILE", show_default=False,
        help="Weights: a run checkpoint, our weights or the original's released weights.pth.")] = None,
    split: Annotated[Split, typer.Option(help="Which split to evaluate.")] = Split.VAL,
    gpus: GpusOpt = None,
    procs: ProcsOpt = None,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    out: Annotated[Path | None, typer.Option(
        metavar="DIR", show_default=False,
        help="Output folder (default: RUN/eval_<split> for a run folder, else ./eval).")] = None,
    set_: SetOpt = None,
) -> None:
    """Evaluate a checkpoint: MPJPE, PA-MPJPE, N-MPJPE... overall, per action and per subject; writes
    metrics.json and predictions.npz.

    Example: ctxpose eval runs/tiny_cpu_20260101-120000 --device cpu

    More: ctxpose eval configs/human36m_contextpose.yaml --checkpoint weights.pth --gpus 2 --out results/h36m
    """
    from rich.console import Console

    from ctxpose.config import load_config
    from ctxpose.engine.launch import Layout, launch_eval
    from ctxpose.engine.runs import resolve_eval_target

    cfg_path, weights = resolve_eval_target(target, checkpoint)
    cfg = load_config(cfg_path, set_ or [])
    n, device = nproc(gpus, procs, device)
    out = out or (Path(target) / f"eval_{split.value}" if Path(target).is_dir() else Path("eval"))
    result = launch_eval(cfg, weights, split=split, out_dir=out, device=device, layout=Layout(n), amp=amp)
    if result is not None:
        print_table(result.to_dict())
        Console().print(f"wrote {out / 'metrics.json'} and {out / 'predictions.npz'}")


def print_table(payload: dict[str, Any]) -> None:
    """Per-action rows (MPJPE, PA-MPJPE, N-MPJPE, root-relative MPJPE, mm) and an overall row."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Evaluation (mm)")
    for col in ("action", "MPJPE", "PA-MPJPE", "N-MPJPE", "MPJPE rel."):
        table.add_column(col, justify="left" if col == "action" else "right")

    def row(name: str, m: dict[str, float], style: str | None = None) -> None:
        table.add_row(name, *(f"{m.get(k, float('nan')):.1f}" for k in ("mpjpe", "pa_mpjpe", "n_mpjpe",
                                                                         "mpjpe_relative")), style=style)

    for action, metrics in payload["per_action"].items():
        row(action, metrics)
    row(f"all ({int(payload['overall'].get('n_samples', 0))} samples)", payload["overall"], style="bold")
    Console().print(table)
