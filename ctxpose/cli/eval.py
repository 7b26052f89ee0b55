"""``ctxpose eval``: evaluate a checkpoint; prints a per-action table, writes metrics.json + predictions.npz.

Examples::

    ctxpose eval runs/tiny_cpu_20260101-120000                       # a run folder: its config and last.pt
    ctxpose eval configs/human36m_contextpose.yaml --checkpoint weights.pth --gpus 2 --out results/
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ctxpose.config import ExperimentConfig, load_config
from ctxpose.engine import dist
from ctxpose.engine.checkpoint import LAST
from ctxpose.errors import ConfigError

console = Console(stderr=True)


def eval_worker(cfg: ExperimentConfig, checkpoint: str, device: str, split: str, out: str,
                amp: str | None) -> dict[str, Any]:
    """One evaluation process (module level for the elastic launcher); returns the metrics payload."""
    from ctxpose.engine.evaluator import evaluate_checkpoint

    rank = dist.detect_env().rank
    if dist.in_launched_env() and rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    columns = [TextColumn("[bold]eval"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=rank != 0) as progress:
        task = progress.add_task("eval", total=None)
        result = evaluate_checkpoint(cfg, checkpoint, device, split, out, amp,
                                     progress=lambda i, n: progress.update(task, completed=i, total=n))
    return {"overall": result.metrics, "per_action": result.per_action, "per_subject": result.per_subject}


def _resolve(target: Path, checkpoint: Path | None) -> tuple[Path, Path]:
    if target.is_dir():
        cfg_path = target / "config.yaml"
        if not cfg_path.is_file():
            raise ConfigError(f"{target}: not a run folder (no config.yaml)")
        return cfg_path, checkpoint or target / "checkpoints" / LAST
    if checkpoint is None:
        raise ConfigError(f"{target}: a config file needs --checkpoint PATH (or pass a run folder)")
    return target, checkpoint


def main(
    target: Annotated[Path, typer.Argument(exists=True, help="Experiment YAML or a run folder.")],
    checkpoint: Annotated[Path | None, typer.Option(help="Weights: run checkpoint, ours or the original's.")] = None,
    split: Annotated[str, typer.Option(help="val or train.")] = "val",
    gpus: Annotated[int | None, typer.Option(help="GPU processes on this machine.")] = None,
    procs: Annotated[int | None, typer.Option(help="Processes on this machine (Gloo on CPU).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if available).")] = None,
    amp: Annotated[str | None, typer.Option(help="bf16 or fp16.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <run>/eval_<split> or eval/).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. --set val.batch_size=16.")] = None,
) -> None:
    """Evaluate: MPJPE, PA-MPJPE, N-MPJPE... overall, per action and per subject."""

    if split not in ("val", "train"):
        raise ConfigError(f"--split {split}: expected val or train")
    cfg_path, ckpt = _resolve(target, checkpoint)
    if not ckpt.is_file():
        raise ConfigError(f"--checkpoint {ckpt}: file not found")
    cfg = load_config(cfg_path, set_ or [])
    device = dist.default_device(device)
    if gpus is not None and device != "cuda":
        raise ConfigError("--gpus: needs --device cuda (use --procs N for CPU processes)")
    out = out or ((target / f"eval_{split}") if target.is_dir() else Path("eval"))
    args = (cfg, str(ckpt), device, split, str(out), amp)
    nproc = gpus or procs or 1
    if nproc == 1 or dist.in_launched_env():
        payload = eval_worker(*args)
    else:
        payload = dist.launch(eval_worker, args, nproc)[0]
    if dist.get_rank() == 0:
        print_table(payload)
        Console().print(f"wrote {out / 'metrics.json'} and {out / 'predictions.npz'}")


def print_table(payload: dict[str, Any]) -> None:
    """Per-action rows (MPJPE, PA-MPJPE, N-MPJPE, mm) and an overall row."""
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
    logging.getLogger(__name__).debug(json.dumps(payload["overall"]))
