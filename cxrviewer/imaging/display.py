"""Display conversion (modality units -> 8-bit) and the model-input array, both from an `Image`.

Display pipeline (DICOM): modality LUT (done by the loader) -> VOI (VOI LUT Sequence, else Window Center/Width
with the VOI LUT Function, else an automatic window) -> inversion for MONOCHROME1 / Presentation LUT Shape
INVERSE, once, after the VOI -> the user's invert toggle. A user window replaces only the VOI step.

Automatic window (no VOI in the file): 8-bit data maps 0..255 as is; deeper data uses the robust 0.5th..99.5th
percentiles of the pixel values. `model_input` uses the same file VOI, never the user's window.
"""

from __future__ import annotations

import numpy as np

from cxrviewer.imaging.image import Image, WindowPreset
from cxrviewer.imaging.voi import LINEAR, Voi, apply, auto_voi


def file_voi(image: Image) -> Voi:
    """The VOI the file itself asks for (set by the loader; computed here for Images built elsewhere)."""
    lut = image.display_lut
    if isinstance(lut, Voi):
        return lut
    invert = image.meta.photometric.upper() == "MONOCHROME1"
    full_bits = image.meta.bits_stored if image.pixels.dtype == np.uint8 else None
    return auto_voi(image.pixels, invert, full_bits)


def default_window(image: Image) -> WindowPreset:
    """The window (modality units) the default display uses: where a window/level drag starts."""
    return file_voi(image).window


def to_display(image: Image, window: WindowPreset | None = None, invert: bool = False) -> np.ndarray:
    """8-bit display image (H x W uint8), air dark unless the user's `invert` toggle is on.

    `window` (modality units, e.g. from a window/level drag) replaces the file's VOI; the file's polarity
    (MONOCHROME1) still applies.
    """
    voi = file_voi(image)
    if window is not None:
        voi = voi.with_window(window, LINEAR)
    out = apply(voi, image.pixels, np.uint8)
    if invert:
        np.subtract(255, out, out=out)
    return out


def model_input(image: Image) -> np.ndarray:
    """H x W float32 in [0, 1], air dark, independent of any user window.

    DICOM: the header's default VOI (VOI LUT, else the first window) if present, as NIH-style 8-bit training
    PNGs were made; otherwise the full dynamic range (8-bit: value / 255; deeper: robust 0.5..99.5 percentile
    window). Then polarity: MONOCHROME1 is inverted.
    Raster files: 8-bit -> value / 255, 16-bit -> percentile window.
    """
    return apply(file_voi(image), image.pixels, np.float32)


def pixel_value(image: Image, x: int, y: int) -> float | None:
    """The modality value at column `x`, row `y`, or None outside the image."""
    if not (0 <= y < image.height and 0 <= x < image.width):
        return None
    return float(image.pixels[int(y), int(x)])
