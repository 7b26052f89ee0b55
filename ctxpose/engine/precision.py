"""Mixed precision: ``torch.autocast`` for bf16/fp16 and the gradient scaler fp16 needs."""

from __future__ import annotations

import contextlib

import torch

from ctxpose.config import Amp
from ctxpose.errors import ConfigError


def check_amp(device: torch.device, amp: Amp | str | None) -> Amp | None:
    """The mode as an :class:`Amp` (``None``: float32).

    Raises:
        ConfigError: an unknown mode, or fp16 off CUDA.
    """
    if amp is None:
        return None
    try:
        mode = Amp(amp)
    except ValueError:
        raise ConfigError(f"--amp {amp}: expected one of {', '.join(a.value for a in Amp)}") from None
    if mode is Amp.FP16 and device.type != "cuda":
        raise ConfigError("--amp fp16: needs a CUDA device; use bf16 on CPU")
    return mode


def autocast_context(device: torch.device, amp: Amp | str | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for bf16/fp16 on ``device``'s type; a null context for ``None``."""
    mode = check_amp(device, amp)
    if mode is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if mode is Amp.BF16 else torch.float16)


def grad_scaler(device: torch.device, amp: Amp | str | None) -> torch.amp.GradScaler:
    """A ``GradScaler`` that scales only under fp16 (bf16 has float32's range)."""
    return torch.amp.GradScaler(device.type, enabled=check_amp(device, amp) is Amp.FP16)
