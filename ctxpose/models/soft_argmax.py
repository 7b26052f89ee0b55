"""Soft-argmax: expected voxel (or pixel) index and expected world position of each joint's volume.

Mirrors ``op.integrate_tensor_3d`` and ``op.integrate_tensor_3d_with_coordinates`` of the original, and
(through the same two functions on 2D maps) learnable-triangulation's ``op.integrate_tensor_2d``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def volume_probabilities(volumes: torch.Tensor, softmax: bool = True) -> torch.Tensor:
    """Softmax over all voxels of each volume (``softmax=True``) or ReLU, as the original.

    Args:
        volumes: (B, J, S1, S2, S3) scores (or (B, J, h, w) heatmaps: any number of spatial axes).

    Returns:
        probabilities (or non-negative masses) of the same shape.
    """
    b, j = volumes.shape[:2]
    flat = volumes.reshape(b, j, -1)
    flat = F.softmax(flat, dim=2) if softmax else F.relu(flat)
    return flat.view_as(volumes)


def soft_argmax_voxel(probabilities: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Expected voxel index of each volume.

    Args:
        probabilities: (B, J, S1, S2, S3) from :func:`volume_probabilities` (or (B, J, h, w): any number
            of spatial axes).
        normalize: divide by the total mass (needed when the volumes are ReLU masses, not a softmax).

    Returns:
        (B, J, 3) coordinates in voxels, (index along S1, S2, S3) ((B, J, 2) (row, column) for 2D maps).
    """
    dims = probabilities.shape[2:]
    spatial = tuple(range(2, 2 + len(dims)))
    coords = []
    for axis, size in enumerate(dims):  # the spatial axes, not a data loop
        other = tuple(d for d in spatial if d != axis + 2)
        mass = probabilities.sum(dim=other)  # (B, J, size)
        pos = (mass * torch.arange(size, dtype=mass.dtype, device=mass.device)).sum(-1)
        coords.append(pos / mass.sum(-1) if normalize else pos)
    return torch.stack(coords, dim=-1)


def soft_argmax_world(probabilities: torch.Tensor, coord_volumes: torch.Tensor,
                      normalize: bool = False) -> torch.Tensor:
    """Expected world position of each volume.

    Args:
        probabilities: (B, J, S1, S2, S3).
        coord_volumes: (B, S1, S2, S3, 3) voxel centres, world mm.
        normalize: divide by the total mass. The original does NOT for ReLU volumes (a quirk; softmax
            volumes already sum to one).

    Returns:
        (B, J, 3) world coordinates, mm.
    """
    b, j = probabilities.shape[:2]
    flat = probabilities.reshape(b, j, -1)
    out = torch.bmm(flat, coord_volumes.reshape(b, -1, 3).to(flat.dtype))
    return out / flat.sum(-1, keepdim=True) if normalize else out
