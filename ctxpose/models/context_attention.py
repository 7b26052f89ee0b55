"""ContextPose's limb-length-prior attention (the middle block of the V2V network).

Mirrors ``AttentionConv3D`` of the original (``mvn/models/attention_conv_layer.py``) and keeps its
state_dict keys (``W_pi``, ``atten_conv``, ``convlist.{j}``). The maths per sample, with
``N = d*h*w`` voxels, ``J`` joints and ``c`` channels per joint:

* ``x_pi = W_pi(x)`` (grouped 1x1 conv), global attention ``A_j = softmax_N(atten_conv(x)_j)``;
  ``g_j = x_pi_j * A_j``; the shared feature ``share_j = sum_N g_j``.
* For every bone ``l = (a, b)`` a pairwise prior over voxel pairs,
  ``P_l[i, k] = softmax_k(-(|p_i - p_k| - mean_l)^2 / (2 T std_l^2 + 0.1))``, and for each endpoint ``j``
  of the bone ``PF_{l,j} = (g_j P_l^T) / (A_j P_l^T)``.
* Joint ``j0``'s 1x1 conv reads ``share`` in every joint's slot except its neighbours' slots, which hold the
  pairwise features propagated along the connecting bone; ``out = cat_j0(conv_j0(...)) + x_pi``.

How this differs from the original (results are the same):

* The row normalisation of ``P_l`` cancels in the ratio, and the unnormalised prior depends only on the
  offset ``k - i`` between voxels, so ``g_j P_l^T`` is a 3D correlation with a ``(2d-1, 2h-1, 2w-1)`` kernel.
  It is evaluated exactly as a grouped 1D convolution along the first axis whose channels are the other
  two axes: the weight is ``L * (h*w)^2 * (2d-1)`` floats (130 MB at the paper's 16^3) instead of the
  original's ``L * N^2`` (1 GiB), and no ``(B, C, N, N)`` temporary is ever made. All bones and joints go
  through one convolution call.
* The prior is built once without autograd and cached per (shape, cuboid, temperature, limb statistics,
  grid spacing, device, dtype), never only per shape, and never on a hard-coded device.
* The 17 per-joint 1x1 convs are applied as one batched product over the pairwise features and the
  shared vector; ``convlist.{j}.weight`` keys are kept through state_dict hooks.
* The prior is evaluated in float32 (float64 for a float64 model) even under autocast: its smallest values
  underflow in half precision.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ctxpose.skeleton import Skeleton


def pairwise_offset_kernel(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    mean: torch.Tensor,
    std: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Unnormalised pairwise prior as a function of the voxel offset.

    Args:
        shape: (d, h, w) voxels of the attention grid.
        spacing: distance between neighbouring voxels along each axis, mm.
        mean, std: (L,) bone-length statistics, mm.
        temperature: T in ``exp(-(dist - mean)^2 / (2 T std^2 + 0.1))``.

    Returns:
        (L, 2d-1, 2h-1, 2w-1) float64 kernel, ``[l, d + dx, ...]`` for offset ``dx``; each bone's
        kernel is divided by its maximum (the original's softmax normalises rows; the ratio cancels it).
    """
    axes = [torch.arange(-(n - 1), n, dtype=torch.float64, device=mean.device) * s
            for n, s in zip(shape, spacing, strict=True)]
    dx, dy, dz = torch.meshgrid(*axes, indexing="ij")
    dist = torch.sqrt(dx * dx + dy * dy + dz * dz)
    mean = mean.to(torch.float64)[:, None, None, None]
    std = std.to(torch.float64)[:, None, None, None]
    logits = -((dist - mean) ** 2) / (temperature * 2 * std**2 + 1e-1)
    return torch.exp(logits - logits.amax(dim=(1, 2, 3), keepdim=True))


