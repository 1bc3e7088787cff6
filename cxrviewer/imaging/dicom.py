"""Loading DICOM files: header checks before decoding, pixel decoding, modality LUT, the file's own VOI."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, pixel_array
from pydicom.uid import UID

from cxrviewer.imaging.codestream import EncapsulationError, check_encapsulated
from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.imaging.flags import compute_flags
from cxrviewer.imaging.formats import MAX_SIDE, NON_IMAGE_SOP_PREFIXES, FileKind
from cxrviewer.imaging.header import (
    drop_unreadable,
    frame_count,
    meta_from_dataset,
    read_dataset,
    read_header,
    window_presets,
)
from cxrviewer.imaging.image import Image
from cxrviewer.imaging.j2k_reduced import decode_reduced
from cxrviewer.imaging.voi import LINEAR, VOI_FUNCTIONS, Voi, auto_voi, lut_voi

log = logging.getLogger(__name__)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# Short, user-facing names of compressed transfer syntaxes.
_SYNTAX_NAMES = {
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless",
    "1.2.840.10008.1.2.4.80": "JPEG-LS",
    "1.2.840.10008.1.2.4.81": "JPEG-LS",
    "1.2.840.10008.1.2.4.90": "JPEG 2000",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.201": "HTJ2K",
    "1.2.840.10008.1.2.4.202": "HTJ2K",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
    "1.2.840.10008.1.2.5": "RLE",
}


def syntax_name(uid: UID | str | None) -> str:
    if not uid:
        return "unknown transfer syntax"
    return _SYNTAX_NAMES.get(str(uid), UID(str(uid)).name)


def _transfer_syntax(ds: Dataset) -> UID | None:
    file_meta = getattr(ds, "file_meta", None)
    uid = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    return UID(str(uid)) if uid else None


def check_decodable(path: Path, ds: Dataset) -> None:
    """Refuse, before any decoding, what cannot or should not be decoded (raises ImageLoadError)."""
    if not any(k in ds for k in _PIXEL_KEYWORDS) and "Rows" not in ds:
        if len(ds) == 0:
            raise ImageLoadError(path, "damaged DICOM file (no data elements after the file header)")
        file_meta = getattr(ds, "file_meta", None)
        media_class = str(file_meta.get("MediaStorageSOPClassUID", "")) if file_meta is not None else ""
        if str(ds.get("SOPClassUID", "") or media_class).startswith(NON_IMAGE_SOP_PREFIXES):
            raise ImageLoadError(path, "no pixel data (this DICOM object is not an image)")
        raise ImageLoadError(path, "damaged DICOM header (image description missing)")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except Exception:  # missing, empty, or a value pydicom cannot decode
        raise ImageLoadError(path, "image size (Rows/Columns) missing or invalid in the header") from None
    if rows <= 0 or cols <= 0:
        raise ImageLoadError(path, f"invalid image size {cols} x {rows} in the DICOM header")
    if rows > MAX_SIDE or cols > MAX_SIDE:
        raise ImageLoadError(
            path, f"image too large ({cols} x {rows} pixels; at most {MAX_SIDE} per side can be opened)"
        )
    uid = _transfer_syntax(ds)
    if uid is not None and not uid.is_transfer_syntax:
        raise ImageLoadError(path, "unknown transfer syntax in the DICOM header (damaged or unsupported file)")
    if uid is not None and uid.is_compressed:
        name = syntax_name(uid)
        try:
            decoder = get_decoder(uid)
        except NotImplementedError:
            raise ImageLoadError(path, f"{name} compressed DICOM is not supported") from None
        if not decoder.is_available:
            raise ImageLoadError(path, f"{name} compressed DICOM: decoder not installed")


def _decode_error(path: Path, ds: Dataset, exc: Exception) -> ImageLoadError:
    text = str(exc).lower()
    if isinstance(exc, EOFError) or any(
        w in text for w in ("less than expected", "too short", "truncat", "insufficient", "end of file")
    ):
        return ImageLoadError(path, "truncated pixel data")
    if "no pixel data" in text or ("pixel data" in text and "not found" in text):
        return ImageLoadError(path, "no pixel data")
    uid = _transfer_syntax(ds)
    what = f"{syntax_name(uid)} " if uid is not None and uid.is_compressed else ""
    log.debug("decoding failed for %s: %s", path.name, exc)
    return ImageLoadError(path, f"{what}pixel data could not be decoded (damaged or unsupported encoding)")


def _to_gray(path: Path, ds: Dataset, arr: np.ndarray, notes: list[str]) -> tuple[np.ndarray, bool]:
    """Colour data to one gray channel; returns (gray, was_colour)."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:
            raise ImageLoadError(path, f"palette colour image could not be converted ({exc})") from None
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3].astype(np.float64)
        gray = rgb @ np.array([0.299, 0.587, 0.114])
        if np.issubdtype(arr.dtype, np.integer):
            gray = np.clip(np.rint(gray), 0, np.iinfo(arr.dtype).max).astype(arr.dtype)
        notes.append("colour image converted to grayscale")
        return gray, True
    return arr, False


def _modality_pixels(ds: Dataset, arr: np.ndarray) -> np.ndarray:
    """Modality LUT / rescale, keeping the stored integer type when it is the identity."""
    has_lut = "ModalityLUTSequence" in ds
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if not has_lut and slope == 1.0 and intercept == 0.0:
        return arr
    out = apply_modality_lut(arr, ds)
    if np.issubdtype(out.dtype, np.integer):
        return out
    if slope.is_integer() and intercept.is_integer():
        lo, hi = float(out.min()), float(out.max())
        if -(2**31) <= lo and hi < 2**31:
            return out.astype(np.int32)
    return out.astype(np.float32)


