"""Recognising file kinds from their first bytes (and, as a hint only, their extension)."""

from __future__ import annotations

import struct
from enum import StrEnum
from pathlib import Path

MAX_SIDE = 8192  # images larger than this per side are refused before decoding

RASTER_EXTENSIONS = {".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp"}
DICOM_EXTENSIONS = {".dcm", ".dicom", ".dic", ".dcm30"}
IMAGE_EXTENSIONS = RASTER_EXTENSIONS | DICOM_EXTENSIONS


class FileKind(StrEnum):
    """What a file's first bytes say it is."""

    DICOM = "dicom"  # Part 10 file with the 'DICM' prefix
    DICOM_RAW = "dicom_raw"  # DICOM data set without preamble/prefix (old or non-conformant writers)
    PNG = "png"
    JPEG = "jpeg"
    TIFF = "tiff"
    BMP = "bmp"

    @property
    def is_dicom(self) -> bool:
        return self in (FileKind.DICOM, FileKind.DICOM_RAW)


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A data set without preamble starts with a (0002,xxxx) or (0008,xxxx) element, little or big endian."""
    if len(head) < 8:
        return False
    group_le, elem_le = struct.unpack("<HH", head[:4])
    group_be, elem_be = struct.unpack(">HH", head[:4])
    if group_le in (0x0002, 0x0008) and elem_le < 0x0100:
        vr = head[4:6]
        if vr.isalpha() and vr.isupper():
            return True
        return struct.unpack("<I", head[4:8])[0] < 0x10000  # implicit VR: a plausible first length
    if group_be == 0x0008 and elem_be < 0x0100:
        vr = head[4:6]
        return vr.isalpha() and vr.isupper()
    return False


def sniff_bytes(head: bytes) -> FileKind | None:
    """The kind of file whose first (at least 132) bytes are `head`, or None if not an image we read."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return FileKind.DICOM
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return FileKind.PNG
    if head.startswith(b"\xff\xd8\xff"):
        return FileKind.JPEG
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return FileKind.TIFF
    if head.startswith(b"BM") and len(head) >= 26:
        return FileKind.BMP
    if _looks_like_raw_dicom(head):
        return FileKind.DICOM_RAW
    return None


def sniff(path: str | Path) -> FileKind | None:
    """The kind of the file at `path` from its first bytes (raises OSError if it cannot be read)."""
    with open(path, "rb") as fh:
        head = fh.read(132)
    return sniff_bytes(head)


def has_image_extension(path: str | Path) -> bool:
    """True if the file name claims to be an image we read (used to report, not skip, broken files)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_dicomdir(path: str | Path) -> bool:
    """DICOMDIR index files are media directories, not images."""
    return Path(path).name.upper() == "DICOMDIR"
