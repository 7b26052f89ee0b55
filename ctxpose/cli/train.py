"""``ctxpose train``: train ContextPose on one process, N local processes or several machines.

Examples::

    ctxpose train configs/tiny_cpu.yaml --device cpu                  # one CPU process
    ctxpose train configs/tiny_cpu.yaml --device cpu --procs 2        # 2 Gloo processes
    ctxpose train configs/human36m_contextpose.yaml --gpus 4          # 4 GPUs on this machine (NCCL)
    ctxpose train CFG --gpus 8 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500
    torchrun --nproc-per-node 4 -m ctxpose train CFG                  # inside torchrun/srun: no re-spawn
    ctxpose train CFG --resume auto                                   # continue the latest run of CFG's title
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ctxpose.config import ExperimentConfig, load_config
from ctxpose.engine import dist
from ctxpose.engine.checkpoint import find_resume_checkpoint, run_dir_of
from ctxpose.errors import ConfigError

console = Console(stderr=True)


def _progress_fn(progress: Progress) -> Any:
    state: dict[str, Any] = {}

    def update(step: int, total: int, scalars: dict[str, float]) -> None:
        if "task" not in state:
            state["task"] = progress.add_task("train", total=total, completed=step - 1, loss=float("nan"), sps=0.0)
        fields = {"sps": scalars.get("samples_per_s", 0.0)}
        if "loss/total" in scalars:
            fields["loss"] = scalars["loss/total"]
        progress.update(state["task"], completed=step, total=total, **fields)

    return update


def train_worker(cfg: ExperimentConfig, run_dir: str, device: str, resume: str | None, amp: str | None,
                 max_steps: int | None, validate: bool, verbose: bool) -> dict[str, Any]:
    """One training process (module level so that the elastic launcher can start it)."""
    from ctxpose.engine.trainer import train

    rank = dist.detect_env().rank
    if dist.in_launched_env():
        from rich.logging import RichHandler

        logging.basicConfig(level=(logging.DEBUG if verbose else logging.INFO) if rank == 0 else logging.WARNING,
                            format="%(message)s", force=True,
                            handlers=[RichHandler(console=console, show_path=False)])
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[sps]:.1f} samples/s"),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=rank != 0, transient=False) as progress:
        result = train(cfg, run_dir, device, resume=resume, amp=amp, max_steps=max_steps, validate=validate,
                       progress=_progress_fn(progress))
    return {"run_dir": str(result.run_dir), "checkpoint": str(result.checkpoint), "steps": result.steps,
            "epochs": result.epochs_completed, "nan_steps": result.nan_steps, "metrics": result.metrics}


def main(
    config: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Experiment YAML (ours or original).")],
    gpus: Annotated[int | None, typer.Option(help="GPU processes per machine (NCCL).")] = None,
    procs: Annotated[int | None, typer.Option(help="Processes per machine (any device; Gloo on CPU).")] = None,
    nnodes: Annotated[int, typer.Option(help="Machines in the job.")] = 1,
    node_rank: Annotated[int, typer.Option(help="This machine's index, 0..nnodes-1.")] = 0,
    master_addr: Annotated[str, typer.Option(help="Address of the node-rank-0 machine.")] = "127.0.0.1",
    master_port: Annotated[int | None, typer.Option(help="Port on the master (default: free port / 29500).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if available).")] = None,
    amp: Annotated[str | None, typer.Option(help="Mixed precision: bf16 or fp16 (fp16 needs CUDA).")] = None,
    resume: Annotated[str | None, typer.Option(help="Run folder, checkpoint file, or 'auto'.")] = None,
    logdir: Annotated[Path | None, typer.Option(help="Parent of run folders (default: config logdir).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop (and checkpoint) after this many steps.")] = None,
    no_val: Annotated[bool, typer.Option("--no-val", help="Skip per-epoch validation.")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override, e.g. --set train.batch_size=8.")] = None,
) -> None:
    """Train; writes config.yaml, checkpoints/last.pt, metrics.json and TensorBoard events to the run folder."""

    cfg = load_config(config, set_ or [])
    device = dist.default_device(device)
    if gpus is not None and procs is not None:
        raise ConfigError("--gpus and --procs: give one of them")
    if gpus is not None and device != "cuda":
        raise ConfigError("--gpus: needs --device cuda (use --procs N for CPU processes)")
    nproc = gpus or procs or 1
    root = Path(logdir or cfg.logdir)
    checkpoint = None
    if resume is not None:
        checkpoint = find_resume_checkpoint(resume, root, cfg.title)
        run_dir = run_dir_of(checkpoint)
    else:
        run_dir = root / f"{cfg.title}_{time.strftime('%Y%m%d-%H%M%S')}"
    args = (cfg, str(run_dir), device, str(checkpoint) if checkpoint else None, amp, max_steps, not no_val,
            logging.getLogger().level <= logging.DEBUG)
    if dist.in_launched_env() or (nproc == 1 and nnodes == 1):
        summary = train_worker(*args)
    else:
        summary = dist.launch(train_worker, args, nproc, nnodes, node_rank, master_addr, master_port)
        summary = summary.get(0) if 0 in summary else None
    if summary is not None and dist.get_rank() == 0:
        _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    out = Console()
    last = summary["metrics"][-1] if summary["metrics"] else {}
    val = last.get("val", {})
    extra = f", val MPJPE {val['mpjpe']:.1f} mm" if "mpjpe" in val else ""
    out.print(f"[green]done[/green]: {summary['steps']} steps, {summary['epochs']} epochs, "
              f"{summary['nan_steps']} skipped{extra}")
    out.print(f"run folder: {summary['run_dir']}  checkpoint: {summary['checkpoint']}")
