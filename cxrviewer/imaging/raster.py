"""Loading PNG, JPEG, TIFF and BMP files (8- and 16-bit, gray or colour) into `Image`."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage

from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.imaging.formats import MAX_SIDE, FileKind
from cxrviewer.imaging.image import Image, ImageMeta
from cxrviewer.imaging.voi import auto_voi

log = logging.getLogger(__name__)

# Grayscale saved as RGB (e.g. the Kermany JPEGs) differs between channels only by compression noise.
_GRAY_CHANNEL_TOLERANCE = 3.0

PILImage.MAX_IMAGE_PIXELS = None  # our own size limit (MAX_SIDE) is checked from the header instead


def raster_size(path: Path) -> tuple[int, int, int]:
    """(width, height, frames) from the file header, without decoding the pixels (raises ImageLoadError)."""
    try:
        with PILImage.open(path) as im:
            width, height = im.size
            frames = int(getattr(im, "n_frames", 1) or 1)
    except (OSError, ValueError, SyntaxError) as exc:
        log.debug("header unreadable for %s: %s", path.name, exc)
        raise ImageLoadError(path, "damaged image file (header unreadable)") from None
    return width, height, frames


def _check_complete(path: Path, kind: FileKind, data: np.ndarray) -> None:
    """Truncated PNG/JPEG files decode to partly grey images without an error: refuse them instead."""
    tail = data[-65536:].tobytes()
    if kind is FileKind.PNG and b"IEND" not in tail:
        raise ImageLoadError(path, "truncated image data (PNG file is incomplete)")
    if kind is FileKind.JPEG and b"\xff\xd9" not in tail:
        raise ImageLoadError(path, "truncated image data (JPEG file is incomplete)")


def _to_gray(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    if arr.ndim == 2:
        return arr
    channels = arr.shape[2]
    if channels == 1:
        return arr[..., 0]
    if channels == 2:  # gray + alpha
        return np.ascontiguousarray(arr[..., 0])
    bgr = arr[..., :3]
    spread = float(np.abs(bgr[..., 0].astype(np.float32) - bgr[..., 2].astype(np.float32)).mean())
    if spread > _GRAY_CHANNEL_TOLERANCE:
        notes.append("colour image converted to grayscale")
        return cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2GRAY)
    notes.append("RGB file with gray content: converted to grayscale")
    return cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2GRAY)


def load_raster(path: Path, kind: FileKind) -> Image:
    """Load one raster image (first page only); raises ImageLoadError or OSError."""
    width, height, frames = raster_size(path)
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageLoadError(
            path, f"image too large ({width} x {height} pixels; at most {MAX_SIDE} per side can be opened)"
        )
    data = np.fromfile(path, dtype=np.uint8)  # np.fromfile + imdecode also handles non-ASCII paths
    _check_complete(path, kind, data)
    arr = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)  # applies EXIF orientation
    if arr is None:
        raise ImageLoadError(path, f"{kind.value.upper()} image data could not be decoded (damaged file)")
    meta = ImageMeta(source_format=kind.value)
    if frames > 1:
        meta.notes.append(f"multi-page file: showing page 1 of {frames}")
    pixels = _to_gray(arr, meta.notes)
    if pixels.dtype == np.bool_:
        pixels = pixels.astype(np.uint8)
    if pixels.dtype not in (np.uint8, np.uint16):
        if np.issubdtype(pixels.dtype, np.integer):
            pixels = pixels.astype(np.int32)
        else:
            pixels = pixels.astype(np.float32)
    meta.bits_stored = int(pixels.dtype.itemsize * 8)
    full_range_bits = 8 if pixels.dtype == np.uint8 else None
    return Image(
        path=path, pixels=pixels, meta=meta, flags=[], display_lut=auto_voi(pixels, False, full_range_bits)
    )
