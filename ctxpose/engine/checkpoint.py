"""Run checkpoints: everything needed to continue a training run bit-for-bit.

A run checkpoint is a plain dict of tensors and primitive containers, so it loads with
``torch.load(weights_only=True)``::

    {"format": "ctxpose-run", "version": 2,
     "model": state_dict of the unwrapped model,
     "optimizers": {name: state_dict}, "schedulers": {name: state_dict}, "scaler": state_dict | None,
     "epoch": epoch to continue from, "epoch_step": batches already done in that epoch,
     "step": global optimiser steps, "nan_steps": skipped steps so far,
     "rng": [per rank {"python", "numpy", "torch", "cuda"}] (see ctxpose.utils.seed), "world_size": W,
     "config": resolved config dict}

Files are written atomically (temp file, then rename), so an interrupted write never leaves a
truncated ``last.pt``. A checkpoint always holds the state after a completed step: training stops
only between steps (:mod:`ctxpose.utils.signals`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctxpose.errors import CheckpointError
from ctxpose.utils.io import load_weights_only, torch_save_atomic
from ctxpose.utils.seed import set_rng_state

logger = logging.getLogger(__name__)

FORMAT = "ctxpose-run"
VERSION = 2


@dataclass
class TrainState:
    """Position of a run: where the next optimiser step starts."""

    epoch: int = 0
    epoch_step: int = 0
    step: int = 0
    nan_steps: int = 0


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
    rng_states: list[dict[str, Any]],
) -> Path:
    """Write a run checkpoint atomically; returns the path.

    Args:
        rng_states: every rank's generator states (:func:`ctxpose.utils.seed.get_rng_state`), in rank order.
    """
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
        "rng": list(rng_states),
        "world_size": len(rng_states),
        "config": config,
    }
    path = Path(path)
    torch_save_atomic(payload, path)
    logger.debug("saved %s (epoch %d, step %d)", path, state.epoch, state.step)
    return path


def read_run_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a run checkpoint dict (CPU tensors) with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, unreadable, refused or not a ctxpose run checkpoint.
    """
    path = Path(path)
    payload = load_weights_only(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a ctxpose run checkpoint (expected key format={FORMAT!r}); "
                              "use model.checkpoint for plain weights")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: run checkpoint version {payload.get('version')}, this ctxpose reads "
                              f"version {VERSION}; start the run again or use it as model.checkpoint (weights only)")
    payload["path"] = str(path)
    return payload


def restore_run_checkpoint(
    payload: dict[str, Any],
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    scaler: Any | None,
) -> TrainState:
    """Load model, optimiser, scheduler and scaler states in place; returns the run position.

    Raises:
        CheckpointError: the stored parts do not match the model or the optimiser groups (names the file
            and the mismatched keys).
    """
    from ctxpose.models.build import load_state_dict_strict

    source = payload.get("path", "run checkpoint")
    load_state_dict_strict(unwrap(model), payload["model"], f"{source} (--resume)")
    for kind, objs in (("optimizers", optimizers), ("schedulers", schedulers)):
        stored = payload[kind]
        if set(stored) != set(objs):
            raise CheckpointError(f"{source}: {kind} {sorted(stored)} stored, expected {sorted(objs)} "
                                  "(was model.backbone.fix_weights changed?)")
        for name, obj in objs.items():
            try:
                obj.load_state_dict(stored[name])
            except (ValueError, KeyError, RuntimeError) as e:
                raise CheckpointError(f"{source}: {kind}.{name} does not fit ({_first(e)})") from None
    if scaler is not None and scaler.is_enabled() and payload.get("scaler") is not None:
        scaler.load_state_dict(payload["scaler"])
    return TrainState(epoch=int(payload["epoch"]), epoch_step=int(payload["epoch_step"]),
                      step=int(payload["step"]), nan_steps=int(payload["nan_steps"]))


def restore_rng(payload: dict[str, Any], rank: int, world_size: int) -> bool:
    """Restore this rank's generator states from a run checkpoint.

    Returns:
        False (nothing restored) when the checkpoint was written by a run with another number of processes.
    """
    states = payload["rng"]
    if len(states) != world_size:
        return False
    set_rng_state(states[rank])
    return True


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
