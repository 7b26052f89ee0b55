"""Process groups, rank helpers, collectives and synchronised batch norm.

Every helper is safe when ``torch.distributed`` is not initialised (rank 0 of 1), so one code path
serves a single CPU process, ``torchrun``, SLURM's ``srun`` and ``ctxpose train --gpus N``
(started by :func:`ctxpose.engine.launch.launch`).
"""

from __future__ import annotations

import datetime
import logging
import os
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

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
