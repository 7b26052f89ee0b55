"""learnable-triangulation's algebraic and RANSAC multi-view networks (Iskakov et al., ICCV 2019).

Mirror ``AlgebraicTriangulationNet`` and ``RANSACTriangulationNet`` of karfly/learnable-triangulation-pytorch
(``mvn/models/triangulation.py``), keeping the backbone's module names (so the released weights load):
pose-ResNet heatmaps (and, for the algebraic model, its per-joint confidence head ``alg_confidences``) ->
2D keypoints -> triangulation over the views. Inputs and outputs follow the contract of
:mod:`ctxpose.models.triangulation`. Differences, none of which changes the algebraic model's numbers: no loops
over samples or joints (one batched SVD); the RANSAC search tries every view pair instead of 10 random ones
(see :func:`~ctxpose.models.triangulation.ransac_triangulate`).
"""

from __future__ import annotations

import torch
from torch import nn

from ctxpose.errors import ConfigError
from ctxpose.models.pose_resnet import PoseResNet
from ctxpose.models.soft_argmax import soft_argmax_voxel, volume_probabilities
from ctxpose.models.triangulation import TriangulationOutput, ransac_triangulate, triangulate_dlt


def _to_image_pixels(keypoints: torch.Tensor, image_hw: tuple[int, int], heatmap_hw: tuple[int, int]) -> torch.Tensor:
    """(..., 2) heatmap (x, y) -> crop pixels, as the original (x * W/w, y * H/h)."""
    scale = torch.tensor([image_hw[1] / heatmap_hw[1], image_hw[0] / heatmap_hw[0]], dtype=keypoints.dtype,
                         device=keypoints.device)
    return keypoints * scale


def _check_input(images: torch.Tensor, proj_matrices: torch.Tensor) -> tuple[int, int]:
    if images.dim() != 5 or proj_matrices.shape != (*images.shape[:2], 3, 4):
        raise ValueError(f"expected images (B, V, 3, H, W) and proj_matrices (B, V, 3, 4), got "
                         f"{tuple(images.shape)} and {tuple(proj_matrices.shape)}")
    b, v = images.shape[:2]
    if v < 2:
        raise ValueError(f"the triangulation models need at least 2 views, got {v}")
    return b, v


class AlgebraicTriangulationNet(nn.Module):
    """Heatmaps -> soft-argmax 2D keypoints -> confidence-weighted linear triangulation.

    Args:
        num_joints: J (heatmap channels).
        num_layers, style: backbone ResNet depth and block style.
        use_confidences: weight each view's rows by the confidence head's output (normalised over views);
            False: equal weights and no head.
        heatmap_multiplier: heatmaps are multiplied by it before the softmax (the original's 100).
        heatmap_softmax: softmax over each heatmap (True) or ReLU and normalise by the mass (False).
    """

    def __init__(self, num_joints: int, num_layers: int = 152, style: str = "simple", use_confidences: bool = True,
                 heatmap_multiplier: float = 100.0, heatmap_softmax: bool = True) -> None:
        super().__init__()
        self.use_confidences = use_confidences
        self.heatmap_multiplier, self.heatmap_softmax = float(heatmap_multiplier), heatmap_softmax
        self.backbone = PoseResNet(num_layers, num_joints, style=style, alg_confidences=use_confidences)

    def forward(self, images: torch.Tensor, proj_matrices: torch.Tensor, root_points: torch.Tensor | None = None,
                rotation_angles: torch.Tensor | None = None) -> TriangulationOutput:
        """Estimate 3D joints from V >= 2 calibrated views.

        Args:
            images: (B, V, 3, H, W) normalised crops.
            proj_matrices: (B, V, 3, 4) world mm -> crop pixels.
            root_points, rotation_angles: ignored (the contract's common signature).

        Returns:
            :class:`TriangulationOutput`: keypoints_3d (B, J, 3) world mm, keypoints_2d (B, V, J, 2) crop px,
            confidences (B, V, J) (normalised over views, + 1e-5), heatmaps (B, V, J, h, w) after the softmax.
        """
        b, v = _check_input(images, proj_matrices)
        heatmaps, _, conf = self.backbone(images.reshape(b * v, *images.shape[2:]))
        j = heatmaps.shape[1]
        # read-out and triangulation in float32 even under autocast (pixels and mm need the precision)
        with torch.autocast(device_type=heatmaps.device.type, enabled=False):
            dtype = images.dtype if images.is_floating_point() else torch.float32
            probs = volume_probabilities(heatmaps.to(dtype) * self.heatmap_multiplier, softmax=self.heatmap_softmax)
            rows_cols = soft_argmax_voxel(probs, normalize=not self.heatmap_softmax)  # (B*V, J, 2): (y, x)
            keypoints_2d = _to_image_pixels(rows_cols.flip(-1), tuple(images.shape[-2:]), tuple(heatmaps.shape[-2:]))
            keypoints_2d = keypoints_2d.view(b, v, j, 2)
            conf = probs.new_ones(b * v, j) if conf is None else conf.to(dtype)
            conf = conf.view(b, v, j)
            conf = conf / conf.sum(dim=1, keepdim=True) + 1e-5  # as the original
            keypoints_3d = triangulate_dlt(proj_matrices.to(dtype), keypoints_2d, conf)
        return TriangulationOutput(keypoints_3d=keypoints_3d, keypoints_2d=keypoints_2d, confidences=conf,
                                   heatmaps=probs.view(b, v, *probs.shape[1:]))


