"""``ctxpose demo``: parse, call :func:`ctxpose.engine.demo.run_demo`, print the numbers and the files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ctxpose.cli.options import SetOpt


def main(
    out: Annotated[Path, typer.Option(metavar="DIR", help="Folder for data, run and results.")] = Path("ctxpose-demo"),
    epochs: Annotated[int | None, typer.Option(
        metavar="N", show_default=False, help="Training epochs of 60 steps (default: the tiny setting's 10).")] = None,
    frames: Annotated[int, typer.Option(
        metavar="N", min=8, help="Frames of each synthetic Human3.6M sequence (2 subjects x 4 actions x 4 cameras).")
    ] = 60,
    mpi_inf_3dhp: Annotated[bool, typer.Option(
        "--3dhp/--no-3dhp", help="Also evaluate zero-shot on a synthetic MPI-INF-3DHP test set.")] = True,
    set_: SetOpt = None,
) -> None:
    """Synthesize a small Human3.6M, preprocess it, train the tiny model on the CPU, evaluate it (and zero-shot on a
    synthetic MPI-INF-3DHP test set), and show the files it wrote (about 4 minutes on two CPU cores).

    Example: ctxpose demo --out ctxpose-demo
    """
    from rich.console import Console

    from ctxpose.cli.eval import print_table
    from ctxpose.engine.demo import DEMO_STAGES, run_demo

    console = Console()
    counter = iter(range(1, DEMO_STAGES + 1))
    total = DEMO_STAGES if mpi_inf_3dhp else DEMO_STAGES - 1
    demo = run_demo(out, epochs, set_ or [], mpi_inf_3dhp=mpi_inf_3dhp, frames=frames,
                    stage=lambda msg: console.print(f"[bold]{next(counter)}/{total}[/bold] {msg}"))
    print_table(demo.result.to_dict())
    after = demo.result.metrics["mpjpe"]
    console.print(f"val MPJPE: untrained {demo.untrained_mpjpe:.1f} mm -> trained {after:.1f} mm "
                  f"({100 * after / demo.untrained_mpjpe:.0f}%), {demo.seconds:.0f} s in total")
    files = [("config", demo.config), ("run folder", demo.run_dir), ("checkpoint", demo.checkpoint),
             ("metrics", demo.eval_dir / "metrics.json"), ("predictions", demo.eval_dir / "predictions.npz"),
             ("overlay", demo.overlay), ("tensorboard", f"tensorboard --logdir {demo.run_dir}")]
    if demo.mpi_inf_3dhp is not None:
        from ctxpose.cli.tables_3dhp import print_3dhp_result

        official = demo.mpi_inf_3dhp.extra["mpi_inf_3dhp"]
        print_3dhp_result(console, official)
        console.print(f"MPI-INF-3DHP zero-shot (synthetic): PCK {official.overall['pck']['Total']:.1f}, "
                      f"AUC {official.overall['auc']['Total']:.1f}, MPJPE {official.overall['mpjpe']:.1f} mm")
        files.append(("3dhp", demo.eval_3dhp_dir / "metrics.json"))
    if demo.infer:
        from rich.table import Table

        table = Table(title=f"ctxpose infer on held-out synthetic videos ({demo.infer[0]['frames']} frames)")
        for col in ("root", "camera", "MPJPE rel.", "pelvis median", "pelvis p90", "passes"):
            table.add_column(col, justify="right")
        for row in demo.infer:
            table.add_row("ground truth" if row["method"] == "given" else row["method"],
                          "true focal" if row["camera"] == "true" else "default FOV",
                          *(f"{row[k]:.1f}" for k in ("mpjpe_relative", "pelvis_median", "pelvis_p90", "mean_passes")))
        console.print(table)
        files.append(("infer", demo.infer_json))
    for label, path in files:
        console.print(f"  {label:12s} {path}")