def _header_voi(path: Path, ds: Dataset, pixels: np.ndarray, notes: list[str], colour: bool) -> Voi:
    """The file's own VOI: VOI LUT Sequence, else first Window Center/Width, else automatic."""
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    shape = str(ds.get("PresentationLUTShape", "") or "").strip().upper()
    # MONOCHROME1 means "invert for display"; Presentation LUT Shape INVERSE says the same thing (and is what
    # the DX/CR IODs require for MONOCHROME1), so the two together still invert exactly once.
    invert = (photometric == "MONOCHROME1" and not colour) or shape == "INVERSE"
    if "PresentationLUTSequence" in ds:
        notes.append("presentation LUT sequence ignored")
    if not colour:
        seq = ds.get("VOILUTSequence")
        if seq:
            try:
                return lut_voi(seq[0], invert, little_endian=ds.original_encoding[1] is not False)
            except Exception as exc:
                log.debug("VOI LUT unusable in %s: %s", path.name, exc)
                notes.append("the header's VOI LUT is unusable: using another window")
        presets = window_presets(ds)
        if presets:
            function = str(ds.get("VOILUTFunction", LINEAR) or LINEAR).strip().upper()
            if function not in VOI_FUNCTIONS:
                notes.append(f"unknown VOI LUT function '{function}': using LINEAR")
                function = LINEAR
            return Voi(presets[0], function, invert, source="header window")
    has_rescale = "ModalityLUTSequence" in ds or float(ds.get("RescaleSlope", 1) or 1) != 1
    bits = int(ds.get("BitsStored", 8) or 8)
    full_range_bits = bits if (pixels.dtype == np.uint8 and not has_rescale) else None
    return auto_voi(pixels, invert, full_range_bits)


def check_compressed(path: Path, ds: Dataset, frames: int) -> None:
    """Refuse damaged fragments, or a header claiming a larger image than the codestream, before decoding."""
    uid = _transfer_syntax(ds)
    if uid is None or not uid.is_encapsulated or "PixelData" not in ds:
        return
    try:
        check_encapsulated(
            ds.PixelData, int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1) or 1),
            int(ds.get("BitsAllocated", 8) or 8), frames, rle=uid == pydicom.uid.RLELossless,
        )
    except EncapsulationError as exc:
        raise ImageLoadError(path, f"{syntax_name(uid)} {exc}") from None


def _has_pixel_tag(path: Path) -> bool:
    """True if the bytes of a (7FE0,0010) Pixel Data tag occur in the file (little or big endian)."""
    data = path.read_bytes()
    return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without file meta (no 'DICM' prefix) get the transfer syntax pydicom detected while reading."""
    if _transfer_syntax(ds) is not None:
        return
    implicit, little = ds.original_encoding
    if little is False:
        uid = pydicom.uid.ExplicitVRBigEndian
    elif implicit:
        uid = pydicom.uid.ImplicitVRLittleEndian
    else:
        uid = pydicom.uid.ExplicitVRLittleEndian
    ds.ensure_file_meta()
    ds.file_meta.TransferSyntaxUID = uid


def load_dicom(path: Path, kind: FileKind = FileKind.DICOM, for_model: bool = False) -> Image:
    """Load one DICOM file (first frame only) into an `Image`; raises ImageLoadError or OSError.

    `for_model`: the pixels only feed the model (no display, no export of the film): a large JPEG 2000 film is
    then decoded at a lower resolution level and resampled to its stored size (`j2k_reduced`)."""
    header = read_header(path, kind)
    check_decodable(path, header)
    frames = frame_count(header)
    try:
        ds = read_dataset(path, kind, stop_before_pixels=False)
    except (ImageLoadError, OSError, MemoryError):
        raise
    except Exception as exc:  # the header read fine: what fails now is the pixel data element
        raise _decode_error(path, header, exc) from None
    damaged = drop_unreadable(path, ds)
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        if _has_pixel_tag(path):  # the element starts but could not be read to its end
            raise ImageLoadError(path, "truncated pixel data")
        raise ImageLoadError(path, "no pixel data")
    _ensure_transfer_syntax(ds)
    check_compressed(path, ds, frames)
    reduced = False
    try:
        arr = decode_reduced(ds) if for_model else None
        reduced = arr is not None
        if arr is None:
            arr = pixel_array(ds, index=0 if frames > 1 else None)
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageLoadError(path, "not enough memory to decode the image") from None
    except Exception as exc:
        raise _decode_error(path, ds, exc) from None
    if frames == 1 and arr.ndim == 3 and arr.shape[-1] not in (3, 4):  # no NumberOfFrames but a frame axis
        arr = arr[0]
    meta = meta_from_dataset(ds)
    if damaged:
        meta.notes.append(f"{damaged} damaged header element(s) ignored")
    if reduced:
        meta.notes.append("JPEG 2000 decoded at a lower resolution level for the model")
    arr, colour = _to_gray(path, ds, arr, meta.notes)
    if arr.ndim != 2:
        raise ImageLoadError(path, f"unexpected pixel array shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    pixels = arr if colour else _modality_pixels(ds, arr)
    voi = _header_voi(path, ds, pixels, meta.notes, colour)
    if colour:
        meta.window_presets = []
    return Image(path=path, pixels=pixels, meta=meta, flags=compute_flags(meta, ds), display_lut=voi)
