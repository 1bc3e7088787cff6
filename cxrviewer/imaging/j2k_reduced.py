"""JPEG 2000 decoded at a lower resolution level, for callers that only feed the model.

A JPEG 2000 codestream holds its image as a wavelet pyramid: decoding only its coarser levels skips most of the
entropy decoding (a 2k CR: about 40 ms instead of 100-170 ms here). The network sees a 256 px letterbox, so
`cxrviewer-predict` (no display, no export of the film) decodes at the level whose long side is still at least
`MODEL_SIDE` and resamples it to the stored size: every coordinate, size and pixel-spacing downstream stays the
film's own, and the model input differs from the full decode's by a fraction of a grey level (see
`tests/imaging/test_j2k_reduced.py`). The viewer and every export decode the whole film.

Pillow's OpenJPEG plugin does the decoding (pydicom's decoders have no reduce factor). Only what it handles
plainly is taken: one component, unsigned, at most 16 bits, a raw codestream whose size matches the header;
anything else returns None and the caller decodes in full as before.
"""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000, JPEG2000Lossless

#: The reduced film's long side is kept at least this long (pixels): three times the model's 256 px input (at twice,
#: a 1k film read at 512 px moved probabilities by up to 0.07; at 2k read at 978 px, by at most 0.012).
MODEL_SIDE = 768
SYNTAXES = (JPEG2000Lossless, JPEG2000)
SOC_SIZ = b"\xff\x4f\xff\x51"
COD = b"\xff\x52"


def _header(code: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, precision, decomposition levels) of a one-component unsigned codestream whose image starts
    at the reference grid's origin, else None."""
    if not code.startswith(SOC_SIZ) or len(code) < 4 + 40:
        return None
    _, _, xsiz, ysiz, xo, yo = struct.unpack_from(">HHIIII", code, 4)
    if xo or yo:
        return None
    csiz = struct.unpack_from(">H", code, 4 + 36)[0]
    if csiz != 1 or len(code) < 4 + 41:
        return None
    ssiz = code[4 + 38]
    if ssiz & 0x80:  # signed samples
        return None
    cod = code.find(COD, 4, 4096)
    if cod < 0 or len(code) < cod + 10:
        return None
    return xsiz, ysiz, (ssiz & 0x7F) + 1, code[cod + 9]


def _pillow_size(n: int, level: int) -> int:
    """The size Pillow's plugin expects at `level` (it rounds where OpenJPEG takes the ceiling)."""
    power = 1 << level
    return int((n + (power >> 1)) / power)


def level_for(width: int, height: int, levels: int) -> int:
    """The coarsest resolution level whose long side stays at least `MODEL_SIDE` (0: the full film)."""
    level = 0
    while (level < levels and -(-max(width, height) // (2 << level)) >= MODEL_SIDE
           and all(_pillow_size(n, level + 1) == -(-n // (2 << level)) for n in (width, height))):
        level += 1
    return level


def decode_reduced(ds: Dataset) -> np.ndarray | None:
    """The first frame of a single-frame JPEG 2000 grey data set decoded at `level_for`'s level and resampled to
    Rows x Columns (uint8 or uint16, as the full decode gives), or None when it does not apply (then decode in
    full): another transfer syntax, several frames or samples, not MONOCHROME, signed or deeper than 16 bits, a
    film too small to gain, a Pillow without OpenJPEG, or a codestream Pillow cannot read at that level."""
    if ds.file_meta.get("TransferSyntaxUID") not in SYNTAXES:
        return None
    if int(ds.get("NumberOfFrames", 1) or 1) != 1 or int(ds.get("SamplesPerPixel", 1)) != 1:
        return None
    if int(ds.get("PixelRepresentation", 0)) != 0 or int(ds.get("BitsAllocated", 16)) not in (8, 16):
        return None
    if str(ds.get("PhotometricInterpretation", "")).strip() not in ("MONOCHROME1", "MONOCHROME2"):
        return None  # palette indices must not be blended
    rows, cols, stored = int(ds.Rows), int(ds.Columns), int(ds.get("BitsStored", ds.BitsAllocated))
    code = next(generate_frames(ds.PixelData, number_of_frames=1))
    header = _header(code)
    if header is None or header[:2] != (cols, rows) or header[2] != stored:
        return None
    level = level_for(cols, rows, header[3])
    if level == 0:
        return None
    from PIL import Image as PILImage  # a dependency; imported here, where a film needs it
    from PIL import features

    if not features.check("jpg_2000"):  # a Pillow built without OpenJPEG
        return None
    try:
        with PILImage.open(io.BytesIO(code)) as im:
            im.reduce = level  # type: ignore[method-assign, assignment]  # the plugin's resolution-level setting
            im.load()
            arr = np.asarray(im)
    except Exception:  # e.g. a tile or component with fewer levels than the main header says: decode in full,
        return None  # which also names real damage as before
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        return None
    # Pillow scales samples up to its mode's depth (8 bits for "L", 16 for "I;16"): shift them back
    shift = (8 if arr.dtype == np.uint8 else 16) - header[2]
    if ds.BitsAllocated == 8:
        return cv2.resize((arr >> shift).astype(np.uint8), (cols, rows), interpolation=cv2.INTER_LINEAR)
    return cv2.resize((arr >> shift).astype(np.uint16), (cols, rows), interpolation=cv2.INTER_LINEAR)
