"""Training losses of ContextPose and the global-attention target.

Mirrors ``mvn/models/loss.py`` and ``calc_ga_mask`` of the original, vectorised (no per-sample loops or
``.cpu()`` calls). Quirks kept by default: the volumetric cross-entropy divides by B*J, counting invalid
joints (``volumetric_ce_denominator: valid`` divides by the valid ones); the attention target grid starts
at the cuboid's corner voxel with sigma from the first sample (``ga_mask_grid: exact`` uses the centres
of the pooled cells and per-sample sigma).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ctxpose.config import LossConfig, VolumeNetConfig
from ctxpose.geometry.volumes import build_coord_volumes
from ctxpose.models.contextpose import ContextPoseOutput


def _validity(validity: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, J) or (B, J, 1) -> (B, J, 1) in ``like``'s floating dtype."""
    return (validity if validity.dim() == 3 else validity[..., None]).to(like.dtype)


def keypoints_loss(pred: torch.Tensor, gt: torch.Tensor, validity: torch.Tensor, criterion: str = "MAE",
                   smooth_threshold: float = 400.0) -> torch.Tensor:
    """Keypoint regression loss over valid joints, normalised as the original: sum / (D * n_valid).

    Args:
        pred, gt: (B, J, D) keypoints (any unit; the trainer scales mm by ``loss.scale_keypoints_3d``).
        validity: (B, J) or (B, J, 1), 1 for valid joints.
        criterion: "MAE", "MSE" or "MSESmooth" (squared errors above ``smooth_threshold`` grow as x^0.1).
    """
    v = _validity(validity, pred)
    dim = pred.shape[-1]
    denom = dim * v.sum().clamp(min=1.0)
    if criterion == "MAE":
        return ((gt - pred).abs() * v).sum() / denom
    diff = (gt - pred) ** 2 * v
    if criterion == "MSESmooth":
        big = diff > smooth_threshold
        diff = torch.where(big, diff.clamp(min=1e-12) ** 0.1 * smooth_threshold**0.9, diff)
    elif criterion != "MSE":
        raise ValueError(f"unknown keypoint criterion {criterion!r}")
    return diff.sum() / denom


def volumetric_ce_loss(coord_volumes: torch.Tensor, volumes: torch.Tensor, keypoints_gt: torch.Tensor,
                       validity: torch.Tensor, denominator: str = "original") -> torch.Tensor:
    """-log probability of the voxel nearest to each ground-truth joint.

    Args:
        coord_volumes: (B, S, S, S, 3) voxel positions, world mm.
        volumes: (B, J, S, S, S) probability volumes (softmax over voxels).
        keypoints_gt: (B, J, 3) world mm.
        validity: (B, J) or (B, J, 1).
        denominator: "original" (B*J) or "valid" (number of valid joints).
    """
    b, j = volumes.shape[:2]
    points = coord_volumes.reshape(b, -1, 3)
    with torch.no_grad():
        dist = torch.cdist(keypoints_gt.to(points.dtype), points, compute_mode="donot_use_mm_for_euclid_dist")
        nearest = dist.argmin(dim=-1, keepdim=True)  # (B, J, 1)
    prob = volumes.reshape(b, j, -1).gather(2, nearest)  # (B, J, 1)
    v = _validity(validity, prob)
    total = (v * -torch.log(prob + 1e-6)).sum()
    if denominator == "original":
        return total / (b * j)
    if denominator == "valid":
        return total / v.sum().clamp(min=1.0)
    raise ValueError(f"unknown volumetric CE denominator {denominator!r}")


