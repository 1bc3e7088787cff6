"""Checks on a received object before it is stored: is it what the C-STORE request says, whole, and an image
the node can analyse?

An image is acknowledged only when its header allows an answer: the loader's own checks before decoding
(`cxrviewer.imaging.dicom.check_decodable` and `check_compressed`: a size the viewer can open, a decoder for
its transfer syntax, fragments whose codestream declares the size the header claims) and a geometry the
model can read (8 or 16 bits allocated, bits stored within them, 1 or 3 samples, 1 to `MAX_FRAMES` frames).
What fails only at decoding still gets an answer: the node sends a notice SR.

`check_dataset` returns None for a good object, else a `Refusal` (a C-STORE failure status and a reason
free of identifiers). The statuses are the Storage Service Class ones (PS3.4 B.2.3):
A900 "data set does not match SOP class", C000 "cannot understand", A700 "out of resources".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID

from cxrviewer.imaging.dicom import check_compressed, check_decodable
from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.imaging.header import frame_count
from cxrviewer.net.sopclasses import IMAGE_CLASSES

OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
#: Stands for the object in the loader's messages (a received object has no file name yet).
RECEIVED = Path("received object")
#: A radiograph has one frame; a few more are tolerated (the viewer shows the first).
MAX_FRAMES = 64


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


def _loader_refusal(ds: Dataset, transfer_syntax: str) -> Refusal | None:
    """What the loader would refuse before decoding this object (its messages name no identifiers)."""
    if getattr(ds, "file_meta", None) is None:  # a received data set: the loader reads the syntax from here
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    try:
        check_decodable(RECEIVED, ds)
        check_compressed(RECEIVED, ds, frame_count(ds))
    except ImageLoadError as exc:
        return Refusal(CANNOT_UNDERSTAND, exc.reason)
    except Exception as exc:  # fragments that cannot even be walked
        return Refusal(CANNOT_UNDERSTAND, f"damaged compressed pixel data ({type(exc).__name__})")
    return None


def _geometry_refusal(ds: Dataset) -> Refusal | None:
    """A refusal for an image geometry no decoder should be asked to allocate, else None."""
    try:
        bits = int(ds.BitsAllocated)
        stored = int(ds.get("BitsStored", bits) or bits)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return Refusal(DOES_NOT_MATCH, "unreadable image geometry (Bits, Samples, Frames)")
    if bits not in (8, 16):
        return Refusal(CANNOT_UNDERSTAND, f"{bits} bits allocated per pixel cannot be analysed (8 or 16)")
    if not 0 < stored <= bits:
        return Refusal(DOES_NOT_MATCH, f"{stored} bits stored in {bits} allocated")
    if samples not in (1, 3):
        return Refusal(DOES_NOT_MATCH, f"{samples} samples per pixel (1 or 3 expected)")
    if not 1 <= frames <= MAX_FRAMES:
        return Refusal(DOES_NOT_MATCH, f"number of frames {frames} is outside 1-{MAX_FRAMES}")
    return None


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
    refusal = _geometry_refusal(ds) or _loader_refusal(ds, transfer_syntax)
    if refusal is not None:
        return refusal
    if not UID(transfer_syntax).is_compressed:
        try:
            expected = _expected_pixel_bytes(ds)
        except (TypeError, ValueError):
            return Refusal(DOES_NOT_MATCH, "unreadable image geometry (Rows, Columns, Bits Allocated)")
        actual = len(ds.PixelData)
        if actual < expected:
            return Refusal(DOES_NOT_MATCH, f"pixel data truncated ({actual} of {expected} bytes)")
    return None
