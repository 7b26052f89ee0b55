"""Rotations (batched, torch)."""

from __future__ import annotations

import torch


def axis_angle_to_matrix(axis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Counter-clockwise rotation by ``theta`` about ``axis`` (Rodrigues).

    Equals the original's quaternion formula ``volumetric.get_rotation_matrix``.

    Args:
        axis: (3,) or (B, 3) rotation axis (normalised here).
        theta: (B,) angles, radians.

    Returns:
        (B, 3, 3) rotation matrices, ``theta``'s dtype and device.
    """
    theta = torch.as_tensor(theta)
    axis = torch.as_tensor(axis, dtype=theta.dtype, device=theta.device)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    axis = axis.expand(theta.shape[0], 3)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(-1, 3, 3)
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    eye = torch.eye(3, dtype=theta.dtype, device=theta.device)
    return cos * eye + sin * cross + (1 - cos) * axis[:, :, None] * axis[:, None, :]
