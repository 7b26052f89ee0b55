"""Config -> model: the limb-length prior file, checkpoint loading (ours and the original's released weights),
and :func:`load_model`, the one way to get a ready network from a config and a checkpoint."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctxpose.config import ExperimentConfig, ModelConfig
from ctxpose.errors import CheckpointError, ConfigError, DataError
from ctxpose.models.algebraic import AlgebraicTriangulationNet, RansacTriangulationNet
from ctxpose.models.contextpose import ContextPoseNet
from ctxpose.skeleton import LimbPrior, Skeleton, get_skeleton

logger = logging.getLogger(__name__)


def load_limb_prior(path: str | Path, skeleton: Skeleton) -> LimbPrior:
    """Read ``mean_and_std_limb_length.h5`` (datasets ``mean`` and ``std``, mm) for ``skeleton``'s bones.

    The original file has one value per bone of the ContextPose skeleton (16); the attention uses the
    first ``skeleton.num_bones`` values, as the original does.

    Raises:
        DataError: missing file, missing dataset, or fewer values than bones.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: limb-length prior not found (expected an HDF5 file with datasets mean, std)")
    try:
        with h5py.File(path, "r") as f:
            values = {}
            for key in ("mean", "std"):
                if key not in f:
                    raise DataError(f"{path}: dataset {key!r} missing (expected datasets mean, std)")
                values[key] = np.asarray(f[key][()], dtype=np.float64).reshape(-1)
    except OSError as e:
        raise DataError(f"{path}: not a readable HDF5 file ({e})") from None
    n = skeleton.num_bones
    for key, v in values.items():
        if v.shape[0] < n:
            raise DataError(f"{path}: dataset {key!r} has {v.shape[0]} values, expected at least {n} (one per bone)")
        if not np.all(np.isfinite(v[:n])):
            raise DataError(f"{path}: dataset {key!r} has non-finite values")
    return LimbPrior(torch.from_numpy(values["mean"][:n]).float(), torch.from_numpy(values["std"][:n]).float())


def build_model(config: ExperimentConfig | ModelConfig, limb_prior: LimbPrior | None = None) -> nn.Module:
    """Build the network described by ``config.model`` (no weights loaded, no device chosen, nothing frozen:
    training decides what it trains). The config has been validated by :func:`ctxpose.config.validate_config`.

    ``model.architecture`` picks the network: ``contextpose`` (:class:`ContextPoseNet`), ``volumetric`` (the
    same without the attention block), ``algebraic`` / ``ransac`` (:mod:`ctxpose.models.algebraic`). All
    follow the forward contract of :mod:`ctxpose.models.triangulation`.

    Args:
        config: the experiment config or just its ``model`` section.
        limb_prior: bone-length mean/std (see :func:`load_limb_prior`); read only by
            ``contextpose``'s attention block, which needs it.
    """
    mc = config.model if isinstance(config, ExperimentConfig) else config
    skeleton = get_skeleton(mc.skeleton)
    vn, bb = mc.volume_net, mc.backbone
    tc = mc.triangulation
    if mc.architecture == "algebraic":
        return AlgebraicTriangulationNet(skeleton.num_joints, bb.num_layers, bb.style, tc.use_confidences,
                                         tc.heatmap_multiplier, tc.heatmap_softmax)
    if mc.architecture == "ransac":
        return RansacTriangulationNet(skeleton.num_joints, bb.num_layers, bb.style, tc.direct_optimization,
                                      tc.reprojection_threshold)
    attention = mc.architecture == "contextpose"
    if limb_prior is None:
        if attention:
            raise ConfigError("model.architecture contextpose: its attention block needs the limb prior "
                              "(dataset.limb_length_path)")
        limb_prior = LimbPrior(torch.full((skeleton.num_bones,), 300.0), torch.ones(skeleton.num_bones))  # unread
    if limb_prior.num_bones != skeleton.num_bones:
        raise ConfigError(f"limb prior has {limb_prior.num_bones} bones, skeleton {skeleton.name} has "
                          f"{skeleton.num_bones}")
    model = ContextPoseNet(
        skeleton,
        limb_prior.mean,
        limb_prior.std,
        num_layers=bb.num_layers,
        style=bb.style,
        cuboid_size=vn.cuboid_size,
        volume_size=vn.volume_size,
        att_channels=vn.att_channels,
        temperature=vn.temperature,
        aggregation=vn.volume_aggregation_method,
        use_feature_v2v=vn.use_feature_v2v,
        volume_multiplier=vn.volume_multiplier,
        volume_softmax=vn.volume_softmax,
        pairwise_grid=vn.pairwise_grid,
        normalize_relu_volumes=vn.normalize_relu_volumes,
        transfer_cmu_to_human36m=mc.transfer_cmu_to_human36m,
        attention=attention,
    )
    return model


