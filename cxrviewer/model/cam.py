"""Class-activation maps: the fixed colour scale, mapping to original pixels and peak finding.

The network's head is global average pooling + one linear layer, so the maps of every label come from
the same forward pass: ``cam[l] = W[l] . feature_map + b[l]`` (`CXRNet.cams`), in **logit units**,
and the spatial mean of ``cam[l]`` equals label l's logit.

Fixed colour scale ("local probability"): a map value v (logit units) is shown as ``sigmoid(v)`` in
[0, 1]. It is the same scale for every image and label, never a per-image min-max stretch: because the
map's mean is the label's logit, a 2 % finding (logit -3.9) stays cold almost everywhere, while a 98 %
finding glows. Maps are drawn for flagged findings and for triage "check" items (above a high-sensitivity
triage point: where the model looked, not a finding); below those points none is drawn (as CheXlocalize does).

Smoothing: a card may ask for the maps to be smoothed on their grid (Gaussian, `cam.smoothing_cells` cells)
before anything is drawn or a peak is taken (`smooth_cams`); the bundled ensemble uses 0.7 cells, which
moved the peak into the radiologist's box more often on held-out films (models/README.md). Smoothing keeps
the map's scale (logit units) and nearly its mean.

Geometry: a map covers the letterboxed N x N model input; `Letterbox.map_to_original` resamples it
(bilinear, in logit units, before the sigmoid) onto the original image's pixels, and `cam_peak` gives
the maximum in original pixel coordinates, restricted to cells that lie on image content (not padding).
"""

from __future__ import annotations

import cv2
import numpy as np

from cxrviewer.model.preprocess import Letterbox, place_in_region

#: Smoothing (Gaussian sigma in map cells) the trainer writes into new cards (see the module docstring).
CAM_SMOOTHING = 0.7


def smooth_cams(cams: np.ndarray, sigma_cells: float | None) -> np.ndarray:
    """Maps (h, w) or (labels, h, w) smoothed on their grid with a Gaussian of `sigma_cells` (none if 0/None)."""
    arr = np.asarray(cams, dtype=np.float32)
    if not sigma_cells or arr.size == 0:
        return arr
    stack = arr[None] if arr.ndim == 2 else arr
    out = np.stack([cv2.GaussianBlur(g, (0, 0), float(sigma_cells)) for g in stack])
    return out[0] if arr.ndim == 2 else out


def local_probability(logit_map: np.ndarray) -> np.ndarray:
    """The fixed colour scale: logit units -> sigmoid -> float32 in [0, 1]."""
    x = np.asarray(logit_map, dtype=np.float32)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)  # numerically safe sigmoid


def cam_to_original(grid_logit: np.ndarray, box: Letterbox) -> np.ndarray:
    """Heat map over the original pixels (float32 [0, 1], fixed scale) from a low-res logit map.

    For an original larger than the model input, the map is first resampled (logit units) onto the image
    content at model-input resolution, passed through the sigmoid there, then resized bilinearly to the
    original pixels: the same geometry as `Letterbox.map_to_original`, about 20x faster on a 2k film, and
    within a fraction of a percent of it (the map is smooth at that scale).
    """
    if box.cropped:  # the model saw only the crop region: no heat outside it
        return place_in_region(cam_to_original(grid_logit, box.uncropped()), box, 0.0)
    x0, y0, cw, ch = box.content
    if box.orig_width * box.orig_height <= cw * ch:
        return local_probability(box.map_to_original(grid_logit))
    content = Letterbox(cw, ch, box.size, 1.0, x0, y0)  # the content itself, one pixel per model pixel
    small = local_probability(content.map_to_original(grid_logit))
    return cv2.resize(small, (box.orig_width, box.orig_height), interpolation=cv2.INTER_LINEAR)


def _content_mask(shape: tuple[int, int], box: Letterbox) -> np.ndarray:
    """Cells of an (h, w) grid over the model input whose centres fall on image content."""
    gh, gw = shape
    x0, y0, cw, ch = box.content
    cx = (np.arange(gw) + 0.5) * box.size / gw - 0.5
    cy = (np.arange(gh) + 0.5) * box.size / gh - 0.5
    in_x = (cx >= x0 - 0.5) & (cx <= x0 + cw - 0.5)
    in_y = (cy >= y0 - 0.5) & (cy <= y0 + ch - 0.5)
    return in_y[:, None] & in_x[None, :]


def _parabolic_offset(left: float, centre: float, right: float) -> float:
    """Sub-cell offset of a peak from three samples (vertex of the fitted parabola), in [-0.5, 0.5]."""
    curvature = left - 2.0 * centre + right
    if curvature >= 0:  # not a strict maximum along this axis
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))


def grid_peak(grid: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Maximum of a 2-D grid in (fractional) cell coordinates (x, y), refined to sub-cell precision."""
    g = np.asarray(grid, dtype=np.float64)
    masked = np.where(mask, g, -np.inf) if mask is not None and mask.any() else g
    iy, ix = np.unravel_index(int(np.argmax(masked)), g.shape)
    gh, gw = g.shape
    dx = _parabolic_offset(g[iy, ix - 1], g[iy, ix], g[iy, ix + 1]) if 0 < ix < gw - 1 else 0.0
    dy = _parabolic_offset(g[iy - 1, ix], g[iy, ix], g[iy + 1, ix]) if 0 < iy < gh - 1 else 0.0
    return ix + dx, iy + dy


def cam_peak(grid_logit: np.ndarray, box: Letterbox) -> tuple[float, float]:
    """Location of a map's maximum in ORIGINAL image pixel coordinates (x, y)."""
    gh, gw = grid_logit.shape
    gx, gy = grid_peak(grid_logit, _content_mask((gh, gw), box))
    mx = (gx + 0.5) * box.size / gw - 0.5  # cell centre -> model-input pixel
    my = (gy + 0.5) * box.size / gh - 0.5
    return box.to_original(mx, my)


def heatmap_uint8(heat01: np.ndarray) -> np.ndarray:
    """A [0, 1] heat map as 8-bit grey levels (0 = local probability 0, 255 = 1) for PNG files."""
    return np.clip(np.rint(np.asarray(heat01, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
