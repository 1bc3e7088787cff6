"""A trained network as the bundle the app loads: its model card and safetensors weights (+ the input gate)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrviewer import __version__
from cxrviewer.labels import not_covered
from cxrviewer.model.cam import CAM_SMOOTHING
from cxrviewer.model.network import CXRNet, build_network
from cxrviewer.model.preprocess import preprocessing_record
from cxrviewer.model.weights import save_bundle

log = logging.getLogger(__name__)

DATASET_INFO: dict[str, dict[str, str]] = {
    "nih": {"name": "NIH ChestX-ray14", "license": "No restrictions on use (NIH Clinical Center)",
            "attribution": "Wang X, Peng Y, Lu L, Lu Z, Bagheri M, Summers R. ChestX-ray8: Hospital-scale Chest "
                           "X-ray Database and Benchmarks on Weakly-Supervised Classification and Localization of "
                           "Common Thorax Diseases. IEEE CVPR 2017. Data: NIH Clinical Center, "
                           "https://nihcc.app.box.com/v/ChestXray-NIHCC"},
    "kermany": {"name": "Kermany pediatric pneumonia (Guangzhou Women and Children's Medical Center)",
                "license": "CC BY 4.0",
                "attribution": "Kermany DS, Zhang K, Goldbaum M. Labeled Optical Coherence Tomography (OCT) and "
                               "Chest X-Ray Images for Classification. Mendeley Data v2, "
                               "doi:10.17632/rscbjbr9sj.2; Kermany et al., Cell 2018"},
    "chexpert": {"name": "CheXpert", "license": "Stanford University School of Medicine CheXpert Dataset "
                 "Research Use Agreement", "attribution": "Irvin et al., AAAI 2019"},
}


def _describe_init(training: dict[str, Any]) -> str:
    init = training.get("init") or {}
    if init.get("init") == "imagenet" or init.get("package"):
        return f"fine-tuned from ImageNet weights ({init.get('package', 'packaged')} {init.get('version', '')})"
    if init.get("init") == "file":
        return f"fine-tuned from ImageNet weights in {init.get('file')}"
    return "trained from scratch"


def build_card(name: str, arch: str, input_size: int, labels: list[str], thresholds: dict[str, float],
               high: dict[str, float], validation: dict[str, Any], datasets: list[str],
               training: dict[str, Any], extra: dict[str, Any] | None = None,
               crop: str | None = None) -> dict[str, Any]:
    return {
        "format": "cxrviewer-model-card/1",
        "name": name,
        "version": dt.date.today().isoformat(),
        "description": f"{arch} {_describe_init(training)}, {input_size}px letterboxed grayscale input"
                       f"{' (thorax crop)' if crop else ''}, multi-label",
        "architecture": arch,
        "input_size": input_size,
        "preprocessing": preprocessing_record(input_size, crop),
        "labels": labels,
        "thresholds": {k: round(float(v), 6) for k, v in thresholds.items()},
        "high_sensitivity_thresholds": {k: round(float(v), 6) for k, v in high.items()},
        "validation": validation,
        "cam": {"method": "cam", "units": "logit", "display": "sigmoid(cam) on a fixed [0, 1] scale",
                "smoothing_cells": CAM_SMOOTHING},
        "datasets": [DATASET_INFO.get(d, {"name": d, "license": "unknown", "attribution": ""}) for d in datasets],
        "not_covered": not_covered(labels),
        "intended_use": "Research and education second opinion on frontal adult chest radiographs. "
                        "NOT FOR DIAGNOSTIC USE.",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "trainer_version": __version__,
        "training": training,
        **(extra or {}),
    }


def load_best(run_dir: Path) -> tuple[CXRNet, dict[str, Any]]:
    """The best checkpoint of a run as a network (eval mode) and its header."""
    ck = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    net = build_network(ck["arch"], len(ck["labels"]))
    net.load_state_dict(ck["model"])
    return net.eval(), ck


def export_bundle(net: CXRNet, card: dict[str, Any], out_card: Path,
                  gate_images: list[np.ndarray] | None = None) -> Path:
    """Fit the input gate (when available) on training images and write the bundle."""
    if gate_images:
        try:
            from cxrviewer.model.gate import fit_gate
        except ImportError:  # pragma: no cover - gate module absent
            pass
        else:
            card["gate"] = fit_gate(net, gate_images, card["input_size"])
    path = save_bundle(net, card, out_card, fp16=True)
    log.info("wrote %s", path)
    return path