def global_attention_target(keypoints_gt: torch.Tensor, base_points: torch.Tensor,
                            rotation_angles: torch.Tensor | None, cuboid_size: float, volume_size: int,
                            rotation_axis: tuple[float, float, float] = (0.0, 0.0, 1.0), sigma: float = 2.0,
                            grid: str = "original") -> torch.Tensor:
    """Target of the global attention: a Gaussian around each joint on the pooled (S/4)^3 grid.

    Args:
        keypoints_gt: (B, J, 3) world mm.
        base_points: (B, 3) cuboid centres, world mm. rotation_angles: (B,) radians or None.
        cuboid_size: mm. volume_size: S of the full volume.
        sigma: Gaussian sigma in pooled voxels.
        grid: "original" (grid from the cuboid's corner voxel spaced 4 full voxels, sigma of the first sample)
            or "exact" (centres of the pooled cells, per-sample sigma).

    Returns:
        (B, J, (S/4)^3) target distributions (softmax over voxels).
    """
    s = volume_size // 4
    step = cuboid_size / (volume_size - 1)
    corner = base_points - cuboid_size / 2
    if grid == "original":
        side = cuboid_size - 3 * cuboid_size / (volume_size - 1)
    elif grid == "exact":
        corner = corner + 1.5 * step
        side = 4 * (s - 1) * step
    else:
        raise ValueError(f"unknown attention target grid {grid!r}")
    aux = build_coord_volumes(base_points, cuboid_size, s, rotation_angles, rotation_axis, corner=corner, side=side)
    b = aux.shape[0]
    points = aux.reshape(b, 1, -1, 3)
    dist = torch.linalg.vector_norm(points - keypoints_gt[:, :, None, :].to(points.dtype), dim=-1)  # (B, J, n)
    spacing = torch.linalg.vector_norm(aux[:, 0, 0, 1] - aux[:, 0, 0, 0], dim=-1)  # (B,)
    if grid == "original":
        spacing = spacing[:1]
    sig = sigma * spacing.view(-1, 1, 1)
    return F.softmax(-dist**2 / (2 * sig**2), dim=2)


def compute_losses(out: ContextPoseOutput, keypoints_gt: torch.Tensor, validity: torch.Tensor,
                   loss_cfg: LossConfig, volume_cfg: VolumeNetConfig,
                   rotation_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> dict[str, torch.Tensor]:
    """All training losses with the config's weights.

    Args:
        out: the network's output.
        keypoints_gt: (B, J, 3) world mm. validity: (B, J) or (B, J, 1).

    Returns:
        ``{"keypoints", "volumetric_ce"?, "global_attention"?, "total"}``: scalar tensors; ``total`` is the
        weighted sum the trainer back-propagates; the terms are unweighted.
    """
    for key, field in (("use_volumetric_ce_loss", "volumes"), ("use_global_attention_loss", "attention")):
        if getattr(loss_cfg, key) and getattr(out, field, None) is None:  # the config refuses these; a caller may not
            raise ValueError(f"loss.{key}: the model's output has no {field} ({type(out).__name__}); set it to false")
    scale = loss_cfg.scale_keypoints_3d
    losses = {"keypoints": keypoints_loss(out.keypoints_3d * scale, keypoints_gt * scale, validity,
                                          loss_cfg.criterion, loss_cfg.mse_smooth_threshold)}
    total = losses["keypoints"]
    if loss_cfg.use_volumetric_ce_loss:
        losses["volumetric_ce"] = volumetric_ce_loss(out.coord_volumes, out.volumes, keypoints_gt, validity,
                                                     loss_cfg.volumetric_ce_denominator)
        total = total + loss_cfg.volumetric_ce_loss_weight * losses["volumetric_ce"]
    if loss_cfg.use_global_attention_loss:
        target = global_attention_target(keypoints_gt, out.base_points, out.rotation_angles, volume_cfg.cuboid_size,
                                         volume_cfg.volume_size, rotation_axis, volume_cfg.ga_mask_sigma,
                                         volume_cfg.ga_mask_grid)
        losses["global_attention"] = F.mse_loss(out.attention.to(target.dtype), target)
        total = total + loss_cfg.global_attention_loss_weight * losses["global_attention"]
    losses["total"] = total
    return losses
