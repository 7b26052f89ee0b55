"""Process groups, rank helpers and the local/multi-node launcher.

Every helper is safe when ``torch.distributed`` is not initialised (rank 0 of 1), so one code path
serves a single CPU process, ``torchrun``, SLURM's ``srun`` and ``ctxpose train --gpus N``.

Launching (``launch``) uses PyTorch's elastic agent (the machinery behind ``torchrun``); it is not a
hand-made spawner. A worker that raises or dies makes the agent stop the others and
:func:`launch` raises :class:`DistributedError` with one line naming the rank and the cause.
"""

from __future__ import annotations

import datetime
import glob
import logging
import os
import pickle
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ctxpose.engine.signals import GracefulStop
from ctxpose.errors import ConfigError, CtxposeError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800  # collective timeout: a rank stuck this long fails instead of hanging forever


class DistributedError(CtxposeError):
    """A worker process failed or the distributed environment is inconsistent."""


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job (from torchrun / elastic or SLURM variables)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    source: str = "single"  # "torchrun", "slurm" or "single"


def detect_env(environ: dict[str, str] | None = None) -> DistEnv:
    """Read rank/world size from the torchrun (``RANK``...) or SLURM (``SLURM_PROCID``...) variables.

    Raises:
        DistributedError: a variable is not an integer or the ranks are out of range.
    """
    env = dict(os.environ if environ is None else environ)
    try:
        if "RANK" in env and "WORLD_SIZE" in env:
            rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
            local = int(env.get("LOCAL_RANK", "0"))
            source = "torchrun"
        elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
            rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
            local = int(env.get("SLURM_LOCALID", "0"))
            source = "slurm"
        else:
            return DistEnv()
    except ValueError as e:
        raise DistributedError(f"distributed environment: non-integer rank variable ({e})") from None
    if world < 1 or not 0 <= rank < world:
        raise DistributedError(f"distributed environment: rank {rank} is outside world size {world}")
    return DistEnv(rank, world, local, source)


def in_launched_env() -> bool:
    """True inside torchrun/elastic workers or a SLURM task: do not spawn more processes."""
    return detect_env().source != "single"


def init_distributed(device: torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistEnv:
    """Join the process group described by the environment (no-op for a single process).

    Gloo on CPU, NCCL on CUDA (this process's GPU is selected first). Under SLURM, ``MASTER_ADDR``
    defaults to the first host of ``SLURM_NODELIST`` when it is a plain name, and ``MASTER_PORT`` to 29500.

    Args:
        device: this process's device, already resolved (``cuda:LOCAL_RANK``, see :func:`resolve_device`).

    Returns:
        The detected :class:`DistEnv`.
    """
    env = detect_env()
    if env.world_size == 1 or dist.is_initialized():
        return env
    if device.type == "cuda" and device.index is None:
        raise ValueError("init_distributed needs an indexed CUDA device (resolve_device gives cuda:LOCAL_RANK)")
    if env.source == "slurm":
        os.environ.setdefault("MASTER_ADDR", _first_slurm_host())
        os.environ.setdefault("MASTER_PORT", "29500")
        os.environ["RANK"], os.environ["WORLD_SIZE"] = str(env.rank), str(env.world_size)
        os.environ["LOCAL_RANK"] = str(env.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device.index)
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size,
                            timeout=datetime.timedelta(seconds=timeout_s))
    logger.debug("rank %d/%d joined a %s group (%s)", env.rank, env.world_size, backend, env.source)
    return env


