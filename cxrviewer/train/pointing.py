"""Pointing game: does a finding's CAM peak fall inside the radiologist's bounding box?

Compared with two fixed-location priors that ignore the image: the image centre, and the mean box
centre of the same label over the other boxes (leave-one-out). The maps are smoothed as the app shows them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrviewer.imaging import load_image
from cxrviewer.imaging.display import model_input
from cxrviewer.labels import NIH_TO_LABEL
from cxrviewer.model.cam import CAM_SMOOTHING, cam_peak, smooth_cams
from cxrviewer.model.network import CXRNet
from cxrviewer.model.preprocess import Letterbox, preprocess


def read_boxes(bbox_csv: Path, root: Path | None = None, only: set[str] | None = None) -> list[dict]:
    """Rows (path, label in our vocabulary, x, y, w, h in original pixels) of a bbox CSV.

    Image paths are relative to `root`, by default the folder above the CSV's (as in the shared data)."""
    root = root if root is not None else bbox_csv.parent.parent
    boxes = []
    with open(bbox_csv, newline="") as fh:
        for r in csv.DictReader(fh):
            path = root / r["image"]
            if only is not None and str(path) not in only:
                continue
            lab = NIH_TO_LABEL.get(r["label"], r["label"])
            boxes.append({"path": path, "label": lab, "x": float(r["x"]), "y": float(r["y"]),
                          "w": float(r["w"]), "h": float(r["h"])})
    return boxes


def _inside(b: dict, x: float, y: float) -> bool:
    return b["x"] <= x <= b["x"] + b["w"] and b["y"] <= y <= b["y"] + b["h"]


def file_input(path: Path, input_size: int, crop: str | None = None) -> tuple[np.ndarray, Letterbox]:
    """Model input (1, S, S) and its letterbox for an image file, through the app's own path."""
    return preprocess(model_input(load_image(path)), input_size, crop)


@torch.inference_mode()
def pointing_game(net: CXRNet, labels: list[str], input_size: int, boxes: list[dict],
                  inputs: Callable[[Any, int], tuple[np.ndarray, Letterbox]] = file_input,
                  smoothing: float | None = CAM_SMOOTHING) -> dict:
    """Hit rates per label and overall for the CAM peak and for the two fixed priors.

    `inputs(key, size)` gives the model input and letterbox of a box's image (key: the box's "path");
    `smoothing`: the maps' smoothing as the app applies it (`cam.smooth_cams`)."""
    net.eval()
    maps: dict[Any, tuple[np.ndarray, Letterbox]] = {}
    for b in boxes:
        if b["label"] in labels and b["path"] not in maps:
            x, box = inputs(b["path"], input_size)
            _, fmap = net.forward_features(torch.from_numpy(x)[None])
            maps[b["path"]] = (net.cams(fmap)[0].numpy(), box)
    return score_maps(maps, labels, boxes, smoothing)


def score_maps(maps: dict[Any, tuple[np.ndarray, Letterbox]], labels: list[str], boxes: list[dict],
               smoothing: float | None = CAM_SMOOTHING) -> dict:
    """The pointing game of given maps: key -> (raw CAMs (L, h, w) in logit units, letterbox); boxes of
    images without maps, or of labels not in `labels`, are left out (also from the priors)."""
    per: dict[str, dict[str, int]] = {}
    usable = [b for b in boxes if b["label"] in labels and b["path"] in maps]
    for b in usable:
        cams, box = maps[b["path"]]
        w, h = box.orig_width, box.orig_height
        li = labels.index(b["label"])
        px, py = cam_peak(smooth_cams(cams[li], smoothing), box)
        others = [o for o in usable if o is not b and o["label"] == b["label"]]
        if others:
            mx = float(np.mean([o["x"] + o["w"] / 2 for o in others]))
            my = float(np.mean([o["y"] + o["h"] / 2 for o in others]))
        else:
            mx, my = w / 2, h / 2
        rec = per.setdefault(b["label"], {"n": 0, "cam": 0, "centre": 0, "mean_box": 0})
        rec["n"] += 1
        rec["cam"] += int(_inside(b, px, py))
        rec["centre"] += int(_inside(b, w / 2, h / 2))
        rec["mean_box"] += int(_inside(b, mx, my))
    total = {k: sum(r[k] for r in per.values()) for k in ("n", "cam", "centre", "mean_box")}
    rate = {k: (total[k] / total["n"] if total["n"] else None) for k in ("cam", "centre", "mean_box")}
    return {"per_label": per, "total": total, "hit_rate": rate}
