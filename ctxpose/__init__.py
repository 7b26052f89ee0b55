"""ctxpose: ContextPose (Ma et al., CVPR 2021) for 3D human pose estimation.

Public API (every module is imported on first use, so ``ctxpose --version`` stays fast)::

    import ctxpose
    cfg = ctxpose.load_config("configs/human36m_contextpose.yaml", ["val.batch_size=4"])
    model = ctxpose.load_model(cfg, "weights.pth")   # ours or the original's released weights, eval mode
    out = model(images, proj_matrices, root_points)  # see README, "Python API"
"""

from __future__ import annotations

import importlib
from typing import Any

from ctxpose._version import __version__

_LAZY = {
    "ExperimentConfig": "ctxpose.config",
    "load_config": "ctxpose.config",
    "build_model": "ctxpose.models.build",
    "load_checkpoint": "ctxpose.models.build",
    "load_backbone_checkpoint": "ctxpose.models.build",
    "load_model": "ctxpose.models.build",
    "model_from_config": "ctxpose.models.build",
    "ContextPoseNet": "ctxpose.models.contextpose",
    "ContextPoseOutput": "ctxpose.models.contextpose",
    "LimbPrior": "ctxpose.skeleton",
    "load_limb_prior": "ctxpose.models.build",
    "compute_losses": "ctxpose.losses",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ctxpose' has no attribute {name!r}")
