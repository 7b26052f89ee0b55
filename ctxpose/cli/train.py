"""``ctxpose train``: parse, build the model and the datasets, :func:`ctxpose.engine.launch.launch` the training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ctxpose.cli.options import AmpOpt, ConfigArg, DeviceOpt, GpusOpt, ProcsOpt, SetOpt, nproc


def main(
    config: ConfigArg,
    gpus: GpusOpt = None,
    procs: ProcsOpt = None,
    nnodes: Annotated[int, typer.Option(metavar="N", help="Machines in the job.")] = 1,
    node_rank: Annotated[int, typer.Option(metavar="I", help="This machine's index, 0..nnodes-1.")] = 0,
    master_addr: Annotated[str, typer.Option(metavar="HOST", help="Address of the node-rank-0 machine.")
                           ] = "127.0.0.1",
    master_port: Annotated[int | None, typer.Option(
        metavar="PORT", show_default=False,
        help="Rendezvous port on the master (default: a free port on one machine, 29500 on several).")] = None,
    device: DeviceOpt = None,
    amp: AmpOpt = None,
    resume: Annotated[str | None, typer.Option(
        metavar="RUN|FILE|auto", show_default=False,
        help="Continue a run in its own folder: the run folder, its checkpoint file, or auto (the latest run "
             "of the config's title).")] = None,
    logdir: Annotated[Path | None, typer.Option(
        metavar="DIR", show_default=False, help="Parent of run folders (default: the config's logdir).")] = None,
    max_steps: Annotated[int | None, typer.Option(
        metavar="N", show_default=False, help="Stop (and checkpoint) after this many steps.")] = None,
    no_val: Annotated[bool, typer.Option("--no-val", metavar="", help="Skip the per-epoch validation.")] = False,
    set_: SetOpt = None,
) -> None:
    """Train ContextPose; the run folder gets config.yaml, checkpoints/last.pt, metrics.json, scalars.jsonl
    and TensorBoard events. Ctrl-C stops after the current step with a checkpoint to --resume from.

    Example: ctxpose train configs/tiny_cpu.yaml --device cpu --set train.n_epochs=2

    More: ctxpose train configs/human36m_contextpose.yaml --gpus 4 --amp bf16; on two machines add
    --nnodes 2 --node-rank 0|1 --master-addr HOST; inside torchrun or srun, `torchrun --nproc-per-node 4 -m
    ctxpose train CONFIG` joins the job without spawning; --resume auto continues the latest run.
    """
    from rich.console import Console

    from ctxpose.config import load_config
    from ctxpose.data.datasets import Human36MDataset
    from ctxpose.engine.dist import default_device
    from ctxpose.engine.launch import Layout, launch
    from ctxpose.engine.runs import prepare_run_dir
    from ctxpose.engine.trainer import check_max_steps, initial_model, train

    cfg = load_config(config, set_ or [])
    n, device = nproc(gpus, procs, device)
    device_name = default_device(getattr(device, "value", device))
    layout = Layout(n, nnodes, node_rank, master_addr, master_port)
    layout.check(device_name)
    check_max_steps(max_steps)
    run_dir, checkpoint = prepare_run_dir(cfg.title, logdir if logdir is not None else cfg.logdir, resume)
    model = initial_model(cfg, initial_weights=checkpoint is None)
    train_set = Human36MDataset.from_config(cfg, "train")
    val_set = None if no_val else Human36MDataset.from_config(cfg, "val")
    result = launch(train, cfg, model, train_set, val_set, run_dir, device_name, resume=checkpoint, amp=amp,
                    max_steps=max_steps, show_progress=True, layout=layout,
                    verbose=logging.getLogger().getEffectiveLevel() <= logging.DEBUG).get(0)
    if result is None:  # not global rank 0: rank 0 reports
        return
    out = Console()
    last = result.metrics[-1] if result.metrics else {}
    val = last.get("val", {})
    extra = f", val MPJPE {val['mpjpe']:.1f} mm" if "mpjpe" in val else ""
    status = "[yellow]stopped at --max-steps[/yellow]" if result.stopped else "[green]done[/green]"
    out.print(f"{status}: {result.steps} steps, {result.epochs_completed} epochs, {result.nan_steps} skipped{extra}")
    out.print(f"run folder: {result.run_dir}  checkpoint: {result.checkpoint}")
