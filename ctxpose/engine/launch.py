"""Entry points that start runs on one process, N local processes or several machines.

``launch_train`` and ``launch_eval`` are what ``ctxpose train`` and ``ctxpose eval`` call, and what a
Python user calls for the same behaviour (multi-process included)::

    from ctxpose.config import load_config
    from ctxpose.engine.launch import Layout, launch_train

    result = launch_train(load_config("configs/tiny_cpu.yaml"), device="cpu", layout=Layout(nproc_per_node=2))

Inside ``torchrun`` or a SLURM task (``RANK``/``SLURM_PROCID`` set) they run in the current process
and join the job instead of spawning. Spawned workers run :func:`_train_worker` / :func:`_eval_worker`
(module level, so the elastic launcher can start them); rank 0 shows a rich progress bar.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxpose.config import Amp, DeviceKind, ExperimentConfig, Split
from ctxpose.engine import dist
from ctxpose.engine.components import Components
from ctxpose.engine.evaluator import EvalResult, MPI3DHPOptions
from ctxpose.engine.runs import new_run_dir, resolve_resume
from ctxpose.engine.trainer import TrainResult
from ctxpose.errors import ConfigError
from ctxpose.utils.io import check_writable_dir

logger = logging.getLogger(__name__)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run; the message says where its checkpoint is and how to continue."""


@dataclass(frozen=True)
class Layout:
    """Where the processes of a run go (``--gpus``/``--procs``, ``--nnodes``, ``--node-rank``...).

    Attributes:
        nproc_per_node: processes on this machine (one per GPU with CUDA).
        nnodes: machines in the job; node_rank: this machine's index.
        master_addr, master_port: the rendezvous on node 0 (port default: a free one for one machine,
            29500 for several).
    """

    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None

    def check(self, device: str) -> None:
        """Refuse impossible layouts before anything starts.

        Raises:
            ConfigError: no processes, a node rank outside the job, or more CUDA processes than GPUs.
        """
        if self.nproc_per_node < 1:
            raise ConfigError(f"--gpus/--procs {self.nproc_per_node}: expected at least 1 process")
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            raise ConfigError(f"--node-rank {self.node_rank}: expected 0..{self.nnodes - 1} (--nnodes {self.nnodes})")
        if device == DeviceKind.CUDA.value and not dist.in_launched_env():
            import torch

            count = torch.cuda.device_count()
            if self.nproc_per_node > count:
                raise ConfigError(f"--gpus {self.nproc_per_node}: this machine has {count} CUDA device(s)")

    @property
    def single(self) -> bool:
        return self.nproc_per_node == 1 and self.nnodes == 1


def _worker_logging(verbose: bool) -> None:
    """Rank 0 logs INFO (DEBUG with ``verbose``) through rich; other ranks only warnings."""
    if not dist.in_launched_env():
        return  # the caller's logging stays as it is
    from rich.logging import RichHandler

    from ctxpose.engine.progress import stderr_console

    rank = dist.detect_env().rank
    level = (logging.DEBUG if verbose else logging.INFO) if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", force=True,
                        handlers=[RichHandler(console=stderr_console(), show_path=False)])


def _train_worker(cfg: ExperimentConfig, run_dir: str, device: str, resume: str | None, amp: Amp | None,
                  max_steps: int | None, validate: bool, show_progress: bool, verbose: bool,
                  components: Components | None) -> TrainResult:
    """One training process."""
    from ctxpose.engine.progress import train_progress
    from ctxpose.engine.trainer import train

    _worker_logging(verbose)
    with train_progress(show_progress and dist.detect_env().rank == 0) as progress:
        return train(cfg, run_dir, device, resume=resume, amp=amp, max_steps=max_steps, validate=validate,
                     progress=progress, components=components)


def _eval_worker(cfg: ExperimentConfig, checkpoint: str, device: str, split: Split, out: str | None,
                 amp: Amp | None, show_progress: bool, verbose: bool, components: Components | None,
                 mpi_inf_3dhp: MPI3DHPOptions | None) -> EvalResult:
    """One evaluation process."""
    from ctxpose.engine.evaluator import evaluate_checkpoint
    from ctxpose.engine.progress import eval_progress

    _worker_logging(verbose)
    with eval_progress(show_progress and dist.detect_env().rank == 0) as progress:
        return evaluate_checkpoint(cfg, checkpoint, device, split, out, amp, progress=progress,
                                   components=components, mpi_inf_3dhp=mpi_inf_3dhp)


