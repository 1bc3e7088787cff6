"""Heat-map colour scale on the engine's fixed [0, 1] scale, shared by the viewer and the exports (numpy only).

The colour of a value never depends on the other values of the map: 0.9 is the same colour on every
image and every label. Low values are transparent, so the film stays readable where the model sees
nothing; the alpha ramp is part of the scale and the colour bar shows it.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Values below ALPHA_LOW are fully transparent, above ALPHA_HIGH fully opaque (times the user's opacity):
#: only regions whose local probability is above one half are drawn, so a diffuse, undecided map stays
#: off the film and what glows is where the model sees the finding.
ALPHA_LOW = 0.5
ALPHA_HIGH = 0.85
#: Longest side of a drawn heat map: the maps come from a coarse grid, the canvas scales them up smoothly.
OVERLAY_SIDE = 512

# Google's "Turbo" colormap, polynomial approximation (A. Mikhailov / R. Du, Apache-2.0).
_RED = (0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943)
_GREEN = (0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604)
_BLUE = (0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973)


def _turbo(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    powers = np.stack([x**k for k in range(6)], axis=-1)
    rgb = np.stack([powers @ np.asarray(c) for c in (_RED, _GREEN, _BLUE)], axis=-1)
    return np.clip(rgb, 0.0, 1.0)


def _alpha(x: np.ndarray) -> np.ndarray:
    t = np.clip((x - ALPHA_LOW) / (ALPHA_HIGH - ALPHA_LOW), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)  # smoothstep


_LEVELS = np.linspace(0.0, 1.0, 256)
#: 256-entry RGBA lookup table (uint8), premultiplied alpha, in Qt's ARGB32 byte order (B, G, R, A).
LUT_BGRA_PREMULTIPLIED = np.empty((256, 4), dtype=np.uint8)
_rgb = _turbo(_LEVELS)
_a = _alpha(_LEVELS)
LUT_BGRA_PREMULTIPLIED[:, 0] = np.rint(255 * _rgb[:, 2] * _a)
LUT_BGRA_PREMULTIPLIED[:, 1] = np.rint(255 * _rgb[:, 1] * _a)
LUT_BGRA_PREMULTIPLIED[:, 2] = np.rint(255 * _rgb[:, 0] * _a)
LUT_BGRA_PREMULTIPLIED[:, 3] = np.rint(255 * _a)
#: Opaque RGB colours of the scale (for the colour bar), uint8 (256, 3).
LUT_RGB = np.rint(255 * _rgb).astype(np.uint8)
ALPHA = _a.astype(np.float32)


#: The colour bar, the same on screen and in every export: its title, its ticks, and the backdrop over which
#: it shows the scale as drawn (colours with their alpha ramp, so the bar is plain grey below ALPHA_LOW).
SCALE_TITLE = "local probability"
BAR_TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)
BAR_BACKDROP = (110, 110, 110)
#: The bar shows the ramp at the heat map's opacity, but never fainter than this (so it stays legible).
MIN_BAR_OPACITY = 0.25


def tick_label(value: float) -> str:
    """"0%", "25%", ... as the colour bar labels its ticks."""
    return f"{value:.0%}"


def floor_note() -> str:
    """The sentence that says where drawing starts, e.g. "nothing is drawn below 50%"."""
    return f"nothing is drawn below {tick_label(ALPHA_LOW)}"


def bar_colours(values01: np.ndarray, opacity: float) -> np.ndarray:
    """RGB uint8 (..., 3) of the colour bar at these scale values: each value's colour at its alpha ramp times
    ``max(opacity, MIN_BAR_OPACITY)`` over `BAR_BACKDROP`, exactly as the viewer's bar paints it."""
    v = np.clip(np.nan_to_num(np.asarray(values01, dtype=np.float32)), 0.0, 1.0)
    index = np.rint(v * 255.0).astype(np.intp)
    a = ALPHA[index][..., None] * np.float32(max(float(opacity), MIN_BAR_OPACITY))
    out = np.asarray(BAR_BACKDROP, np.float32) * (1.0 - a) + LUT_RGB[index].astype(np.float32) * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay_bgra(heat01: np.ndarray, max_side: int = OVERLAY_SIDE) -> np.ndarray:
    """A heat map (float [0, 1], any size) as a premultiplied BGRA uint8 image of at most max_side.

    The maps are smooth (they come from a coarse feature grid), so drawing them at reduced size and
    letting the canvas scale them up loses nothing and keeps the work small.
    """
    heat = np.asarray(heat01, dtype=np.float32)
    h, w = heat.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        heat = np.asarray(cv2.resize(heat, size, interpolation=cv2.INTER_AREA), dtype=np.float32)
    index = np.clip(np.rint(heat * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(LUT_BGRA_PREMULTIPLIED[index])
