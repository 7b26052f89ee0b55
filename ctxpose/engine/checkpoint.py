"""Run checkpoints: everything needed to continue a training run bit-for-bit.

A run checkpoint is a plain dict of tensors and primitive containers, so it loads with
``torch.load(weights_only=True)``::

    {"format": "ctxpose-run", "version": 1,
     "model": state_dict of the unwrapped model,
     "optimizers": {name: state_dict}, "schedulers": {name: state_dict}, "scaler": state_dict | None,
     "epoch": epoch to continue from, "epoch_step": batches already done in that epoch,
     "step": global optimiser steps, "nan_steps": skipped steps so far,
     "rng": {"python", "numpy", "torch", "cuda"} (see ctxpose.utils.seed), "config": resolved config dict}

Files are written atomically (temp file, then rename), so an interrupted write never leaves a
truncated ``last.pt``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctxpose.errors import CheckpointError
from ctxpose.utils.io import torch_save_atomic
from ctxpose.utils.seed import get_rng_state, set_rng_state

logger = logging.getLogger(__name__)

FORMAT = "ctxpose-run"
VERSION = 1
LAST = "last.pt"


@dataclass
class TrainState:
    """Position of a run: where the next optimiser step starts."""

    epoch: int = 0
    epoch_step: int = 0
    step: int = 0
    nan_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def save_run_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    scaler: Any | None,
    state: TrainState,
    config: dict[str, Any],
) -> Path:
    """Write a run checkpoint atomically; returns the path."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": unwrap(model).state_dict(),
        "optimizers": {k: v.state_dict() for k, v in optimizers.items()},
        "schedulers": {k: v.state_dict() for k, v in schedulers.items()},
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "epoch": state.epoch,
        "epoch_step": state.epoch_step,
        "step": state.step,
        "nan_steps": state.nan_steps,
        "extra": state.extra,
        "rng": get_rng_state(),
        "config": config,
    }
    path = Path(path)
    torch_save_atomic(payload, path)
    logger.debug("saved %s (epoch %d, step %d)", path, state.epoch, state.step)
    return path


def read_run_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a run checkpoint dict (CPU tensors) with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, unreadable or not a ctxpose run checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for corrupt/unsafe files
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch file ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ctxpose run checkpoint (expected key format={FORMAT!r}); "
                              "use model.checkpoint for plain weights")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: run checkpoint version {payload.get('version')}, expected {VERSION}")
    return payload


def restore_run_checkpoint(
    payload: dict[str, Any],
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    scaler: Any | None,
    restore_rng: bool = True,
) -> TrainState:
    """Load model, optimiser, scheduler, scaler and RNG states in place; returns the run position.

    Raises:
        CheckpointError: the stored parts do not match the model or the optimiser groups.
    """
    try:
        unwrap(model).load_state_dict(payload["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"run checkpoint: model weights do not fit the configured model ({_first(e)})") from None
    for kind, objs in (("optimizers", optimizers), ("schedulers", schedulers)):
        stored = payload[kind]
        if set(stored) != set(objs):
            raise CheckpointError(f"run checkpoint: {kind} {sorted(stored)} stored, expected {sorted(objs)} "
                                  "(was model.backbone.fix_weights changed?)")
        for name, obj in objs.items():
            try:
                obj.load_state_dict(stored[name])
            except (ValueError, KeyError, RuntimeError) as e:
                raise CheckpointError(f"run checkpoint: {kind}.{name} does not fit ({_first(e)})") from None
    if scaler is not None and scaler.is_enabled() and payload.get("scaler") is not None:
        scaler.load_state_dict(payload["scaler"])
    if restore_rng:
        set_rng_state(payload["rng"])
    return TrainState(epoch=int(payload["epoch"]), epoch_step=int(payload["epoch_step"]),
                      step=int(payload["step"]), nan_steps=int(payload["nan_steps"]),
                      extra=dict(payload.get("extra", {})))


def find_resume_checkpoint(resume: str, logdir: str | Path, title: str) -> Path:
    """Resolve ``--resume``: a run folder, a checkpoint file, or ``auto`` (latest run of ``title``).

    Raises:
        CheckpointError: nothing to resume from.
    """
    if resume == "auto":
        runs = sorted((p for p in Path(logdir).glob(f"{title}*") if (p / "checkpoints" / LAST).is_file()),
                      key=lambda p: (p / "checkpoints" / LAST).stat().st_mtime)
        if not runs:
            raise CheckpointError(f"--resume auto: no run of {title!r} with checkpoints/{LAST} under {logdir}")
        return runs[-1] / "checkpoints" / LAST
    path = Path(resume)
    if path.is_dir():
        path = path / "checkpoints" / LAST
    if not path.is_file():
        raise CheckpointError(f"--resume {resume}: {path} not found (expected a run folder or a .pt file)")
    return path


def run_dir_of(checkpoint_path: Path) -> Path:
    """The run folder holding ``checkpoints/<file>``."""
    return checkpoint_path.resolve().parent.parent


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
