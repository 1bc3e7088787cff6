"""Networks: a torchvision backbone with a 1-channel stem, global average pooling and one linear layer.

Because the head is pooling + linear, class-activation maps for every label are exact:
``cam[l] = W[l] @ feature_map + b[l]`` and the spatial mean of ``cam[l]`` equals label l's logit.
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import nn

from cxrviewer.model.architectures import ARCHITECTURES, ENSEMBLE_MAX, is_known_architecture, split_ensemble
from cxrviewer.model.efficientnet_lite import EfficientNetLiteFeatures

__all__ = ["ARCHITECTURES", "ENSEMBLE_MAX", "CXRNet", "EnsembleFeatures", "build_network", "is_known_architecture",
           "merge_networks", "split_ensemble"]

#: torchvision's ImageNet input scaling (per RGB channel), used to fold a 3-channel stem into our 1 channel.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _one_channel_conv(conv: nn.Conv2d, pretrained: bool = False) -> nn.Conv2d:
    """The stem for 1-channel input; with `pretrained`, the RGB kernels folded into one.

    Our input is (x - MEAN) / STD on a [0, 1] grey image; torchvision's was (x - mean_c) / std_c per channel,
    so the grey kernel is sum_c w_c * STD / std_c (the constant offset is absorbed by the following norm).
    """
    from cxrviewer.model.preprocess import STD

    k, st, pad = conv.kernel_size, conv.stride, conv.padding
    one = nn.Conv2d(1, conv.out_channels, kernel_size=(k[0], k[1]), stride=(st[0], st[1]),
                    padding=pad if isinstance(pad, str) else (pad[0], pad[1]), bias=conv.bias is not None)
    if pretrained:
        scale = torch.tensor([STD / s for s in IMAGENET_STD], dtype=conv.weight.dtype)[None, :, None, None]
        with torch.no_grad():
            one.weight.copy_((conv.weight * scale).sum(1, keepdim=True))
            if conv.bias is not None and one.bias is not None:
                one.bias.copy_(conv.bias)
    return one


class EnsembleFeatures(nn.Module):
    """Members' feature maps side by side (same grid): with a linear head over the concatenation, the ensemble's
    logits and class-activation maps are exactly the mean of the members' (see `merge_networks`)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x) for m in self.members], dim=1)


def _backbone(arch: str, base_net: nn.Module | None = None) -> tuple[nn.Module, int]:
    """Feature extractor (image -> last feature map) and its channel count. weights=None: no downloads.

    `base_net`: a torchvision model of the same family with weights already loaded (ImageNet initialisation
    from a file on disk); its RGB stem is folded into one channel."""
    base_arch, members = split_ensemble(arch)
    if members > 1:
        parts = [_backbone(base_arch) for _ in range(members)]
        return EnsembleFeatures([p[0] for p in parts]), sum(p[1] for p in parts)
    pre = base_net is not None
    net: Any
    if arch.startswith("efficientnet_lite"):
        variant, _, os_tag = arch.removeprefix("efficientnet_").partition("_")
        feats = EfficientNetLiteFeatures(variant, 16 if os_tag == "os16" else 32)
        return feats, feats.out_channels
    if arch.startswith("resnet"):
        base, _, variant = arch.partition("_")
        net = base_net if pre else getattr(torchvision.models, base)(weights=None)
        net.conv1 = _one_channel_conv(net.conv1, pre)
        if variant == "os16":  # last stage at stride 16: a 2x finer feature map for sharper CAMs
            block = net.layer4[0]
            (block.conv2 if base in {"resnet50"} else block.conv1).stride = (1, 1)
            block.downsample[0].stride = (1, 1)
        layers = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4]
        return nn.Sequential(*layers), net.fc.in_features
    if arch == "densenet121":
        net = base_net if pre else torchvision.models.densenet121(weights=None)
        net.features.conv0 = _one_channel_conv(net.features.conv0, pre)
        return nn.Sequential(net.features, nn.ReLU(inplace=False)), net.classifier.in_features
    if arch in {"efficientnet_b0", "mobilenet_v3_large"}:
        net = base_net if pre else getattr(torchvision.models, arch)(weights=None)
        net.features[0][0] = _one_channel_conv(net.features[0][0], pre)
        channels = net.features[-1][0].out_channels
        return net.features, channels
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")


class CXRNet(nn.Module):
    """Backbone -> feature map -> global average pool -> linear (one logit per label)."""

    def __init__(self, arch: str, num_labels: int, dropout: float = 0.0, base_net: nn.Module | None = None) -> None:
        super().__init__()
        self.arch = arch
        self.features, channels = _backbone(arch, base_net)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(channels, num_labels)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, L) and the last feature map (B, C, h, w)."""
        fmap = self.features(x)
        pooled = fmap.mean(dim=(2, 3))
        return self.classifier(self.dropout(pooled)), fmap

    def forward(self, x: torch.Tensor, with_cams: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, L); with `with_cams` also the class-activation maps (B, L, h, w) in logit units."""
        logits, fmap = self.forward_features(x)
        return (logits, self.cams(fmap)) if with_cams else logits

    def cams(self, fmap: torch.Tensor) -> torch.Tensor:
        """Class-activation maps in logit units (B, L, h, w); their spatial mean is the logit."""
        w = self.classifier.weight.to(fmap.dtype)
        b = self.classifier.bias.to(fmap.dtype)
        return torch.einsum("lc,bchw->blhw", w, fmap) + b[None, :, None, None]


def build_network(arch: str, num_labels: int, dropout: float = 0.0) -> CXRNet:
    """Create an untrained network of a known architecture (or an ensemble of one, "...xN")."""
    if not is_known_architecture(arch):
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)} (or ...x2 to "
                         f"...x{ENSEMBLE_MAX} for an ensemble)")
    return CXRNet(arch, num_labels, dropout)


@torch.no_grad()
def merge_networks(nets: list[CXRNet]) -> CXRNet:
    """One network whose logits and CAMs are the mean of `nets` (same architecture and labels): the members'
    backbones side by side and one head [W1 / n, ..., Wn / n] with the mean bias. One file, one forward call."""
    archs = {n.arch for n in nets}
    labels = {n.classifier.out_features for n in nets}
    if len(nets) < 2 or len(archs) != 1 or len(labels) != 1 or split_ensemble(nets[0].arch)[1] != 1:
        raise ValueError("an ensemble needs two or more plain networks of one architecture and label count")
    merged = build_network(f"{nets[0].arch}x{len(nets)}", nets[0].classifier.out_features)
    features = merged.features
    assert isinstance(features, EnsembleFeatures)
    for member, net in zip(features.members, nets, strict=True):
        member.load_state_dict(net.features.state_dict())
    merged.classifier.weight.copy_(torch.cat([n.classifier.weight for n in nets], dim=1) / len(nets))
    merged.classifier.bias.copy_(torch.stack([n.classifier.bias for n in nets]).mean(0))
    return merged.eval()