class RansacTriangulationNet(nn.Module):
    """Heatmap argmax 2D keypoints -> RANSAC over view pairs -> triangulation of the inliers (no training).

    Args:
        num_joints: J. num_layers, style: backbone ResNet depth and block style.
        direct_optimization: refine each point on its inliers' reprojection errors (Huber loss).
        reprojection_threshold: px, below which a view is an inlier (the original's 15).
    """

    def __init__(self, num_joints: int, num_layers: int = 152, style: str = "simple",
                 direct_optimization: bool = True, reprojection_threshold: float = 15.0) -> None:
        super().__init__()
        self.direct_optimization = direct_optimization
        self.reprojection_threshold = float(reprojection_threshold)
        self.backbone = PoseResNet(num_layers, num_joints, style=style)

    def forward(self, images: torch.Tensor, proj_matrices: torch.Tensor, root_points: torch.Tensor | None = None,
                rotation_angles: torch.Tensor | None = None) -> TriangulationOutput:
        """Same inputs as :meth:`AlgebraicTriangulationNet.forward`; ``confidences`` is the inlier mask (0/1) and
        ``heatmaps`` the backbone's raw heatmaps. Not differentiable (the original's neither).

        Raises:
            ConfigError: called in training mode with autograd on (there is nothing to train).
        """
        if self.training and torch.is_grad_enabled():
            raise ConfigError("model.architecture ransac: the RANSAC baseline does not train (argmax keypoints, no "
                              "gradient; the original's neither); evaluate it with `ctxpose eval`")
        b, v = _check_input(images, proj_matrices)
        heatmaps, _, _ = self.backbone(images.reshape(b * v, *images.shape[2:]))
        j, h, w = heatmaps.shape[1:]
        with torch.autocast(device_type=heatmaps.device.type, enabled=False):
            dtype = images.dtype if images.is_floating_point() else torch.float32
            index = heatmaps.reshape(b, v, j, -1).argmax(dim=-1)
            xy = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], dim=-1).to(dtype)
            keypoints_2d = _to_image_pixels(xy, tuple(images.shape[-2:]), (h, w))
            keypoints_3d, inliers = ransac_triangulate(proj_matrices, keypoints_2d, self.reprojection_threshold,
                                                       self.direct_optimization)
        return TriangulationOutput(keypoints_3d=keypoints_3d, keypoints_2d=keypoints_2d,
                                   confidences=inliers.to(dtype), heatmaps=heatmaps.view(b, v, j, h, w))