def setup_process(device: str | torch.device, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[DistEnv, torch.device]:
    """Where this process sits and computes: detect the job, resolve ``device`` for its local rank, join the group.

    Args:
        device: ``cpu``, ``cuda`` (this process takes ``cuda:LOCAL_RANK``) or an explicit device.

    Raises:
        ConfigError: CUDA asked for but absent, or fewer GPUs than local ranks.
    """
    env = detect_env()
    resolved = resolve_device(device, env.local_rank)
    return init_distributed(resolved, timeout_s), resolved


def _first_slurm_host() -> str:
    nodes = os.environ.get("SLURM_STEP_NODELIST") or os.environ.get("SLURM_NODELIST") or "127.0.0.1"
    head = nodes.split(",")[0]
    if "[" in head:  # compressed form "node[01-04]": take the prefix + first number
        prefix, rng = head.split("[", 1)
        head = prefix + rng.split("-")[0].split(",")[0].rstrip("]")
    return head


def default_device(device: str | None) -> str:
    """The ``--device`` choice: ``cuda`` when available unless one is given; only ``cpu`` or ``cuda``.

    Raises:
        ConfigError: another name, or ``cuda`` on a machine without CUDA.
    """
    from ctxpose.config import DeviceKind

    if device is None:
        return DeviceKind.CUDA.value if torch.cuda.is_available() else DeviceKind.CPU.value
    try:
        kind = DeviceKind(getattr(device, "value", device))
    except ValueError:
        raise ConfigError(f"--device {device}: expected one of {', '.join(d.value for d in DeviceKind)}") from None
    if kind is DeviceKind.CUDA and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available on this machine (use --device cpu)")
    return kind.value


def resolve_device(device: str | torch.device, local_rank: int) -> torch.device:
    """``cuda`` -> ``cuda:LOCAL_RANK`` (one GPU per local rank); anything else as given.

    Raises:
        ConfigError: CUDA is not available, or the local rank has no GPU of its own.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: CUDA is not available on this machine (use --device cpu)")
        count = torch.cuda.device_count()
        if device.index is None:
            if local_rank >= count:
                raise ConfigError(f"local rank {local_rank} has no GPU of its own: this machine has {count} CUDA "
                                  "device(s); start at most that many processes per machine")
            device = torch.device("cuda", local_rank)
    return device


def cleanup() -> None:
    """Destroy the process group if one exists."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (returns a new tensor; identity for one process)."""
    out = values.clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_gather_object(obj: Any) -> list[Any]:
    """Gather a picklable object from every rank (list in rank order; ``[obj]`` for one process).

    Uses a CPU byte tensor exchange through the default group; this module only ever pickles objects
    this process built itself (numpy arrays, numbers, strings).
    """
    if not is_distributed():
        return [obj]
    device = _collective_device()
    payload = torch.frombuffer(bytearray(pickle.dumps(obj)), dtype=torch.uint8).to(device)
    size = torch.tensor([payload.numel()], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(get_world_size())]
    dist.all_gather(sizes, size)
    max_size = int(max(s.item() for s in sizes))
    padded = torch.zeros(max_size, dtype=torch.uint8, device=device)
    padded[: payload.numel()] = payload
    chunks = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded)
    return [pickle.loads(c[: int(s.item())].cpu().numpy().tobytes()) for c, s in zip(chunks, sizes, strict=True)]


def all_gather_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Concatenate per-rank numpy arrays (any first-axis length, may be 0) in rank order."""
    parts = all_gather_object(arrays)
    out = {}
    for key in arrays:
        chunks = [p[key] for p in parts if len(p[key])] or [arrays[key]]  # empty shards may lack trailing dims
        out[key] = np.concatenate(chunks, axis=0)
    return out


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --------------------------------------------------------------------------- synchronised batch norm


class _AllReduceSum(torch.autograd.Function):
    """Differentiable sum over ranks: the gradient of a sum is the sum of the ranks' gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


class GlooSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics span all ranks; works on CPU (Gloo), unlike nn.SyncBatchNorm.

    Two-pass statistics (global mean, then global mean squared deviation) through differentiable
    all-reduces, so the backward pass sums the statistics' gradients over ranks exactly as one process
    holding the whole global batch would. Same parameters and buffers as ``nn.BatchNorm*d`` (checkpoint
    keys unchanged). Outside training or without a process group it is a plain batch norm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (N, C, ...), got {input.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and is_distributed()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        n = sums[-1]
        mean = sums[:-1] / n
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var.detach() * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        return y


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Batch norms -> synchronised ones: ``nn.SyncBatchNorm`` on CUDA, :class:`GlooSyncBatchNorm` otherwise."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlooSyncBatchNorm):
        new = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module


# --------------------------------------------------------------------------- launching


def free_port() -> int:
    """A TCP port that was free a moment ago on this host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(
    entrypoint: Callable[..., Any],
    args: Sequence[Any],
    nproc_per_node: int,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int | None = None,
) -> dict[int, Any]:
    """Run ``entrypoint(*args)`` in ``nproc_per_node`` local worker processes via the elastic agent.

    Workers see ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` (rank =
    ``node_rank * nproc_per_node + local_rank``), exactly as under ``torchrun``; ``entrypoint`` must be
    a module-level function. No restarts: the first failure ends the job. The signal handlers the agent
    installs (SIGINT, SIGTERM, SIGHUP, SIGQUIT) are the caller's again afterwards, so a later Ctrl-C is a
    ``KeyboardInterrupt`` as before.

    Returns:
        Return values of this node's workers by global rank.

    Raises:
        DistributedError: a worker raised or died (signal, exit code); names the rank and the cause.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc_per_node < 1 or nnodes < 1 or not 0 <= node_rank < nnodes:
        raise DistributedError(f"launch: invalid layout nnodes={nnodes} node_rank={node_rank} "
                               f"nproc_per_node={nproc_per_node}")
    port = master_port if master_port is not None else (free_port() if nnodes == 1 else 29500)
    config = LaunchConfig(
        min_nodes=nnodes,
        max_nodes=nnodes,
        nproc_per_node=nproc_per_node,
        run_id=f"ctxpose-{uuid.uuid4().hex[:8]}" if nnodes == 1 else "ctxpose",
        rdzv_backend="static",
        rdzv_endpoint=f"{master_addr}:{port}",
        rdzv_configs={"rank": node_rank, "timeout": 600},
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
        signals_to_handle="SIGHUP,SIGQUIT",  # SIGINT/SIGTERM: _AgentStop passes them on to the workers
    )
    from torch.distributed.elastic.multiprocessing.api import SignalException

    restore = _signal_handlers()
    stop = _AgentStop()
    try:
        with stop:
            return elastic_launch(config, _worker_main)(entrypoint, *args)
    except ChildFailedError as e:
        if stop.signal is not None:  # a worker without a graceful stop (evaluation) ended by the signal
            raise KeyboardInterrupt(f"{signal.Signals(stop.signal).name}: the workers were stopped") from None
        raise DistributedError(_describe_failure(e)) from None
    except SignalException as e:  # a signal the agent still handles itself (SIGHUP, SIGQUIT)
        raise KeyboardInterrupt(str(e)) from None
    finally:
        restore()


class _AgentStop(GracefulStop):
    """While the elastic agent runs: SIGINT/SIGTERM are passed on to the workers instead of killing them.

    Workers stop after their current step, checkpoint and return (:mod:`ctxpose.engine.signals`), and the
    agent collects their results as usual; torch's own handling would send the signal too but then wait 30 s
    for workers that are waiting for it to read their results, and kill them. A second signal more than
    :data:`ctxpose.engine.signals.REPEAT_GRACE_S` later kills the workers and stops at once.
    """

    def _on_first(self, signum: int) -> None:
        _signal_children(signum)  # also when it came from the terminal: workers take a repeat as the same

    def _on_again(self, signum: int) -> None:
        _signal_children(signal.SIGKILL)
        raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: the workers were killed")


def _signal_children(signum: int) -> None:
    """Send ``signum`` to this process's child processes (Linux: found in /proc; elsewhere nothing is sent)."""
    me = os.getpid()
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat, encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == me:
                os.kill(int(stat.split("/")[2]), signum)
        except (OSError, IndexError, ValueError):
            continue


def _signal_handlers() -> Callable[[], None]:
    """Remember this process's handlers of the signals torch's elastic agent takes over; return their restorer."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # the agent installs handlers only from the main thread
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
    saved = {sig: signal.getsignal(sig) for sig in (getattr(signal, n) for n in names if hasattr(signal, n))}

    def restore() -> None:
        for sig, handler in saved.items():
            if handler is not None:  # None: set from outside Python, cannot be put back
                signal.signal(sig, handler)

    return restore


def _worker_main(entrypoint: Callable[..., Any], *args: Any) -> Any:
    """Worker body: records the exception for the agent (error file) and leaves the group cleanly."""
    from torch.distributed.elastic.multiprocessing.errors import record

    try:
        return record(entrypoint)(*args)
    except Exception as e:
        if any(m in str(e).lower() for m in _CONSEQUENCE_MARKERS):
            # Lost a peer: give the agent time to register the peer's own (root-cause) failure first.
            time.sleep(3.0)
        raise
    finally:
        cleanup()


_CONSEQUENCE_MARKERS = ("closed by peer", "remote worker", "connection reset", "broken pipe", "timed out")


_PLACEHOLDERS = ("<NONE>", "<N/A>")  # what the elastic agent records when a worker wrote no error file


def _informative(text: str) -> str:
    """``text`` unless it is a placeholder torch's elastic agent writes when a worker left no error file."""
    text = text.strip()
    return "" if text in _PLACEHOLDERS or text.startswith("To enable traceback see:") else text


def _failure_message(failure: Any) -> str:
    data = failure.error_file_data if isinstance(failure.error_file_data, dict) else {}
    msg = data.get("message")
    message = msg.get("message", "") if isinstance(msg, dict) else (msg if isinstance(msg, str) else "")
    # no error file (e.g. killed by a signal): torch's own "Signal 9 (SIGKILL) received by PID ..."
    message = _informative(message) or _informative(str(failure.message or ""))
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _describe_failure(error: Any) -> str:
    """One line for the root failure: a rank whose error is not a lost connection to another rank."""

    def key(item: tuple[int, Any]) -> tuple[bool, float, int]:
        text = _failure_message(item[1]).lower()
        return (any(m in text for m in _CONSEQUENCE_MARKERS), item[1].timestamp, item[0])

    rank, failure = min(error.failures.items(), key=key)
    message = _failure_message(failure)
    cause = f"exit code {failure.exitcode}" if failure.exitcode >= 0 else f"signal {-failure.exitcode}"
    suffix = f": {message}" if message else ""
    return f"worker rank {rank} failed ({cause}){suffix}; the other workers were stopped"
