"""Reading DICOM headers (without pixel data) into `ImageMeta`."""

from __future__ import annotations

import io
import logging
import math
import os
import zlib
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.imaging.flags import FRONTAL_VIEWS, LATERAL_VIEWS, view_from_code
from cxrviewer.imaging.formats import FileKind, open_regular
from cxrviewer.imaging.image import ImageMeta, WindowPreset

log = logging.getLogger(__name__)


class _CappedReader(io.BufferedReader):
    """A buffered file whose ``read(n)`` never asks for more than what is left of the file.

    A plain buffered file allocates n bytes for ``read(n)`` before reading, so a damaged element length
    (up to 4 GiB) would make pydicom allocate gigabytes for a file of a few kilobytes.
    """

    def __init__(self, raw: io.RawIOBase, size: int, name: str) -> None:
        super().__init__(raw)
        self._size = size
        self._name = name

    @property
    def name(self) -> str:  # the path (pydicom keeps it as `Dataset.filename`), not the descriptor
        return self._name

    def read(self, n: int | None = -1, /) -> bytes:
        if n is not None and n > 0:
            n = max(0, min(n, self._size - self.tell()))
            if n == 0:
                return b""
        return super().read(n)


def read_dataset(path: str | Path, kind: FileKind = FileKind.DICOM, *, stop_before_pixels: bool) -> Dataset:
    """`pydicom.dcmread` with reads capped at the file's size (see `_CappedReader`).

    Pipes and devices are refused without blocking (`open_regular`). Raises ImageLoadError (empty or not
    a regular file), OSError, or whatever pydicom raises for a damaged file.
    """
    raw = io.FileIO(open_regular(path), "rb", closefd=True)
    with _CappedReader(raw, os.fstat(raw.fileno()).st_size, str(path)) as fh:
        if fh._size == 0:
            raise ImageLoadError(path, "empty file (0 bytes)")
        return pydicom.dcmread(fh, stop_before_pixels=stop_before_pixels, force=kind is FileKind.DICOM_RAW)


# The Image Pixel module: without these the pixels cannot be interpreted, so a damaged one refuses the file.
_ESSENTIAL = frozenset(0x00280000 | e for e in (0x0002, 0x0004, 0x0006, 0x0008, 0x0010, 0x0011, 0x0100, 0x0101,
                                                0x0102, 0x0103))
_ITEMS_CHECKED = 16  # items per sequence whose elements are checked
# Converting a value makes one Python object per item: a damaged length that swallows megabytes of pixel data
# into a text or number element would cost ~100x its size in memory. Real values stay far below these sizes
# (a 65536-entry LUT is 128 KiB); binary VRs (OB, OW, UN, ...) convert to bytes and are not limited.
_TEXT_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UI UR UT".split())
_NUMBER_VRS = frozenset("AT FD FL SL SS SV UL US UV".split())
_MAX_TEXT_BYTES = 64 * 1024
_MAX_NUMBER_BYTES = 512 * 1024


def _oversized(ds: Dataset, tag: BaseTag) -> bool:
    """True if the element is still raw and holds far more bytes than any real value of its VR."""
    raw = ds.get_item(tag)
    if not isinstance(raw, RawDataElement) or raw.value is None:
        return False
    vr = raw.VR
    if vr is None:  # implicit VR: the dictionary's
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return False
    size = len(raw.value)
    if vr in _TEXT_VRS:
        return size > _MAX_TEXT_BYTES
    return (vr in _NUMBER_VRS or vr == "US or SS") and size > _MAX_NUMBER_BYTES


def drop_unreadable(path: str | Path, ds: Dataset, depth: int = 0) -> int:
    """Remove elements whose value pydicom cannot decode (a damaged VR or length); return how many.

    pydicom converts values lazily, so without this a damaged optional element (say Patient Position)
    would fail whatever code reads it first. A damaged element of the Image Pixel module raises
    ImageLoadError instead: the pixels cannot be trusted then.
    """
    dropped = 0
    for tag in list(ds.keys()):
        try:
            if _oversized(ds, tag):
                raise ValueError("value far too long for its VR")
            elem = ds[tag]
        except Exception as exc:  # pydicom raises many types for damaged values
            if depth == 0 and int(tag) in _ESSENTIAL:
                # the type only: a value-conversion message may quote the value, and values can be PHI
                log.debug("%s: image pixel element %s unreadable (%s)", Path(path).name, tag, type(exc).__name__)
                raise ImageLoadError(path, "damaged DICOM header (the image description is unreadable)") from None
            del ds[tag]
            dropped += 1
            continue
        if elem.VR == "SQ" and depth < 4:
            # Only the first items: the viewer reads those (not, e.g., the per-frame groups of a long series).
            for item in list(elem.value or [])[:_ITEMS_CHECKED]:
                dropped += drop_unreadable(path, item, depth + 1)
    if dropped and depth == 0:
        log.debug("%s: %d damaged header element(s) ignored", Path(path).name, dropped)
    return dropped


