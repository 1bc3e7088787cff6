"""Tiny, real model bundles (random weights) written with `save_bundle`, for tests and the load harness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LABELS = ["Cardiomegaly", "Lung Opacity", "Pleural Effusion", "Pneumothorax", "Atelectasis"]


def write_tiny_bundle(folder: Path, arch: str = "resnet18", size: int = 64, labels: list[str] | None = None,
                      seed: int = 0, name: str = "model") -> Path:
    """An untrained network at `size` px with thresholds 0.5, saved as FOLDER/NAME.json + .safetensors."""
    import torch

    from cxrviewer.model.network import build_network
    from cxrviewer.model.preprocess import preprocessing_record
    from cxrviewer.model.weights import save_bundle

    labels = list(labels or LABELS)
    torch.manual_seed(seed)
    net = build_network(arch, len(labels)).eval()
    card = {"name": f"reliability-{arch}-{size}", "version": "test", "input_size": size,
            "preprocessing": preprocessing_record(size), "labels": labels,
            "thresholds": {lab: 0.5 for lab in labels}}
    return save_bundle(net, card, folder / f"{name}.json")


def read_card(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def write_card(path: Path, card: dict[str, Any]) -> Path:
    path.write_text(json.dumps(card, indent=2), encoding="utf-8")
    return path
