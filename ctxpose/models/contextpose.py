"""The ContextPose network: backbone -> 1x1 feature projection -> unprojection -> V2V with attention ->
soft-argmax; with ``attention=False``, learnable-triangulation's volumetric model (its plain V2V).

Mirrors ``VolumetricTriangulationNet`` of the original (``mvn/models/triangulation.py``) with its module
names ``backbone``, ``process_features`` and ``volume_net``. Differences, none of which changes the numbers:
inputs are tensors (projection matrices and root points, not camera objects and batch dicts); no loops over
samples or views; the cuboid rotation angles come from the caller (so training randomness is a function of
the data order, not of the process); the global-attention target is computed by the losses
(:func:`ctxpose.losses.global_attention_target`), so inference needs no ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ctxpose.geometry.volumes import build_coord_volumes
from ctxpose.models.context_attention import AttentionConv3D
from ctxpose.models.pose_resnet import PoseResNet
from ctxpose.models.soft_argmax import soft_argmax_voxel, soft_argmax_world, volume_probabilities
from ctxpose.models.unproject import unproject_features
from ctxpose.models.v2v import PlainV2VNet, V2VNet
from ctxpose.skeleton import Skeleton


@dataclass
class ContextPoseOutput:
    """What :class:`ContextPoseNet` returns (B samples, V views, J joints, S voxels per side).

    Attributes:
        keypoints_3d: (B, J, 3) world coordinates, mm.
        voxel_keypoints_3d: (B, J, 3) the same in voxel indices of the volume.
        heatmaps: (B, V, J, h, w) backbone heatmaps (h, w = input / 4).
        volumes: (B, J, S, S, S) per-joint probability volumes (softmax over voxels).
        coord_volumes: (B, S, S, S, 3) world coordinates of every voxel, mm.
        attention: (B, J, (S/4)^3) global attention of the context block (softmax over pooled voxels); None for
            the volumetric model (``attention=False``).
        base_points: (B, 3) cuboid centres (the root points), world mm.
        rotation_angles: (B,) rotation of the cuboid about the vertical axis, radians.
        vol_confidences: (B, V, C) per-view weights of the ``conf`` aggregations, else None.
    """

    keypoints_3d: torch.Tensor
    voxel_keypoints_3d: torch.Tensor
    heatmaps: torch.Tensor
    volumes: torch.Tensor
    coord_volumes: torch.Tensor
    attention: torch.Tensor | None
    base_points: torch.Tensor
    rotation_angles: torch.Tensor
    vol_confidences: torch.Tensor | None = None


class ContextPoseNet(nn.Module):
    """Single- or multi-view volumetric pose network with ContextPose's limb-length-prior attention.

    Args:
        skeleton: joint order and bones.
        limb_mean, limb_std: (L,) bone-length prior, mm.
        num_layers, style: backbone ResNet depth and block style.
        cuboid_size: cuboid side, mm. volume_size: S, voxels per side (a multiple of 4).
        att_channels: channels of the attention block (multiple of J). temperature: pairwise prior temperature.
        aggregation: how views are merged (see :func:`unproject_features`).
        use_feature_v2v: unproject 32 learned features (True) or the J heatmaps (False).
        volume_multiplier, volume_softmax: applied before the soft-argmax.
        rotation_axis: the world's vertical axis, about which training rotates the cuboid.
        pairwise_grid: "original" or "exact" spacing of the pairwise prior grid (see AttentionConv3D).
        normalize_relu_volumes: with ``volume_softmax=False``, divide the world soft-argmax by the mass
            (the original does not).
        transfer_cmu_to_human36m: the original's axis swap of the coordinate volume.
        attention: True: ContextPose (V2V with the limb-prior attention block, ``att_channels``, ``temperature``
            and ``pairwise_grid`` act); False: learnable-triangulation's volumetric model, whose V2V
            (:class:`PlainV2VNet`) has no attention and needs ``volume_size`` a multiple of 32.
    """

    def __init__(
        self,
        skeleton: Skeleton,
        limb_mean: torch.Tensor,
        limb_std: torch.Tensor,
        num_layers: int = 152,
        style: str = "simple",
        cuboid_size: float = 2500.0,
        volume_size: int = 64,
        att_channels: int = 51,
        temperature: float = 1500.0,
        aggregation: str = "softmax",
        use_feature_v2v: bool = True,
        volume_multiplier: float = 1.0,
        volume_softmax: bool = True,
        rotation_axis: tuple[float, float, float] = (0.0, 0.0, 1.0),
        pairwise_grid: str = "original",
        normalize_relu_volumes: bool = False,
        transfer_cmu_to_human36m: bool = False,
        attention: bool = True,
    ) -> None:
        super().__init__()
        nj = skeleton.num_joints
        self.skeleton = skeleton
        self.cuboid_size, self.volume_size = float(cuboid_size), volume_size
        self.aggregation = aggregation
        self.use_feature_v2v = use_feature_v2v
        self.volume_multiplier, self.volume_softmax = volume_multiplier, volume_softmax
        self.rotation_axis = tuple(rotation_axis)
        self.normalize_relu_volumes = normalize_relu_volumes
        self.transfer_cmu_to_human36m = transfer_cmu_to_human36m

        in_channels = 32 if use_feature_v2v else nj
        self.backbone = PoseResNet(num_layers, nj, style=style, vol_confidences=aggregation.startswith("conf"),
                                   num_vol_confidences=in_channels)
        if use_feature_v2v:
            self.process_features = nn.Sequential(nn.Conv2d(256, 32, 1))
            for p in self.backbone.final_layer.parameters():  # as the original: heatmaps are not trained
                p.requires_grad = False
        if attention:
            block = AttentionConv3D(att_channels, att_channels, skeleton, limb_mean, limb_std, cuboid_size,
                                    temperature, spacing=pairwise_grid, full_size=volume_size)
            self.volume_net: nn.Module = V2VNet(in_channels, nj, att_channels, block, base_width=nj)
        else:
            if volume_size % 32:
                raise ValueError(f"volume_size {volume_size}: the plain V2V pools five times by 2; use a multiple "
                                 "of 32")
            self.volume_net = PlainV2VNet(in_channels, nj)

    def build_coord_volumes(self, base_points: torch.Tensor, rotation_angles: torch.Tensor | None) -> torch.Tensor:
        """(B, S, S, S, 3) voxel positions, world mm, of the cuboid around ``base_points`` (B, 3)."""
        return build_coord_volumes(base_points, self.cuboid_size, self.volume_size, rotation_angles,
                                   self.rotation_axis, transfer_cmu_to_human36m=self.transfer_cmu_to_human36m)

    def forward(
        self,
        images: torch.Tensor,
        proj_matrices: torch.Tensor,
        root_points: torch.Tensor,
        rotation_angles: torch.Tensor | None = None,
    ) -> ContextPoseOutput:
        """Estimate 3D joints.

        Args:
            images: (B, V, 3, H, W) normalised crops (see ``ctxpose.data.transforms``).
            proj_matrices: (B, V, 3, 4) projection matrices of the crops, world mm -> crop pixels.
            root_points: (B, 3) centre of the cuboid (pelvis, ground truth or estimated), world mm.
            rotation_angles: (B,) rotation of the cuboid about the vertical axis, radians. ``None``: no
                rotation in eval mode, uniform random angles (torch's global RNG) in training mode, as the
                original; pass explicit angles for reproducible training.

        Returns:
            :class:`ContextPoseOutput`.
        """
        b, v = images.shape[:2]
        heatmaps, features, vol_conf = self.backbone(images.reshape(b * v, *images.shape[2:]))
        image_hw, heatmap_hw = images.shape[-2:], heatmaps.shape[-2:]
        # intrinsics rescaled from the image to the heatmap: K' = diag(w'/w, h'/h, 1) K
        scale = torch.tensor([heatmap_hw[1] / image_hw[1], heatmap_hw[0] / image_hw[0], 1.0],
                             dtype=torch.float64, device=proj_matrices.device)
        dtype = images.dtype if images.is_floating_point() else torch.float32
        proj_heatmap = (proj_matrices.to(torch.float64) * scale[:, None]).to(dtype)

        if rotation_angles is None and self.training:
            rotation_angles = torch.rand(b, device=root_points.device) * (2 * torch.pi)
        base_points = root_points.to(dtype)
        coord_volumes = self.build_coord_volumes(base_points, rotation_angles)

        if self.use_feature_v2v:
            features = self.process_features(features)
            v2v_input = features.view(b, v, *features.shape[1:])
        else:
            v2v_input = heatmaps.view(b, v, *heatmaps.shape[1:])
        if vol_conf is not None:
            vol_conf = vol_conf.view(b, v, -1)
        volumes = unproject_features(v2v_input, proj_heatmap, coord_volumes, self.aggregation, vol_conf)
        volumes, attention = self.volume_net(volumes)

        # The read-out runs in the input precision (float32) even under autocast: in bfloat16, world coordinates
        # of ~2 m are multiples of 8 mm, and a softmax over S^3 voxels sums to 1 only within 0.4%.
        with torch.autocast(device_type=volumes.device.type, enabled=False):
            probs = volume_probabilities(volumes.to(dtype) * self.volume_multiplier, softmax=self.volume_softmax)
            voxel_kp = soft_argmax_voxel(probs, normalize=not self.volume_softmax)
            world_kp = soft_argmax_world(probs, coord_volumes,
                                         normalize=self.normalize_relu_volumes and not self.volume_softmax)
        return ContextPoseOutput(
            keypoints_3d=world_kp,
            voxel_keypoints_3d=voxel_kp,
            heatmaps=heatmaps.view(b, v, *heatmaps.shape[1:]),
            volumes=probs,
            coord_volumes=coord_volumes,
            attention=attention,
            base_points=base_points,
            rotation_angles=rotation_angles if rotation_angles is not None else base_points.new_zeros(b),
            vol_confidences=vol_conf,
        )
