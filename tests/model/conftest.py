"""Fixtures for the model tests: small bundles written with the real save_bundle into temporary folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cxrviewer.imaging import load_image, model_input
from cxrviewer.model.network import CXRNet, build_network
from cxrviewer.model.preprocess import preprocessing_record
from cxrviewer.model.weights import save_bundle

LABELS = ["Cardiomegaly", "Lung Opacity", "Pleural Effusion", "Pneumothorax", "Atelectasis"]


def write_bundle(net: CXRNet, folder: Path, size: int, labels: list[str], thresholds: dict[str, float],
                 **extra: object) -> Path:
    card = {"name": f"test-{net.arch}", "version": "0.0", "input_size": size,
            "preprocessing": preprocessing_record(size), "labels": labels, "thresholds": thresholds, **extra}
    return save_bundle(net, card, folder / "model.json")


def random_network(arch: str = "resnet18", labels: int = len(LABELS), seed: int = 0) -> CXRNet:
    torch.manual_seed(seed)
    return build_network(arch, labels).eval()


def brightness_network(gain: float = 4.0, bias: float = -1.0) -> CXRNet:
    """A hand-built DenseNet-121 whose feature channel 0 is the local brightness above mid-grey.

    Every batch norm is the identity, every dense-layer convolution is zero (new features are 0), the
    stem takes a 7x7 box mean into channel 0 and each transition passes channel 0 through its average
    pooling, so the last feature map's channel 0 is a smoothed, ReLU-ed (x - 0.5) / 0.25 at stride 32.
    Label 0 has weight +gain on it (its CAM follows brightness), label 1 weight -gain (follows darkness).
    DenseNet is used because its downsampling is average pooling, which keeps cell centres where the
    letterbox geometry puts them (strided 1x1 convolutions, as in ResNet, shift them).
    """
    net = build_network("densenet121", 2).eval()
    state = net.state_dict()
    new = {}
    for key, value in state.items():
        v = torch.zeros_like(value)
        if key.endswith("running_var") or (key.endswith(".weight") and value.ndim == 1):
            v = torch.ones_like(value)  # batch norm: identity
        new[key] = v
    feats = "features.0."
    new[feats + "conv0.weight"][0, 0] = 1.0 / 49.0
    for t in (1, 2, 3):
        new[f"{feats}transition{t}.conv.weight"][0, 0, 0, 0] = 1.0
    new["classifier.weight"][0, 0] = gain
    new["classifier.weight"][1, 0] = -gain
    new["classifier.bias"][:] = bias
    net.load_state_dict(new)
    return net.eval()


def nih_images(shared_data: Path, start: int, step: int) -> list[Path]:
    files = sorted((shared_data / "nih" / "images").glob("*.png"))
    return files[start::step]



@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread: None) -> None:
    """Every test here runs with one torch thread (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def random_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ResNet-18 at 128 px, float16 weights, thresholds 0.5 (no gate statistics)."""
    folder = tmp_path_factory.mktemp("random_model")
    return write_bundle(random_network(), folder, 128, LABELS, {lab: 0.5 for lab in LABELS},
                        high_sensitivity_thresholds={lab: 0.1 for lab in LABELS})


@pytest.fixture(scope="session")
def brightness_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-built brightness model at 256 px: label 0 always positive, label 1 never."""
    folder = tmp_path_factory.mktemp("brightness_model")
    labels = ["Lung Lesion", "Pneumothorax"]
    return write_bundle(brightness_network(), folder, 256, labels, {"Lung Lesion": 0.0, "Pneumothorax": 1.0})


@pytest.fixture(scope="session")
def gated_card(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Untrained ResNet-18 at 128 px whose card holds feature-gate statistics fitted on 155 NIH films.

    An untrained network is a weak feature extractor: this exercises the gate's fitting, storage and
    scoring on real films; a trained network separates chest from non-chest images more strongly.
    """
    from cxrviewer.model.gate import fit_gate

    net = random_network()
    fit = [model_input(load_image(p)) for p in nih_images(shared_data, 0, 14)]
    gate = fit_gate(net, fit, 128)
    folder = tmp_path_factory.mktemp("gated_model")
    return write_bundle(net, folder, 128, LABELS, {lab: 0.5 for lab in LABELS}, gate=gate)