def toeplitz_conv_weight(kernel: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Weights of the grouped ``conv1d`` that applies an offset kernel over a ``(d, h, w)`` grid.

    The conv runs along the first axis; its channels are the ``h*w`` positions of the other two axes.

    Args:
        kernel: (L, 2d-1, 2h-1, 2w-1) offset kernel.
        shape: (d, h, w).

    Returns:
        (L*h*w, h*w, 2d-1) weight for ``F.conv1d(..., padding=d-1, groups=L)``.
    """
    d, h, w = shape
    dev = kernel.device
    y = torch.arange(h, device=dev)
    z = torch.arange(w, device=dev)
    oy = (y[:, None, None, None] - y[None, None, :, None] + h - 1).expand(h, w, h, w)  # out (y,z), in (y',z')
    oz = (z[None, :, None, None] - z[None, None, None, :] + w - 1).expand(h, w, h, w)
    ox = torch.arange(2 * d - 2, -1, -1, device=dev)  # tap t reads x' = x + t - (d-1): offset x - x' = d-1-t
    weight = kernel[:, ox[None, None, None, None, :], oy[..., None], oz[..., None]]  # (L, h, w, h, w, 2d-1)
    return weight.reshape(kernel.shape[0] * h * w, h * w, 2 * d - 1)


class AttentionConv3D(nn.Module):
    """Limb-length-prior attention block.

    Args:
        in_channels: input channels, a multiple of the joint count.
        out_channels: output channels, a multiple of the joint count.
        skeleton: joint order and bones (bones must match the limb prior's order).
        limb_mean, limb_std: (L,) bone-length statistics, mm.
        cuboid_size: side of the cuboid the volume spans, mm.
        temperature: T of the pairwise prior.
        spacing: "original" spaces the prior grid ``cuboid_size / (s - 1)`` at the pooled side ``s`` (as the
            released weights were trained); "exact" uses the true spacing of the pooled voxels,
            ``pool * cuboid_size / (S - 1)`` with ``pool`` = full side / pooled side (set ``full_size``).
        full_size: side S of the full volume, needed for ``spacing="exact"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        skeleton: Skeleton,
        limb_mean: torch.Tensor,
        limb_std: torch.Tensor,
        cuboid_size: float,
        temperature: float,
        spacing: str = "original",
        full_size: int | None = None,
    ) -> None:
        super().__init__()
        nj = skeleton.num_joints
        if in_channels % nj or out_channels % nj:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be multiples of "
                             f"the joint count ({nj})")
        if spacing not in ("original", "exact") or (spacing == "exact" and not full_size):
            raise ValueError("spacing must be 'original', or 'exact' with full_size")
        self.num_joints = nj
        self.in_channels, self.out_channels = in_channels, out_channels
        self.cuboid_size, self.temperature = float(cuboid_size), float(temperature)
        self.spacing, self.full_size = spacing, full_size
        c = out_channels // nj
        self.W_pi = nn.Conv3d(in_channels, out_channels, 1, bias=False, groups=nj)
        self.atten_conv = nn.Conv3d(in_channels, nj, 1, bias=False, groups=nj)
        # The original's 17 convs `convlist.{j}` (out_channels -> c), stored as one (J, c, out_channels) weight.
        self.joint_weight = nn.Parameter(torch.empty(nj, c, out_channels))
        for j in range(nj):
            nn.init.xavier_normal_(self.joint_weight.data[j].view(c, out_channels, 1, 1, 1))
        bones = torch.tensor(skeleton.bones, dtype=torch.long)  # (L, 2)
        # directed edges: endpoint e of bone l feeds the other endpoint
        self.register_buffer("edge_src", bones.reshape(-1), persistent=False)  # (2L,) bone-major, e fastest
        self.register_buffer("edge_dst", bones.flip(1).reshape(-1), persistent=False)
        self.register_buffer("bones", bones, persistent=False)
        self.set_limb_prior(limb_mean, limb_std)
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._register_state_dict_hook(_split_joint_weight)
        self._register_load_state_dict_pre_hook(_merge_joint_weight, with_module=True)

    def set_limb_prior(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Replace the bone-length statistics (mm); the cached prior is keyed by their values."""
        mean_list, std_list = (
            (v.detach().cpu().reshape(-1).tolist() if isinstance(v, torch.Tensor) else [float(x) for x in v])
            for v in (mean, std)
        )
        if len(mean_list) != self.bones.shape[0] or len(std_list) != len(mean_list):
            raise ValueError(f"limb prior has {len(mean_list)} means and {len(std_list)} stds, expected "
                             f"{self.bones.shape[0]} (one per bone)")
        device = self.bones.device
        self.register_buffer("limb_mean", torch.tensor(mean_list, device=device), persistent=False)
        self.register_buffer("limb_std", torch.tensor(std_list, device=device), persistent=False)
        self._prior_key = (tuple(mean_list), tuple(std_list))

    def grid_spacing(self, shape: tuple[int, int, int]) -> tuple[float, float, float]:
        """Distance between neighbouring voxels of the attention grid along each axis, mm."""
        if self.spacing == "original":
            return tuple(self.cuboid_size / (n - 1) for n in shape)  # type: ignore[return-value]
        pool = [self.full_size / n for n in shape]
        return tuple(p * self.cuboid_size / (self.full_size - 1) for p in pool)  # type: ignore[return-value]

    def prior_weight(self, shape: tuple[int, int, int], device: torch.device,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Cached conv weight of the pairwise prior, see :func:`toeplitz_conv_weight` (no grad)."""
        spacing = self.grid_spacing(shape)
        key = (shape, spacing, self.cuboid_size, self.temperature, self._prior_key, str(device), dtype)
        weight = self._cache.get(key)
        if weight is None:
            with torch.no_grad():
                kernel = pairwise_offset_kernel(shape, spacing, self.limb_mean.to(device), self.limb_std.to(device),
                                                self.temperature)
                weight = toeplitz_conv_weight(kernel.to(dtype), shape).contiguous()
            self._cache[key] = weight
            while len(self._cache) > 4:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return weight

    def pairwise_features(self, g: torch.Tensor, att: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        """Features of each bone's endpoints propagated through the bone's pairwise prior.

        Args:
            g: (B, J, c, N) attention-weighted features.
            att: (B, J, N) global attention.
            shape: (d, h, w), N = d*h*w.

        Returns:
            (B, 2L, c, N): entry ``2l + e`` is ``(g_j P_l^T) / (A_j P_l^T)`` for ``j = bones[l][e]``.
        """
        b, _, c, n = g.shape
        d, h, w = shape
        nb = self.bones.shape[0]
        dtype = torch.promote_types(g.dtype, torch.float32)  # never half precision: the prior underflows
        with torch.autocast(device_type=g.device.type, enabled=False):
            x = torch.cat([g, att[:, :, None]], dim=2).to(dtype)  # (B, J, c+1, N)
            x = x[:, self.edge_src]  # (B, 2L, c+1, N)
            x = x.view(b, nb, 2, c + 1, d, h * w).permute(0, 2, 3, 1, 5, 4)  # (B, 2, c+1, L, hw, d)
            x = x.reshape(b * 2 * (c + 1), nb * h * w, d)
            y = F.conv1d(x, self.prior_weight(shape, g.device, dtype), padding=d - 1, groups=nb)
            y = y.view(b, 2, c + 1, nb, h * w, d).permute(0, 3, 1, 2, 5, 4).reshape(b, 2 * nb, c + 1, n)
            return y[:, :, :c] / y[:, :, c:]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the block.

        Args:
            x: (B, C_in, d, h, w) features.

        Returns:
            out: (B, C_out, d, h, w) features.
            attention: (B, J, d*h*w) global attention of each joint (softmax over voxels).
        """
        b = x.shape[0]
        shape = tuple(x.shape[2:])
        nj = self.num_joints
        x_pi = self.W_pi(x)
        n = math.prod(shape)
        c = self.out_channels // nj
        att = F.softmax(self.atten_conv(x).view(b, nj, n), dim=2)  # (B, J, N)
        g = x_pi.view(b, nj, c, n) * att[:, :, None]  # (B, J, c, N)
        share = g.sum(dim=3)  # (B, J, c)
        pf = self.pairwise_features(g, att, shape)  # (B, 2L, c, N)
        weight = self.joint_weight.view(nj, c, nj, c)  # [dst joint, out ch, slot joint, slot ch]
        base = torch.einsum("ok,bk->bo", self.joint_weight.reshape(nj * c, nj * c), share.reshape(b, nj * c))
        delta = pf.to(x_pi.dtype) - share[:, self.edge_src, :, None]  # replace the neighbour's slot
        contrib = torch.einsum("eoc,becn->beon", weight[self.edge_dst, :, self.edge_src], delta)  # (B, 2L, c, N)
        out = torch.zeros(b, nj, c, n, dtype=contrib.dtype, device=x.device).index_add_(1, self.edge_dst, contrib)
        out = out + base.view(b, nj, c, 1).to(out.dtype)
        return out.view_as(x_pi) + x_pi, att


def _split_joint_weight(module: AttentionConv3D, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    weight = state_dict.pop(prefix + "joint_weight")
    for j in range(weight.shape[0]):
        state_dict[f"{prefix}convlist.{j}.weight"] = weight[j][..., None, None, None]


def _merge_joint_weight(module: AttentionConv3D, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    keys = [f"{prefix}convlist.{j}.weight" for j in range(module.num_joints)]
    if all(k in state_dict for k in keys):
        weights = [state_dict.pop(k) for k in keys]
        state_dict[prefix + "joint_weight"] = torch.stack([w.reshape(w.shape[0], w.shape[1]) for w in weights])
