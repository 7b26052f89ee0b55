"""Coordinate volumes: the world position of every voxel of the cuboid around the root joint."""

from __future__ import annotations

import torch

from ctxpose.geometry.rotations import axis_angle_to_matrix


def build_coord_volumes(
    base_points: torch.Tensor,
    cuboid_size: float,
    volume_size: int,
    rotation_angles: torch.Tensor | None = None,
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0),
    corner: torch.Tensor | None = None,
    side: float | None = None,
    transfer_cmu_to_human36m: bool = False,
) -> torch.Tensor:
    """World coordinates of a cubic voxel grid, rotated about ``axis`` through the base point.

    Voxel ``(i, j, k)`` sits at ``corner + side / (S - 1) * (i, j, k)`` before rotation, as in the original
    ``build_coord_volume``: the first and last voxels lie on the cuboid's faces.

    Args:
        base_points: (B, 3) cuboid centres (the root joint), world mm.
        cuboid_size: side of the cuboid, mm; the corner defaults to ``base - cuboid_size / 2``.
        volume_size: S, voxels per side.
        rotation_angles: (B,) radians about ``axis`` through the base point; ``None`` means no rotation.
        axis: rotation axis (the vertical axis of the world: z for Human3.6M).
        corner: (B, 3) first voxel before rotation, world mm; default ``base - cuboid_size / 2``.
        side: extent of the grid from first to last voxel, mm; default ``cuboid_size``.
        transfer_cmu_to_human36m: swap the 2nd/3rd grid axes and flip the 2nd (original option).

    Returns:
        (B, S, S, S, 3) world coordinates, mm, ``base_points``' dtype and device.
    """
    base_points = base_points.to(torch.float32) if not base_points.is_floating_point() else base_points
    dtype, device = base_points.dtype, base_points.device
    side = cuboid_size if side is None else side
    if corner is None:
        corner = base_points - cuboid_size / 2
    idx = torch.arange(volume_size, device=device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), dim=-1)  # (S, S, S, 3)
    coords = corner[:, None, None, None, :] + (side / (volume_size - 1)) * grid  # (B, S, S, S, 3)
    if rotation_angles is not None:
        rot = axis_angle_to_matrix(torch.tensor(axis, dtype=dtype, device=device), rotation_angles.to(dtype))
        centre = base_points[:, None, None, None, :]
        coords = torch.einsum("bij,bxyzj->bxyzi", rot, coords - centre) + centre
    if transfer_cmu_to_human36m:
        coords = coords.permute(0, 1, 3, 2, 4).flip(2)
    return coords