def header_error(path: str | Path, exc: Exception) -> ImageLoadError:
    """The plain message for a data set pydicom could not parse."""
    # the type only: pydicom's messages may quote element values, and values can be patient identifiers
    log.debug("DICOM header of %s unreadable (%s)", Path(path).name, type(exc).__name__)
    if isinstance(exc, pydicom.errors.InvalidDicomError):
        return ImageLoadError(path, "not a DICOM file")
    if isinstance(exc, zlib.error):
        return ImageLoadError(path, "damaged DICOM file (its deflated data set cannot be decompressed)")
    if "transfer syntax" in str(exc).lower():
        return ImageLoadError(path, "unknown or invalid transfer syntax in the DICOM header")
    if isinstance(exc, EOFError):
        return ImageLoadError(path, "damaged DICOM header (the file ends inside it)")
    return ImageLoadError(path, "damaged DICOM header")


def read_header(path: str | Path, kind: FileKind = FileKind.DICOM) -> Dataset:
    """The data set of a DICOM file without its pixel data (cheap).

    Raises ImageLoadError for a file that is not DICOM or whose header cannot be parsed, OSError when
    it cannot be read. Damaged optional elements are dropped (`drop_unreadable`).
    """
    try:
        ds = read_dataset(path, kind, stop_before_pixels=True)
        drop_unreadable(path, ds)
    except (ImageLoadError, OSError, MemoryError):
        raise
    except Exception as exc:  # pydicom raises many types for damaged headers
        raise header_error(path, exc) from None
    return ds


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed element must not make the whole header unreadable
        return ""
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0] if len(value) else ""
    return str(value).strip()


def _floats(ds: Dataset, keyword: str) -> list[float]:
    try:
        value = ds.get(keyword)
    except Exception:
        return []
    if value is None or value == "":
        return []
    values = list(value) if isinstance(value, pydicom.multival.MultiValue) else [value]
    out: list[float] = []
    for v in values:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(math.nan)
    return out


def window_presets(ds: Dataset) -> list[WindowPreset]:
    """Window Center/Width pairs of the header (modality units), with their explanations."""
    centers, widths = _floats(ds, "WindowCenter"), _floats(ds, "WindowWidth")
    try:
        names_value = ds.get("WindowCenterWidthExplanation")
    except Exception:
        names_value = None
    if names_value is None:
        names: list[str] = []
    elif isinstance(names_value, pydicom.multival.MultiValue):
        names = [str(n).strip() for n in names_value]
    else:
        names = [str(names_value).strip()]
    presets = []
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        if math.isfinite(c) and math.isfinite(w) and w > 0:
            presets.append(WindowPreset(center=c, width=w, name=names[i] if i < len(names) else ""))
    return presets


def pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm: Pixel Spacing, else Imager Pixel Spacing; None if absent or zero."""
    return pixel_spacing_with_tag(ds)[0]


def pixel_spacing_with_tag(ds: Dataset) -> tuple[tuple[float, float] | None, str]:
    """`pixel_spacing` and the keyword it was read from ("" when None)."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(ds, keyword)
        if len(values) >= 2 and all(math.isfinite(v) and v > 0 for v in values[:2]):
            return (values[0], values[1]), keyword
    return None, ""


def view_position(ds: Dataset) -> str:
    """View Position, else PA/AP/lateral written into Patient Position, else the View Code Sequence."""
    vp = _text(ds, "ViewPosition").upper()
    if vp:
        return vp
    pp = _text(ds, "PatientPosition").upper()
    if pp in FRONTAL_VIEWS | LATERAL_VIEWS:
        return pp
    try:
        return view_from_code(ds)
    except Exception:
        return ""


def frame_count(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def meta_from_dataset(ds: Dataset) -> ImageMeta:
    """`ImageMeta` from a DICOM data set (header only)."""
    bits = _floats(ds, "BitsStored")
    spacing, spacing_tag = pixel_spacing_with_tag(ds)
    meta = ImageMeta(
        source_format="dicom",
        patient_name=_text(ds, "PatientName"),
        patient_id=_text(ds, "PatientID"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        accession_number=_text(ds, "AccessionNumber"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=_text(ds, "SOPClassUID"),
        study_date=_text(ds, "StudyDate"),
        study_description=_text(ds, "StudyDescription"),
        modality=_text(ds, "Modality").upper(),
        body_part=_text(ds, "BodyPartExamined").upper(),
        view_position=view_position(ds),
        laterality=(_text(ds, "ImageLaterality") or _text(ds, "Laterality")).upper(),
        photometric=_text(ds, "PhotometricInterpretation").upper() or "MONOCHROME2",
        pixel_spacing=spacing,
        pixel_spacing_tag=spacing_tag,
        bits_stored=int(bits[0]) if bits and math.isfinite(bits[0]) else 8,
        window_presets=window_presets(ds),
    )
    frames = frame_count(ds)
    if frames > 1:
        meta.notes.append(f"multi-frame: showing frame 1 of {frames}")
    return meta
