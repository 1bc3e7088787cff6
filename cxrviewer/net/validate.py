"""Checks on a received object before it is stored: is it what the C-STORE request says, and whole?

`check_dataset` returns None for a good object, else a `Refusal` (a C-STORE failure status and a reason
free of identifiers). The statuses are the Storage Service Class ones (PS3.4 B.2.3):
A900 "data set does not match SOP class", C000 "cannot understand", A700 "out of resources".
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID

from cxrviewer.net.sopclasses import IMAGE_CLASSES

OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


def _valid_uid(value: object) -> bool:
    return bool(value) and UID(str(value)).is_valid


def _expected_pixel_bytes(ds: Dataset) -> int:
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.BitsAllocated)
    total_bits = int(ds.Rows) * int(ds.Columns) * samples * frames * bits
    return (total_bits + 7) // 8


def check_dataset(ds: Dataset, sop_class: str, sop_instance: str, transfer_syntax: str) -> Refusal | None:
    """Refuse an object that contradicts its request, lacks the study keys or has truncated pixels."""
    try:
        ds.walk(lambda _ds, _elem: None)  # decode every element now: a malformed value fails here
    except Exception as exc:  # pydicom raises many types for damaged values
        return Refusal(CANNOT_UNDERSTAND, f"damaged data set ({type(exc).__name__})")
    if str(ds.get("SOPClassUID", "")) != str(sop_class):
        return Refusal(DOES_NOT_MATCH, "SOP Class UID differs from the one in the request")
    if str(ds.get("SOPInstanceUID", "")) != str(sop_instance):
        return Refusal(DOES_NOT_MATCH, "SOP Instance UID differs from the one in the request")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not _valid_uid(ds.get(keyword)):
            return Refusal(DOES_NOT_MATCH, f"missing or invalid {keyword}")
    if sop_class not in IMAGE_CLASSES:
        return None
    missing = [k for k in ("Rows", "Columns", "BitsAllocated", "PixelData") if ds.get(k) in (None, b"", 0)]
    if missing:
        return Refusal(DOES_NOT_MATCH, f"image without {', '.join(missing)}")
    if not UID(transfer_syntax).is_compressed:
        try:
            expected = _expected_pixel_bytes(ds)
        except (TypeError, ValueError):
            return Refusal(DOES_NOT_MATCH, "unreadable image geometry (Rows, Columns, Bits Allocated)")
        actual = len(ds.PixelData)
        if actual < expected:
            return Refusal(DOES_NOT_MATCH, f"pixel data truncated ({actual} of {expected} bytes)")
    return None
