"""``ctxpose demo``: synthetic Human3.6M -> preprocess -> train the tiny model on CPU -> evaluate.

The pipeline lives in :mod:`ctxpose.engine.demo`. Example::

    ctxpose demo --out ctxpose-demo
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ctxpose.config import save_config
from ctxpose.engine.demo import demo_config, evaluate_untrained, prepare_demo_data
from ctxpose.viz.predictions import save_overlay

console = Console()


def main(
    out: Annotated[Path, typer.Option(help="Folder for data, run and results.")] = Path("ctxpose-demo"),
    epochs: Annotated[int, typer.Option(help="Training epochs (60 steps of 8 samples each).")] = 10,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Config override, e.g. train.n_epochs=2.")] = None,
) -> None:
    """Synthesize a small Human3.6M, preprocess, train the tiny model on CPU, evaluate, show the files."""
    from ctxpose.cli.eval import print_table
    from ctxpose.cli.train import train_worker
    from ctxpose.engine.evaluator import evaluate_checkpoint

    start = time.perf_counter()
    console.print("[bold]1/4[/bold] synthesizing and preprocessing a small Human3.6M (S1 train, S9 val)")
    processed = prepare_demo_data(out)
    cfg = demo_config(processed, [f"train.n_epochs={epochs}", *(set_ or [])])
    run_dir = out / "run"
    save_config(cfg, out / "config.yaml")
    console.print("[bold]2/4[/bold] untrained model on the validation split")
    untrained = evaluate_untrained(cfg, out / "untrained.pt")
    console.print(f"[bold]3/4[/bold] training ({cfg.train.n_epochs} epochs) -> {run_dir}")
    summary = train_worker(cfg, str(run_dir), "cpu", None, None, None, True, False)
    console.print("[bold]4/4[/bold] evaluating the trained model")
    result = evaluate_checkpoint(cfg, summary["checkpoint"], "cpu", "val", out / "eval")
    print_table({"overall": result.metrics, "per_action": result.per_action})
    overlay = save_overlay(out / "eval", processed, out / "eval" / "overlay.png")
    after = result.metrics["mpjpe"]
    console.print(f"val MPJPE: untrained {untrained:.1f} mm -> trained {after:.1f} mm "
                  f"({100 * after / untrained:.0f}%), {time.perf_counter() - start:.0f} s in total")
    for label, path in (("config", out / "config.yaml"), ("run folder", run_dir),
                        ("checkpoint", summary["checkpoint"]), ("metrics", out / "eval" / "metrics.json"),
                        ("predictions", out / "eval" / "predictions.npz"), ("overlay", overlay),
                        ("tensorboard", f"tensorboard --logdir {run_dir}")):
        console.print(f"  {label:12s} {path}")