def _run(worker: Callable[..., Any], args: tuple[Any, ...], layout: Layout) -> Any:
    if dist.in_launched_env() or layout.single:
        return worker(*args)
    results = dist.launch(worker, args, layout.nproc_per_node, layout.nnodes, layout.node_rank,
                          layout.master_addr, layout.master_port)
    return results.get(0)  # global rank 0 runs on node 0 only


def launch_train(
    cfg: ExperimentConfig,
    *,
    run_dir: str | Path | None = None,
    resume: str | Path | None = None,
    logdir: str | Path | None = None,
    device: DeviceKind | str | None = None,
    layout: Layout = Layout(),
    amp: Amp | str | None = None,
    max_steps: int | None = None,
    validate: bool = True,
    show_progress: bool = True,
    verbose: bool = False,
    components: Components | None = None,
) -> TrainResult | None:
    """Train on the processes of ``layout`` and return rank 0's result.

    Args:
        cfg: experiment config.
        run_dir: folder of a new run (default ``<logdir>/<title>_<time>``); not with ``resume``.
        resume: a run folder, its checkpoint file or ``"auto"`` (the latest run of ``cfg.title`` under
            ``logdir``): the run continues in its own folder.
        logdir: parent of run folders (default ``cfg.logdir``).
        device: ``cpu`` or ``cuda`` (default: cuda when available).
        layout: processes per machine and machines.
        amp: ``None``, ``"bf16"`` or ``"fp16"``.
        max_steps: stop (and checkpoint) after this many global steps.
        validate: evaluate the val split after every epoch.
        show_progress: a progress bar on rank 0.
        verbose: debug logging in spawned workers.
        components: model/loss/dataset factories (module-level functions; default the real pieces).

    Returns:
        The :class:`~ctxpose.engine.trainer.TrainResult` of global rank 0 (None on the other machines).

    Raises:
        RunInterrupted: Ctrl-C/SIGTERM stopped a multi-process run (every rank checkpointed its last step).
        ConfigError, CheckpointError, DistributedError: one-line user-facing failures.
    """
    device_name = dist.default_device(getattr(device, "value", device))
    layout.check(device_name)
    amp = Amp(amp) if amp is not None else None
    logdir = Path(logdir if logdir is not None else cfg.logdir)
    checkpoint = None
    if resume is not None:
        if run_dir is not None:
            raise ConfigError("run_dir and resume: a resumed run continues in its own folder; give one of them")
        checkpoint, run_dir = resolve_resume(str(resume), logdir, cfg.title)
    elif run_dir is None:
        run_dir = new_run_dir(logdir, cfg.title)
    run_dir = Path(run_dir)
    check_writable_dir(run_dir)
    args = (cfg, str(run_dir), device_name, None if checkpoint is None else str(checkpoint), amp, max_steps,
            validate, show_progress, verbose, components)
    try:
        return _run(_train_worker, args, layout)
    except KeyboardInterrupt as e:
        raise RunInterrupted(f"the run stopped after its current step; continue it with --resume {run_dir}"
                             ) from e


def launch_eval(
    cfg: ExperimentConfig,
    checkpoint: str | Path,
    *,
    split: Split | str = Split.VAL,
    out_dir: str | Path | None = None,
    device: DeviceKind | str | None = None,
    layout: Layout = Layout(),
    amp: Amp | str | None = None,
    show_progress: bool = True,
    verbose: bool = False,
    components: Components | None = None,
    mpi_inf_3dhp: MPI3DHPOptions | None = None,
) -> EvalResult | None:
    """Evaluate ``checkpoint`` on the processes of ``layout``; rank 0 writes ``out_dir`` (checked first).

    ``split`` picks the config's Human3.6M split; ``mpi_inf_3dhp`` evaluates on the MPI-INF-3DHP test set instead.

    Returns:
        The :class:`~ctxpose.engine.evaluator.EvalResult` of global rank 0 (None on the other machines).
    """
    device_name = dist.default_device(getattr(device, "value", device))
    layout.check(device_name)
    if out_dir is not None:
        check_writable_dir(Path(out_dir))
    args = (cfg, str(checkpoint), device_name, Split(split), None if out_dir is None else str(out_dir),
            Amp(amp) if amp is not None else None, show_progress, verbose, components, mpi_inf_3dhp)
    return _run(_eval_worker, args, layout)