def model_from_config(cfg: ExperimentConfig) -> nn.Module:
    """The network of ``cfg.model`` (no weights loaded); ContextPose's gets the limb prior of
    ``cfg.dataset.limb_length_path`` (the other architectures read none).

    Raises:
        DataError: ContextPose's limb prior is missing or unreadable.
    """
    if cfg.model.architecture != "contextpose":
        return build_model(cfg.model)
    return build_model(cfg.model, load_limb_prior(cfg.dataset.limb_length_path, get_skeleton(cfg.model.skeleton)))


def load_model(cfg: ExperimentConfig, checkpoint: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """:func:`model_from_config` with the weights of ``checkpoint`` (ours or the original's), on ``device``,
    in eval mode.

    Raises:
        DataError: missing limb prior. CheckpointError: missing checkpoint or weights that do not fit.
    """
    model = model_from_config(cfg)
    load_checkpoint(model, checkpoint)
    return model.to(device).eval()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state_dict safely (``weights_only=True``); unwraps ``{"model"|"state_dict": ...}`` checkpoints.

    Raises:
        CheckpointError: missing or unreadable file, or no tensors in it.
    """
    from ctxpose.utils.io import load_weights_only

    path = Path(path)
    obj: Any = load_weights_only(path)
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: no state_dict found (expected a mapping of parameter names to tensors)")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with one clear error listing missing/unexpected/mis-shaped keys."""
    state_dict = _strip_prefix(state_dict, "module.")
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state_dict)
                    if own[k].shape != state_dict[k].shape)
    if missing or unexpected or shapes:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

        parts = [f"{len(missing)} missing ({few(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({few(unexpected)})" if unexpected else "",
                 f"{len(shapes)} with other shapes ({few(shapes)})" if shapes else ""]
        raise CheckpointError(f"{source}: weights do not fit the model: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state_dict, strict=True)


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load full-model weights: ours or the original's released ``weights.pth`` (``module.`` prefix or not).

    Raises:
        CheckpointError: unreadable file, or keys/shapes that do not match (all listed in one line).
    """
    load_state_dict_strict(model, read_state_dict(path), str(path))
    logger.info("loaded weights from %s", path)


def load_backbone_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Initialise the backbone from a pose-ResNet checkpoint, as the original ``get_pose_net``.

    Accepts keys with a ``module.backbone.``, ``module.`` or ``backbone.`` prefix or none. A final layer with
    another number of joints is re-initialised (copying the common filters); other mismatches are errors.
    """
    state = read_state_dict(path)
    for prefix in ("module.backbone.", "module.", "backbone."):
        state = _strip_prefix(state, prefix)
    own = model.backbone.state_dict()
    for key in ("final_layer.weight", "final_layer.bias"):
        if key in state and key in own and state[key].shape != own[key].shape:
            new = own[key].clone()
            n = min(new.shape[0], state[key].shape[0])
            new[:n] = state[key][:n]
            logger.warning("%s: re-initialising %s (%d -> %d filters)", path, key, state[key].shape[0],
                           new.shape[0])
            state[key] = new
    for head in ("vol_confidences.", "alg_confidences."):  # confidence heads are not part of released backbones
        if not any(k.startswith(head) for k in state):
            state.update({k: v for k, v in own.items() if k.startswith(head)})
    load_state_dict_strict(model.backbone, state, str(path))
    logger.info("loaded backbone weights from %s", path)
