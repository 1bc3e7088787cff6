"""Radiologist bounding boxes as weak localisation targets for the class-activation maps.

A box says where a finding is. With the global-average-pool head, the CAM of label l is a map of
per-cell logits whose mean is the image logit; the box term asks the cells inside a training image's
box to be positive for that label and the cells outside to be negative (balanced so that a small nodule
box weighs as much as a large heart box), in the spirit of Li et al., "Thoracic disease identification
and localization with limited supervision" (CVPR 2018). Only boxes of training images are used; the
pointing game is measured on the held-out patients' boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from cxrviewer.imaging import ImageLoadError, load_image
from cxrviewer.imaging.raster import raster_size
from cxrviewer.model.preprocess import Letterbox
from cxrviewer.train.pointing import read_boxes

#: Boxes kept per image (the shared NIH file has at most 3 per image).
MAX_BOXES = 6


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, from its header where it is a raster file."""
    try:
        width, height, _ = raster_size(path)
    except ImageLoadError:  # DICOM (or unreadable as a raster): decode through the app's loader
        image = load_image(path)
        return image.width, image.height
    return width, height


def boxes_by_image(bbox_csv: Path, root: Path | None, paths: list[Path], labels: list[str],
                   size: int, letterbox_of: Callable[[int], Letterbox] | None = None) -> dict[int, np.ndarray]:
    """Index into `paths` -> (K, 5) float32 rows [label column, x0, y0, x1, y1] in model-input pixels.

    Boxes whose label is not trained, or whose image is not among `paths`, are dropped."""
    index = {str(Path(p).resolve()): i for i, p in enumerate(paths)}
    found: dict[int, list[list[float]]] = {}
    sizes: dict[int, Letterbox] = {}
    for b in read_boxes(bbox_csv, root):
        i = index.get(str(Path(b["path"]).resolve()))
        if i is None or b["label"] not in labels:
            continue
        if i not in sizes:
            sizes[i] = letterbox_of(i) if letterbox_of else Letterbox.fit(*image_size(paths[i]), size)
        row = model_box(sizes[i], labels.index(b["label"]), b["x"], b["y"], b["w"], b["h"])
        found.setdefault(i, []).append(row)
    return {i: np.asarray(rows[:MAX_BOXES], np.float32) for i, rows in found.items()}


def model_box(lb: Letterbox, column: int, x: float, y: float, w: float, h: float) -> list[float]:
    """[label column, x0, y0, x1, y1] in model-input pixels of a box given in original pixels (x, y, w, h)."""
    rx, ry, _, _ = lb.region
    x0, y0 = (x - rx) * lb.scale + lb.pad_x, (y - ry) * lb.scale + lb.pad_y
    return [float(column), x0, y0, x0 + w * lb.scale, y0 + h * lb.scale]


def padded(boxes: np.ndarray | None, geometry: np.ndarray | None = None) -> np.ndarray:
    """(MAX_BOXES, 5) rows, unused ones with label -1; corners moved by a 2x3 augmentation matrix."""
    out = np.full((MAX_BOXES, 5), -1.0, np.float32)
    if boxes is None or len(boxes) == 0:
        return out
    b = boxes[:MAX_BOXES].copy()
    if geometry is not None:  # transform the four corners, keep their axis-aligned bounding box
        xs = b[:, [1, 3, 3, 1]]
        ys = b[:, [2, 2, 4, 4]]
        tx = geometry[0, 0] * xs + geometry[0, 1] * ys + geometry[0, 2]
        ty = geometry[1, 0] * xs + geometry[1, 1] * ys + geometry[1, 2]
        b[:, 1], b[:, 3] = tx.min(1), tx.max(1)
        b[:, 2], b[:, 4] = ty.min(1), ty.max(1)
    out[: len(b)] = b
    return out


def cell_targets(boxes: torch.Tensor, num_labels: int, grid: tuple[int, int],
                 size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of each map cell covered by a box (B, L, h, w) and which (image, label) pairs have one (B, L)."""
    bsz = boxes.shape[0]
    h, w = grid
    target = torch.zeros(bsz, num_labels, h, w, device=boxes.device)
    has = torch.zeros(bsz, num_labels, dtype=torch.bool, device=boxes.device)
    ex = torch.arange(w + 1, device=boxes.device, dtype=torch.float32) * (size / w)
    ey = torch.arange(h + 1, device=boxes.device, dtype=torch.float32) * (size / h)
    for k in range(boxes.shape[1]):
        lab, x0, y0, x1, y1 = boxes[:, k].unbind(1)
        valid = lab >= 0
        if not bool(valid.any()):
            continue
        ox = (torch.minimum(x1[:, None], ex[None, 1:]) - torch.maximum(x0[:, None], ex[None, :-1])).clamp_min(0)
        oy = (torch.minimum(y1[:, None], ey[None, 1:]) - torch.maximum(y0[:, None], ey[None, :-1])).clamp_min(0)
        frac = (oy[:, :, None] / (size / h)) * (ox[:, None, :] / (size / w))  # (B, h, w)
        bi = torch.nonzero(valid).squeeze(1)
        li = lab[valid].long()
        target[bi, li] = torch.maximum(target[bi, li], frac[valid].clamp(0, 1))
        has[bi, li] = True
    return target, has


#: Box loss kinds: "cells" asks cells inside to be positive and outside negative; "softmax" moves the map's
#: mass into the box without touching its mean (the image logit). On fold 0 of the shared data (pointing game
#: on 253 held-out boxes / NIH mean AUROC): none 15.4 % / 0.665, cells x1 47.4 % / 0.637, softmax x1
#: 51.8 % / 0.647 (Kermany 0.95 instead of 0.99), cells x0.3 46.6 % / 0.662 -> the default.
BOX_LOSSES = ("cells", "softmax")


def box_loss(cams: torch.Tensor, boxes: torch.Tensor, size: int, kind: str = "cells") -> torch.Tensor | None:
    """Localisation loss of the CAMs (logit units) against box coverage; None when the batch has no box.

    "softmax": -log of the share of the spatial softmax of the map that falls inside the box (coverage
    weighted); "cells": balanced per-cell BCE, inside cells positive, outside cells negative."""
    target, has = cell_targets(boxes, cams.shape[1], (cams.shape[2], cams.shape[3]), size)
    if not bool(has.any()):
        return None
    z = cams.float()[has]  # (N, h, w)
    t = target[has]
    if kind == "softmax":
        log_p = F.log_softmax(z.flatten(1), dim=1)
        inside = torch.logsumexp(log_p + torch.log(t.flatten(1).clamp_min(1e-12)), dim=1)
        return -inside.mean()
    if kind != "cells":
        raise ValueError(f"unknown box loss {kind!r} (choose from {', '.join(BOX_LOSSES)})")
    inside = -(t * F.logsigmoid(z)).sum((1, 2)) / t.sum((1, 2)).clamp_min(1e-6)
    outside = -((1 - t) * F.logsigmoid(-z)).sum((1, 2)) / (1 - t).sum((1, 2)).clamp_min(1e-6)
    return (inside + outside).mean()
