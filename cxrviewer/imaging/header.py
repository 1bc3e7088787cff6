"""Reading DICOM headers (without pixel data) into `ImageMeta`."""

from __future__ import annotations

import math
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from cxrviewer.imaging.flags import FRONTAL_VIEWS, LATERAL_VIEWS, view_from_code
from cxrviewer.imaging.formats import FileKind
from cxrviewer.imaging.image import ImageMeta, WindowPreset


def read_header(path: str | Path, kind: FileKind = FileKind.DICOM) -> Dataset:
    """The data set of a DICOM file without its pixel data (cheap; raises pydicom/OS errors)."""
    return pydicom.dcmread(path, stop_before_pixels=True, force=kind is FileKind.DICOM_RAW)


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
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _floats(ds, keyword)
        if len(values) >= 2 and all(math.isfinite(v) and v > 0 for v in values[:2]):
            return (values[0], values[1])
    return None


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
        pixel_spacing=pixel_spacing(ds),
        bits_stored=int(bits[0]) if bits and math.isfinite(bits[0]) else 8,
        window_presets=window_presets(ds),
    )
    frames = frame_count(ds)
    if frames > 1:
        meta.notes.append(f"multi-frame: showing frame 1 of {frames}")
    return meta
