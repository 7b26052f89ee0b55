"""Numpy-or-torch dispatch that never imports torch.

Helpers that accept numpy arrays and torch tensors alike (:mod:`ctxpose.geometry`) ask :func:`torch_of` which
kind they were given instead of ``isinstance(x, torch.Tensor)`` with a module-level ``import torch``: if torch
was never imported no object can be a tensor, so the numpy-only paths (``preprocess``, whose worker processes
would otherwise spend 1-2 s of CPU each importing torch) never load it.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any


def torch_of(value: Any) -> ModuleType | None:
    """The ``torch`` module if ``value`` is a torch tensor, else None; imports nothing."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return torch
    return None
