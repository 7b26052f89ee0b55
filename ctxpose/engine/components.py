"""What a run is built from: model, losses, datasets, initial weights (the real ContextPose pieces by default).

The trainer and evaluator take a :class:`Components` so that tests and experiments can swap a piece
(a stand-in model, another dataset) without touching the loops. Every factory is a module-level
function, so a :class:`Components` can be sent to spawned worker processes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ctxpose.config import ExperimentConfig, Split

logger = logging.getLogger(__name__)


def default_build_model(cfg: ExperimentConfig) -> nn.Module:
    """The ContextPose network of ``cfg.model`` with the limb prior of ``cfg.dataset.limb_length_path``."""
    from ctxpose.models import model_from_config

    return model_from_config(cfg)


def default_losses(out: Any, keypoints_3d: torch.Tensor, validity: torch.Tensor,
                   cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """The paper's losses (:func:`ctxpose.losses.compute_losses`): ``{"total", ...}`` scalars."""
    from ctxpose.losses import compute_losses

    return compute_losses(out, keypoints_3d, validity, cfg.loss, cfg.model.volume_net)


def default_init_weights(model: nn.Module, cfg: ExperimentConfig) -> None:
    """Initial weights of a new run: a full checkpoint (ours or the original's) or a backbone checkpoint."""
    from ctxpose.models import load_backbone_checkpoint, load_checkpoint

    if cfg.model.init_weights and cfg.model.checkpoint:
        load_checkpoint(model, cfg.model.checkpoint)
        logger.info("initial weights: %s", cfg.model.checkpoint)
    elif cfg.model.backbone.init_weights and cfg.model.backbone.checkpoint:
        load_backbone_checkpoint(model, cfg.model.backbone.checkpoint)
        logger.info("initial backbone weights: %s", cfg.model.backbone.checkpoint)


def default_dataset(cfg: ExperimentConfig, split: str) -> Dataset:
    """The Human3.6M ``split`` of ``cfg.dataset``."""
    from ctxpose.data.datasets import Human36MDataset

    return Human36MDataset.from_config(cfg, Split(split).value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Components:
    """What the trainer and evaluator build a run from; the defaults are the real ContextPose pieces.

    Attributes:
        build_model: ``cfg -> nn.Module`` with ``backbone``, ``process_features`` (optional) and ``volume_net``
            submodules, called as ``model(images, proj_matrices, root_points, rotation_angles)``; returns
            an object with ``keypoints_3d`` (B, J, 3) world mm.
        compute_losses: ``(out, keypoints_3d_gt (B, J, 3), validity (B, J), cfg) -> {name: scalar}`` with
            a ``total`` key.
        build_dataset: ``(cfg, "train" | "val") -> Dataset`` of dicts of numpy arrays.
        init_weights: ``(model, cfg) -> None`` loads initial weights of a new (not resumed) run.
    """

    build_model: Callable[[ExperimentConfig], nn.Module] = default_build_model
    compute_losses: Callable[..., dict[str, torch.Tensor]] = default_losses
    build_dataset: Callable[[ExperimentConfig, str], Dataset] = default_dataset
    init_weights: Callable[[nn.Module, ExperimentConfig], None] = default_init_weights
