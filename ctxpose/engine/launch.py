"""Where the processes of a run go, and PyTorch's elastic agent (the machinery behind ``torchrun``) to start them.

:func:`launch` runs ``fn(*args, **kwargs)``: in this process when it is one process or already one of a job started
by ``torchrun`` or SLURM (nothing is spawned), else in ``nproc_per_node`` workers started by
``torch.distributed.launcher.api.elastic_launch``, exactly as under ``torchrun`` (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``). No restarts: the first failure ends the job.

Two things are ours, each for a guarantee the agent alone does not keep:

- SIGINT/SIGTERM in the launcher are passed on to the workers (:class:`ctxpose.utils.signals.StopSignals`), which
  stop after their current step and return; the agent then collects their results as usual. The agent's own
  handling (``signals_to_handle``) stops collecting, so workers that returned would wait for it and be killed
  after its 30 s shutdown time-out.
- A worker that raised lingers :data:`FAILURE_DELAY_S` before it exits, so the agent, which reports the first
  worker it sees end, names it and not a peer whose collective broke only because it was gone.
- A worker whose launcher died (SIGKILL; torch sends the workers SIGINT, so they checkpoint and stop) exits
  instead of waiting forever for the launcher to read its result.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ctxpose.config import DeviceKind
from ctxpose.engine import dist
from ctxpose.errors import ConfigError, Stopped
from ctxpose.utils.signals import StopSignals

logger = logging.getLogger(__name__)

FAILURE_DELAY_S = 1.0  # more than the agent's monitor interval (0.1 s)


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


def free_port() -> int:
    """A TCP port that was free a moment ago on this host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(fn: Callable[..., Any], *args: Any, layout: Layout = Layout(), verbose: bool = False,
           **kwargs: Any) -> dict[int, Any]:
    """Run ``fn(*args, **kwargs)`` on the processes of ``layout``; returns this machine's results by global rank.

    ``fn`` must be a module-level function and its arguments picklable when workers are spawned. A ``Stopped``
    that ends a worker (Ctrl-C, SIGTERM) is returned by it and raised here again, so a stop reaches the caller as
    the same exception with or without workers.

    Args:
        verbose: debug logging on rank 0 of spawned workers (the caller's logging is kept otherwise).

    Raises:
        Stopped: Ctrl-C/SIGTERM stopped the workers (each kept its finished work).
        ctxpose.engine.dist.DistributedError: a worker raised or died; one line naming the rank and the cause.
    """
    if dist.in_launched_env() or layout.single:
        return {dist.detect_env().rank: fn(*args, **kwargs)}
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    port = layout.master_port if layout.master_port is not None else (free_port() if layout.nnodes == 1 else 29500)
    config = LaunchConfig(
        min_nodes=layout.nnodes, max_nodes=layout.nnodes, nproc_per_node=layout.nproc_per_node,
        run_id=f"ctxpose-{uuid.uuid4().hex[:8]}" if layout.nnodes == 1 else "ctxpose",
        rdzv_backend="static", rdzv_endpoint=f"{layout.master_addr}:{port}",
        rdzv_configs={"rank": layout.node_rank, "timeout": 600}, max_restarts=0, start_method="spawn",
        signals_to_handle="SIGHUP,SIGQUIT",  # SIGINT/SIGTERM: StopSignals passes them on to the workers
    )
    try:
        with StopSignals("the workers stop after their current step", forward=True):
            results = elastic_launch(config, _worker)(fn, verbose, args, kwargs)
    except ChildFailedError as e:
        raise dist.DistributedError(describe_failure(e)) from None
    for value in results.values():
        if isinstance(value, Stopped):
            raise value
    return results


def _worker(fn: Callable[..., Any], verbose: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A spawned worker: its logging, ``fn``, a stop returned as a value, a failure reported after a pause."""
    from rich.logging import RichHandler

    from ctxpose.engine.progress import stderr_console

    rank = dist.detect_env().rank
    level = (logging.DEBUG if verbose else logging.INFO) if rank == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", force=True,
                        handlers=[RichHandler(console=stderr_console(), show_path=False)])
    launcher = os.getppid()
    try:
        result = fn(*args, **kwargs)
    except Stopped as e:
        result = e
    except Exception:
        time.sleep(FAILURE_DELAY_S)  # see the module docstring: the root cause ends first
        raise
    finally:
        dist.cleanup()
    if os.getppid() != launcher:  # it died (torch then sends its workers SIGINT): nobody will read the result,
        os._exit(130)  # for which torch's worker would wait forever
    return result


_NO_MESSAGE = "To enable traceback see:"  # what torch's agent says of a worker that left no error file


def describe_failure(error: Any) -> str:
    """One line for a ``ChildFailedError``: the rank, its exit code or signal and the last line of its error."""
    rank, failure = error.get_first_failure()
    text = failure.message.get("message", "") if isinstance(failure.message, dict) else str(failure.message or "")
    text = "" if text.startswith(_NO_MESSAGE) else text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = f"exit code {failure.exitcode}" if failure.exitcode >= 0 else f"signal {-failure.exitcode}"
    return f"worker rank {rank} failed ({cause}){': ' + lines[-1] if lines else ''}; the other workers were stopped"
