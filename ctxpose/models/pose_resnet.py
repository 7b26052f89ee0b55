"""Pose-ResNet backbone (Xiao et al., "Simple Baselines", 2018): ResNet + 3 deconv layers + 1x1 final layer.

Mirrors ``mvn/models/pose_resnet.py`` of the original and keeps its module names (state_dict keys):
``conv1``, ``bn1``, ``layer1``..``layer4``, ``deconv_layers``, ``final_layer`` and, for confidence-weighted
aggregation, ``vol_confidences`` (the volumetric models) or ``alg_confidences`` (the algebraic model).
"""

from __future__ import annotations

import torch
from torch import nn

BN_MOMENTUM = 0.1


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1; ``caffe=True`` puts the stride on the first 1x1 conv (original ``Bottleneck_CAFFE``)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 caffe: bool = False) -> None:
        super().__init__()
        s1, s2 = (stride, 1) if caffe else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=s2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class GlobalAveragePoolingHead(nn.Module):
    """Per-view confidence head used by the ``conf`` volume aggregation (``vol_confidences``)."""

    def __init__(self, in_channels: int, n_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 512, 3, padding=1), nn.BatchNorm2d(512, momentum=BN_MOMENTUM), nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(512, 256, 3, padding=1), nn.BatchNorm2d(256, momentum=BN_MOMENTUM), nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(
            nn.Linear(256, 512), nn.ReLU(inplace=True), nn.Linear(512, 256), nn.ReLU(inplace=True),
            nn.Linear(256, n_classes), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(2).mean(dim=-1))


RESNET_SPEC: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class PoseResNet(nn.Module):
    """ResNet-{18,34,50,101,152} with a 3x (deconv 4x4 stride 2, BN, ReLU) head: features at 1/4 of the input.

    Args:
        num_layers: ResNet depth.
        num_final_layer_channel: heatmap channels (one per joint).
        style: "simple" (torchvision-style blocks) or "caffe" (stride on the first 1x1 conv of each
            bottleneck, the original ``Bottleneck_CAFFE``; same state_dict layout). Only for the bottleneck
            depths 50, 101 and 152: ResNet-18/34 have no 1x1 conv (the original would silently build a
            bottleneck network with their block counts instead).
        vol_confidences: add the per-view confidence head (``conf`` aggregation), 32 outputs.
        num_vol_confidences: outputs of that head (the feature channels of the volume).
        alg_confidences: add the algebraic model's per-view, per-joint confidence head (one output per heatmap
            channel); at most one of the two heads.

    Raises:
        ValueError: an unknown depth or style, or style "caffe" with a basic-block depth (18, 34).
    """

    def __init__(self, num_layers: int, num_final_layer_channel: int, style: str = "simple",
                 vol_confidences: bool = False, num_vol_confidences: int = 32, alg_confidences: bool = False) -> None:
        super().__init__()
        if vol_confidences and alg_confidences:
            raise ValueError("a backbone has one confidence head: vol_confidences or alg_confidences, not both")
        if num_layers not in RESNET_SPEC:
            raise ValueError(f"num_layers must be one of {sorted(RESNET_SPEC)}, got {num_layers}")
        if style not in ("simple", "caffe"):
            raise ValueError(f"style must be 'simple' or 'caffe', got {style!r}")
        block, layers = RESNET_SPEC[num_layers]
        if style == "caffe" and block is not Bottleneck:
            raise ValueError(f"style 'caffe' puts the stride on a bottleneck's first 1x1 conv; ResNet-{num_layers} "
                             "has basic blocks: use num_layers 50, 101 or 152, or style 'simple'")
        self.caffe = style == "caffe"
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        if vol_confidences:
            self.vol_confidences = GlobalAveragePoolingHead(512 * block.expansion, num_vol_confidences)
        if alg_confidences:
            self.alg_confidences = GlobalAveragePoolingHead(512 * block.expansion, num_final_layer_channel)
        deconv = []
        for _ in range(3):
            deconv += [
                nn.ConvTranspose2d(self.inplanes, 256, kernel_size=4, stride=2, padding=1, output_padding=0,
                                   bias=False),
                nn.BatchNorm2d(256, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            ]
            self.inplanes = 256
        self.deconv_layers = nn.Sequential(*deconv)
        self.final_layer = nn.Conv2d(256, num_final_layer_channel, kernel_size=1)

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion, momentum=BN_MOMENTUM),
            )
        style = {"caffe": True} if self.caffe else {}
        layers = [block(self.inplanes, planes, stride, downsample, **style)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, **style) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Args: x: (N, 3, H, W) normalised images.

        Returns:
            heatmaps: (N, J, H/4, W/4); features: (N, 256, H/4, W/4); confidences: the confidence head's output,
            (N, num_vol_confidences) of ``vol_confidences`` or (N, J) of ``alg_confidences``, in (0, 1); None
            without a head.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        head = getattr(self, "vol_confidences", None)
        head = getattr(self, "alg_confidences", None) if head is None else head
        conf = head(x) if head is not None else None
        features = self.deconv_layers(x)
        return self.final_layer(features), features, conf
