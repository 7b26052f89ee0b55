"""Lift per-view 2D feature maps into a world-space voxel volume.

Mirrors ``op.unproject_heatmaps`` of the original (which loops over samples and views) with ONE
``grid_sample`` call for all samples and views, including its conventions: pixel coordinates are
normalised with ``align_corners=True``; the x coordinate is divided by the map's height - 1 and y by its
width - 1 (the original's order; identical for square maps); voxels behind a camera get 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AGGREGATIONS = ("sum", "max", "softmax", "conf", "conf_norm")


def unproject_features(
    features: torch.Tensor,
    proj_matrices: torch.Tensor,
    coord_volumes: torch.Tensor,
    aggregation: str = "softmax",
    confidences: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample every view's feature map at the projection of every voxel and aggregate over views.

    Args:
        features: (B, V, C, h, w) feature maps.
        proj_matrices: (B, V, 3, 4) projection matrices of the feature maps (world mm -> feature px).
        coord_volumes: (B, S1, S2, S3, 3) voxel centres, world mm.
        aggregation: "sum", "max", "softmax" (softmax over views per element, then weighted sum), "conf" or
            "conf_norm" (weighted by ``confidences``; normalise them over views first for conf_norm).
        confidences: (B, V, C) per-view channel weights for the conf aggregations.

    Returns:
        (B, C, S1, S2, S3) volume.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown volume aggregation {aggregation!r}; expected one of {AGGREGATIONS}")
    b, v, c, h, w = features.shape
    volume_shape = coord_volumes.shape[1:4]
    points = coord_volumes.reshape(b, 1, -1, 3).to(proj_matrices.dtype)
    points_h = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)  # (B, 1, N, 4)
    proj = points_h @ proj_matrices.transpose(-1, -2)  # (B, V, N, 3)
    depth = proj[..., 2:]
    valid = depth > 0.0
    uv = proj[..., :2] / torch.where(depth == 0.0, torch.ones_like(depth), depth)
    scale = torch.tensor([h - 1, w - 1], dtype=uv.dtype, device=uv.device)  # the original's (x/(h-1), y/(w-1))
    grid = 2 * (uv / scale - 0.5)
    grid = grid.reshape(b * v, -1, 1, 2).to(features.dtype)
    sampled = F.grid_sample(features.reshape(b * v, c, h, w), grid, align_corners=True)  # (B*V, C, N, 1)
    sampled = sampled.view(b, v, c, -1) * valid.view(b, v, 1, -1).to(sampled.dtype)
    if aggregation == "sum":
        volume = sampled.sum(1)
    elif aggregation == "max":
        volume = sampled.max(1).values
    elif aggregation == "softmax":
        volume = (sampled * F.softmax(sampled, dim=1)).sum(1)
    else:
        if confidences is None:
            raise ValueError(f"aggregation {aggregation!r} needs per-view confidences")
        if aggregation == "conf_norm":
            confidences = confidences / confidences.sum(dim=1, keepdim=True)
        volume = (sampled * confidences.view(b, v, c, 1)).sum(1)
    return volume.view(b, c, *volume_shape)
