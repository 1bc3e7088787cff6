"""Named window/level presets (lung, mediastinum, bone) in the image's own modality units; no Qt.

CT's Hounsfield presets (lung W 1500 L -600, ...) mean nothing on a projection radiograph: CR/DX pixel values
are detector exposure after the vendor's processing, in arbitrary units and either polarity. So the presets are
derived from the image itself, as percentiles of its pixel values taken in *attenuation order* (0 % = least
attenuating = air/lung, shown dark; 100 % = most attenuating = bone/metal, shown bright; MONOCHROME1 images,
whose low values are bright, are mirrored first):

=============  ===========================  =============================================================
preset         window spans percentiles     what it shows
=============  ===========================  =============================================================
Lung           0.5 % .. 75 %                lung parenchyma and vessels with high contrast; mediastinum and
                                            bone saturate white
Mediastinum    20 % .. 99.5 %               heart, mediastinum, spine and sub-diaphragmatic areas; the lungs
                                            go dark
Bone           30 % .. 90 %                 a narrower, higher-contrast window over the ribs and clavicles
=============  ===========================  =============================================================

Each window is at least 10 % of the 0.5..99.5 % range wide, so that a film with a large flat background
(collimation, padding) never yields a degenerate window. Given only an `ImageMeta` (no pixels), the same
percentages are applied as fractions of the stored range 0 .. 2^BitsStored - 1, a cruder guess.

"File default" comes first when the file has its own window (Window Center/Width, or a VOI LUT, whose linear
equivalent is given); further header windows follow under their explanation (or "File window N").
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cxrviewer.imaging.image import WindowPreset

#: (name, low percentile, high percentile) in attenuation order.
DERIVED = (("Lung", 0.5, 75.0), ("Mediastinum", 20.0, 99.5), ("Bone", 30.0, 90.0))
ROBUST = (0.5, 99.5)
MIN_WIDTH_FRACTION = 0.10  # of the robust range
FILE_DEFAULT = "File default"
_SAMPLES = 250_000

__all__ = ["DERIVED", "FILE_DEFAULT", "WindowPreset", "window_presets"]


def _sample(pixels: np.ndarray) -> np.ndarray:
    step = max(1, int(math.sqrt(pixels.size / _SAMPLES)))
    sample = np.asarray(pixels[::step, ::step], dtype=np.float64).ravel()
    return sample[np.isfinite(sample)]


def _header_presets(image_or_meta: Any) -> list[WindowPreset]:
    meta = getattr(image_or_meta, "meta", image_or_meta)
    header = [wp for wp in (getattr(meta, "window_presets", None) or []) if wp.width > 0]
    out: list[WindowPreset] = []
    voi = getattr(image_or_meta, "display_lut", None)
    source = str(getattr(voi, "source", ""))
    first = getattr(voi, "window", None)  # the VOI LUT's linear equivalent, or the first header window
    if source.startswith("header") and first is not None:
        out.append(WindowPreset(float(first.center), float(first.width), FILE_DEFAULT))
        header = header[1:] if source == "header window" else header
    elif header and voi is None:  # a bare ImageMeta
        out.append(WindowPreset(float(header[0].center), float(header[0].width), FILE_DEFAULT))
        header = header[1:]
    elif voi is not None:  # an image whose header windows were not used (e.g. colour): none is the default
        header = []
    for i, wp in enumerate(header, start=len(out) + 1):
        out.append(WindowPreset(float(wp.center), float(wp.width), wp.name.strip() or f"File window {i}"))
    return out


def _inverted(image_or_meta: Any) -> bool:
    voi = getattr(image_or_meta, "display_lut", None)
    if voi is not None and hasattr(voi, "invert"):
        return bool(voi.invert)
    meta = getattr(image_or_meta, "meta", image_or_meta)
    return str(getattr(meta, "photometric", "")).upper() == "MONOCHROME1"


def _tidy(value: float, integer: bool) -> float:
    return float(round(value)) if integer else float(f"{value:.4g}")


def window_presets(image_or_meta: Any) -> list[WindowPreset]:
    """File default (when the file has one), then Lung, Mediastinum and Bone, in modality units.

    `image_or_meta`: an `Image` (presets from its pixel values) or an `ImageMeta` (from its stored range).
    """
    presets = _header_presets(image_or_meta)
    pixels = getattr(image_or_meta, "pixels", None)
    invert = _inverted(image_or_meta)
    if pixels is not None:
        sample = _sample(pixels)
        if sample.size == 0:
            return presets
        integer = bool(np.issubdtype(pixels.dtype, np.integer))
        wanted = sorted({q for _, lo, hi in DERIVED for q in (lo, hi)} | set(ROBUST))
        order = [100.0 - q for q in wanted] if invert else wanted
        values = dict(zip(wanted, (float(v) for v in np.percentile(sample, order)), strict=True))
    else:
        meta = getattr(image_or_meta, "meta", image_or_meta)
        top = float(2 ** int(getattr(meta, "bits_stored", 8) or 8) - 1)
        integer = True
        values = {}
        for q in {q for _, lo, hi in DERIVED for q in (lo, hi)} | set(ROBUST):
            values[q] = top * (1.0 - q / 100.0) if invert else top * q / 100.0
    robust = abs(values[ROBUST[1]] - values[ROBUST[0]])
    min_width = max(robust * MIN_WIDTH_FRACTION, 1.0 if integer else 1e-6)
    for name, lo_q, hi_q in DERIVED:
        lo, hi = sorted((values[lo_q], values[hi_q]))
        center, width = (lo + hi) / 2.0, max(hi - lo, min_width)
        presets.append(WindowPreset(_tidy(center, integer), _tidy(width, integer), name))
    return presets
