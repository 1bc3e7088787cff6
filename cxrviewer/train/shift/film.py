"""A film in display units and back: the space every site-shift transform works in.

A transform sees the image as `model_input` gives it: a 2-D float32 array in [0, 1], air dark and bone
bright whatever the file's polarity (MONOCHROME1 is inverted by the file's VOI). So "radio-opaque" is always
"brighter" here. `with_film` writes a transformed film back into an `Image` in the file's own modality units,
dtype and polarity (MONOCHROME1 stays MONOCHROME1: opaque paint becomes LOW pixel values there), with a
linear VOI over the file's window, so that `model_input` of the result is the transformed film (up to the
pixel dtype's rounding) and the Engine runs the one shared preprocessing on it as on any loaded file.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cxrviewer.imaging.display import file_voi, model_input
from cxrviewer.imaging.image import Image, WindowPreset
from cxrviewer.imaging.voi import LINEAR_EXACT, Voi

SOURCE = "site-shift battery"


def film_of(image: Image) -> np.ndarray:
    """The image as a transform sees it: float32 [0, 1], air dark (the model input before preprocessing)."""
    return model_input(image)


def with_film(image: Image, film: np.ndarray) -> Image:
    """A copy of `image` whose pixels (same dtype and polarity, modality units) display as `film`."""
    film = np.asarray(film, dtype=np.float64)
    if film.shape != image.pixels.shape:
        raise ValueError(f"film shape {film.shape} differs from the image's {image.pixels.shape}")
    voi = file_voi(image)
    lo = voi.window.center - voi.window.width / 2.0
    unit = np.clip(film, 0.0, 1.0)
    values = lo + (1.0 - unit if voi.invert else unit) * voi.window.width
    dtype = image.pixels.dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        pixels = np.clip(np.rint(values), info.min, info.max).astype(dtype)
    else:
        pixels = values.astype(dtype)
    window = WindowPreset(voi.window.center, voi.window.width, "shifted film")
    meta = replace(image.meta, notes=[*image.meta.notes, f"pixels altered by the {SOURCE}"])
    return Image(image.path, pixels, meta, list(image.flags),
                 display_lut=Voi(window, LINEAR_EXACT, voi.invert, source=SOURCE))
