"""Checks of encapsulated (compressed) DICOM pixel data before it is decoded.

Decoders size their output from the DICOM header, so a header that claims a far larger image than the
compressed data holds would make them allocate hundreds of megabytes for nothing, and a fragment whose
length runs past the data set can make a decoder return a silently wrong image. `check_encapsulated`
walks the fragments and compares the header's image size with what the first codestream says.
"""

from __future__ import annotations

import struct

ITEM = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian, as the standard requires for encapsulated data
SEQUENCE_END = b"\xfe\xff\xdd\xe0"
RLE_MAX_EXPANSION = 64  # a PackBits run of 2 bytes decodes to at most 128 bytes


class EncapsulationError(ValueError):
    """The fragments of encapsulated pixel data are damaged, or disagree with the header."""


def fragments(data: bytes) -> list[memoryview]:
    """The items of an encapsulated Pixel Data value (Basic Offset Table first), checked for sanity."""
    view = memoryview(data)
    out: list[memoryview] = []
    pos = 0
    while pos + 8 <= len(view):
        tag = bytes(view[pos : pos + 4])
        length = struct.unpack_from("<I", view, pos + 4)[0]
        if tag == SEQUENCE_END:
            break
        if tag != ITEM:
            raise EncapsulationError("pixel data damaged (not in the fragments its transfer syntax requires)")
        if length > len(view) - pos - 8:
            raise EncapsulationError("pixel data damaged (a fragment runs past the end of the file)")
        if length == 0 and out:
            raise EncapsulationError("pixel data damaged (an empty fragment)")
        out.append(view[pos + 8 : pos + 8 + length])
        pos += 8 + length
    if len(out) < 2:
        raise EncapsulationError("pixel data damaged (no image fragments)")
    return out


def _jpeg_size(stream: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from the SOF marker of a JPEG / JPEG-LS codestream."""
    if not stream.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(stream):
        if stream[pos] != 0xFF:
            return None
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack_from(">H", stream, pos + 2)[0]
        sof = (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) or marker == 0xF7
        if sof:
            if pos + 10 > len(stream):
                return None
            height, width = struct.unpack_from(">HH", stream, pos + 5)
            return width, height, stream[pos + 9]
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def _j2k_size(stream: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) from the SIZ marker of a JPEG 2000 codestream (raw or in a JP2 box)."""
    start = stream.find(b"\xff\x4f\xff\x51", 0, 4096)
    if start < 0 or start + 42 > len(stream):
        return None
    x, y, x0, y0 = struct.unpack_from(">IIII", stream, start + 8)
    components = struct.unpack_from(">H", stream, start + 40)[0]
    return x - x0, y - y0, components


def codestream_size(stream: bytes) -> tuple[int, int, int] | None:
    """(width, height, components) that a JPEG, JPEG-LS or JPEG 2000 codestream declares, if readable."""
    return _jpeg_size(stream) or _j2k_size(stream)


def check_encapsulated(data: bytes, rows: int, columns: int, samples: int, bits_allocated: int,
                       frames: int, rle: bool) -> None:
    """Raise EncapsulationError if the fragments are damaged or cannot hold the image the header claims."""
    items = fragments(data)
    first = bytes(items[1][:65536])
    if rle:
        frame_items = items[1:] if frames == 1 else items[1:2]
        compressed = sum(len(f) for f in frame_items)
        claimed = rows * columns * samples * max(1, bits_allocated // 8)
        if claimed > RLE_MAX_EXPANSION * compressed + 64:
            raise EncapsulationError(
                f"pixel data does not match the header: {columns} x {rows} pixels cannot fit in "
                f"{compressed} compressed bytes"
            )
        return
    size = codestream_size(first)
    if size is None:
        return  # an encoding we do not parse: the decoder checks
    width, height, components = size
    if (width, height) != (columns, rows):
        raise EncapsulationError(
            f"pixel data does not match the header: {columns} x {rows} pixels in the header, "
            f"{width} x {height} in the compressed data"
        )
    if components != samples:
        raise EncapsulationError(
            f"pixel data does not match the header: {samples} samples per pixel in the header, "
            f"{components} in the compressed data"
        )
