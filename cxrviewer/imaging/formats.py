"""Recognising file kinds from their first bytes (and, as a hint only, their extension)."""

from __future__ import annotations

import os
import stat
import struct
from enum import StrEnum
from pathlib import Path

from cxrviewer.imaging.errors import ImageLoadError

MAX_SIDE = 8192  # images larger than this per side are refused before decoding

RASTER_EXTENSIONS = {".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".bmp"}
DICOM_EXTENSIONS = {".dcm", ".dicom", ".dic", ".dcm30"}
IMAGE_EXTENSIONS = RASTER_EXTENSIONS | DICOM_EXTENSIONS

# SOP classes that never hold an image (reports, presentation states, documents, waveforms, RT plans, ...):
# such files in a folder are skipped silently. An image class (or none) without Rows is a damaged file.
NON_IMAGE_SOP_PREFIXES = tuple(
    "1.2.840.10008." + suffix
    for suffix in (
        "1.3.10",  # Media Storage Directory (DICOMDIR)
        "5.1.4.1.1.88.",  # structured reports, key object selection
        "5.1.4.1.1.11.",  # presentation states
        "5.1.4.1.1.104.",  # encapsulated PDF/CDA/STL/...
        "5.1.4.1.1.9.",  # waveforms
        "5.1.4.1.1.66",  # raw data, registration, fiducials, segmentation surfaces
        "5.1.4.1.1.67",  # real world value mapping
        "5.1.4.1.1.68.",  # surfaces
        "5.1.4.1.1.78.",  # ophthalmic measurements
        "5.1.4.1.1.79.",
        "5.1.4.1.1.80.",
        "5.1.4.1.1.81.",
        "5.1.4.1.1.82.",
        "5.1.4.1.1.90.",  # content assessment results
        "5.1.4.1.1.91.",  # microscopy annotations
        "5.1.4.1.1.200.",  # protocols
        "5.1.4.1.1.481.2",  # RT dose, structure sets, plans, records (481.1 is RT Image)
        "5.1.4.1.1.481.3",
        "5.1.4.1.1.481.4",
        "5.1.4.1.1.481.5",
        "5.1.4.1.1.481.6",
        "5.1.4.1.1.481.7",
        "5.1.4.1.1.481.8",
        "5.1.4.1.1.481.9",
        "5.1.4.34.",  # RT second generation
        "5.1.4.38.",  # hanging protocols
        "5.1.4.39.",  # colour palettes
        "5.1.4.43.",  # implant templates
        "5.1.4.44.",
        "5.1.4.45.",
    )
)


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


def open_regular(path: str | Path) -> int:
    """A read-only descriptor of the regular file at `path` (the caller closes it).

    Opening never blocks: a pipe, socket or device is refused with `ImageLoadError` (reading a FIFO would
    wait forever); a folder too. Raises OSError when the file cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise ImageLoadError(path, "is a folder, not a file")
        raise ImageLoadError(path, "not a regular file (a pipe, socket or device)")
    return fd


def sniff(path: str | Path) -> FileKind | None:
    """The kind of the file at `path` from its first bytes.

    Raises OSError if it cannot be read, ImageLoadError if it is not a regular file.
    """
    fd = open_regular(path)
    try:
        head = os.read(fd, 132)
    finally:
        os.close(fd)
    return sniff_bytes(head)


def has_image_extension(path: str | Path) -> bool:
    """True if the file name claims to be an image we read (used to report, not skip, broken files)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_dicomdir(path: str | Path) -> bool:
    """DICOMDIR index files are media directories, not images."""
    return Path(path).name.upper() == "DICOMDIR"
