"""V2V 3D encoder-decoder (Moon et al. 2018): ContextPose's, with the attention as its middle block, and
learnable-triangulation's plain one.

:class:`V2VNet` mirrors ``mvn/models/v2v_net.py`` of ContextPose, keeping its module names (and so its
state_dict keys): ``front_layers``, ``encoder_decoder`` (``encoder_pool1`` ... ``mid_res`` ... ``skip_res2``)
and ``output_layer``. The channel widths are multiples of the joint count (17, 34, 51 for 17 joints, as the
original). :class:`PlainV2VNet` mirrors ``V2VModel`` of karfly/learnable-triangulation-pytorch
(``mvn/models/v2v.py``): five pooling levels of fixed widths (32 to 128 channels), ``back_layers``, no
attention; the same blocks and module names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctxpose.models.context_attention import AttentionConv3D


class Basic3DBlock(nn.Module):
    """Conv3d (k x k x k) + BN + ReLU."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(in_planes, out_planes, kernel_size, stride=1, padding=(kernel_size - 1) // 2),
            nn.BatchNorm3d(out_planes),
            nn.ReLU(True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


def _skip(in_planes: int, out_planes: int) -> nn.Sequential:
    if in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(nn.Conv3d(in_planes, out_planes, 1), nn.BatchNorm3d(out_planes))


class Res3DBlock(nn.Module):
    """Two 3x3x3 convs with BN and a (projected) skip connection."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.res_branch = nn.Sequential(
            nn.Conv3d(in_planes, out_planes, 3, padding=1),
            nn.BatchNorm3d(out_planes),
            nn.ReLU(True),
            nn.Conv3d(out_planes, out_planes, 3, padding=1),
            nn.BatchNorm3d(out_planes),
        )
        self.skip_con = _skip(in_planes, out_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.res_branch(x) + self.skip_con(x), True)


class AttenRes3DBlock(nn.Module):
    """Residual block whose first conv is the limb-length-prior attention."""

    def __init__(self, in_planes: int, out_planes: int, attention: AttentionConv3D) -> None:
        super().__init__()
        self.atten_conv = attention
        self.res_branch = nn.Sequential(
            nn.BatchNorm3d(out_planes),
            nn.ReLU(True),
            nn.Conv3d(out_planes, out_planes, 3, padding=1),
            nn.BatchNorm3d(out_planes),
        )
        self.skip_con = _skip(in_planes, out_planes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        res, attention = self.atten_conv(x)
        return F.relu(self.res_branch(res) + self.skip_con(x), True), attention


class Pool3DBlock(nn.Module):
    def __init__(self, pool_size: int) -> None:
        super().__init__()
        self.pool_size = pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(x, kernel_size=self.pool_size, stride=self.pool_size)


class Upsample3DBlock(nn.Module):
    """Transposed conv (2x2x2, stride 2) + BN + ReLU."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ConvTranspose3d(in_planes, out_planes, kernel_size=2, stride=2),
            nn.BatchNorm3d(out_planes),
            nn.ReLU(True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class EncoderDecoder(nn.Module):
    """Two pooling levels; the attention block sits at the coarsest (1/4) resolution.

    The original class is spelled ``EncoderDecorder``; the attribute names (state_dict keys) are kept.
    """

    def __init__(self, widths: tuple[int, int], att_channels: int, attention: AttentionConv3D) -> None:
        super().__init__()
        w2, w3 = widths
        self.encoder_pool1 = Pool3DBlock(2)
        self.encoder_res1 = Res3DBlock(w2, w3)
        self.encoder_pool2 = Pool3DBlock(2)
        self.encoder_res2 = Res3DBlock(w3, att_channels)
        self.mid_res = AttenRes3DBlock(att_channels, att_channels, attention)
        self.decoder_res2 = Res3DBlock(att_channels, att_channels)
        self.decoder_upsample2 = Upsample3DBlock(att_channels, w3)
        self.decoder_res1 = Res3DBlock(w3, w3)
        self.decoder_upsample1 = Upsample3DBlock(w3, w2)
        self.skip_res1 = Res3DBlock(w2, w2)
        self.skip_res2 = Res3DBlock(w3, w3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip_x1 = self.skip_res1(x)
        x = self.encoder_res1(self.encoder_pool1(x))
        skip_x2 = self.skip_res2(x)
        x = self.encoder_res2(self.encoder_pool2(x))
        x, attention = self.mid_res(x)
        x = self.decoder_upsample2(self.decoder_res2(x)) + skip_x2
        x = self.decoder_upsample1(self.decoder_res1(x)) + skip_x1
        return x, attention


class V2VNet(nn.Module):
    """Volume-to-volume network.

    Args:
        input_channels: channels of the unprojected volume (32 features, or J heatmaps).
        output_channels: J, one output volume per joint.
        att_channels: channels of the attention block.
        attention: the attention block (built by the caller with the limb prior).
        base_width: width of the first level (the joint count in the original); the levels are 1x, 2x, 3x.
    """

    def __init__(self, input_channels: int, output_channels: int, att_channels: int, attention: AttentionConv3D,
                 base_width: int) -> None:
        super().__init__()
        w1, w2, w3 = base_width, 2 * base_width, 3 * base_width
        self.front_layers = nn.Sequential(Basic3DBlock(input_channels, w1, 3), Res3DBlock(w1, w2))
        self.encoder_decoder = EncoderDecoder((w2, w3), att_channels, attention)
        self.output_layer = nn.Conv3d(w2, output_channels, kernel_size=1)
        self._initialize_weights()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x: (B, C_in, S, S, S). Returns: volumes (B, J, S, S, S) and attention (B, J, (S/4)^3)."""
        x, attention = self.encoder_decoder(self.front_layers(x))
        return self.output_layer(x), attention

    def _initialize_weights(self) -> None:
        # as the original: every 3D conv, including the attention's per-joint convs, ~ N(0, 0.001)
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.normal_(m.weight, 0, 0.001)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, AttentionConv3D):
                nn.init.normal_(m.joint_weight, 0, 0.001)


class PlainEncoderDecoder(nn.Module):
    """learnable-triangulation's five-level encoder-decoder (widths 32, 64, 128, 128, 128, 128); no attention."""

    WIDTHS = (32, 64, 128, 128, 128, 128)

    def __init__(self) -> None:
        super().__init__()
        w = self.WIDTHS
        for level in range(1, 6):
            self.add_module(f"encoder_pool{level}", Pool3DBlock(2))
            self.add_module(f"encoder_res{level}", Res3DBlock(w[level - 1], w[level]))
        self.mid_res = Res3DBlock(w[5], w[5])
        for level in range(5, 0, -1):
            self.add_module(f"decoder_res{level}", Res3DBlock(w[level], w[level]))
            self.add_module(f"decoder_upsample{level}", Upsample3DBlock(w[level], w[level - 1]))
        for level in range(1, 6):
            self.add_module(f"skip_res{level}", Res3DBlock(w[level - 1], w[level - 1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level in range(1, 6):  # five fixed levels, not a data loop
            skips.append(getattr(self, f"skip_res{level}")(x))
            x = getattr(self, f"encoder_res{level}")(getattr(self, f"encoder_pool{level}")(x))
        x = self.mid_res(x)
        for level in range(5, 0, -1):
            x = getattr(self, f"decoder_upsample{level}")(getattr(self, f"decoder_res{level}")(x)) + skips[level - 1]
        return x


class PlainV2VNet(nn.Module):
    """learnable-triangulation's volume-to-volume network (``V2VModel``): the volumetric baseline's.

    Args:
        input_channels: channels of the unprojected volume (32 features).
        output_channels: J, one output volume per joint.

    The input side must be a multiple of 32 (five poolings by 2).
    """

    def __init__(self, input_channels: int, output_channels: int) -> None:
        super().__init__()
        self.front_layers = nn.Sequential(Basic3DBlock(input_channels, 16, 7), Res3DBlock(16, 32),
                                          Res3DBlock(32, 32), Res3DBlock(32, 32))
        self.encoder_decoder = PlainEncoderDecoder()
        self.back_layers = nn.Sequential(Res3DBlock(32, 32), Basic3DBlock(32, 32, 1), Basic3DBlock(32, 32, 1))
        self.output_layer = nn.Conv3d(32, output_channels, kernel_size=1)
        for m in self.modules():  # as the original: Xavier-normal 3D convs, zero biases
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.xavier_normal_(m.weight)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Args: x: (B, C_in, S, S, S). Returns: volumes (B, J, S, S, S) and None (no attention)."""
        return self.output_layer(self.back_layers(self.encoder_decoder(self.front_layers(x)))), None
