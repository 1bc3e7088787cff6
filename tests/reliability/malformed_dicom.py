"""A corpus of malformed files made from real DICOMs, for the loader's robustness tests and scripts.

Every `Case` is one file (or special directory entry) written under a folder, with what the loader may
do with it (`expect`):

* ``error``          `load_image` must raise `ImageLoadError`;
* ``same``           it must load, with exactly the pixels of the untouched source (`reference`);
* ``error_or_same``  either of the two (e.g. a cut after the first frame of a multi-frame file);
* ``any``            an error, or an image that passes the display/model invariants (e.g. a flipped byte
                     in a window width changes the display, not the validity).

``must`` lists words of which at least one must appear in the error message (case-insensitive).
Nothing here imports cxrviewer: the corpus describes inputs, the worker judges the loader.
"""

from __future__ import annotations

import io
import os
import random
import socket
import struct
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.filereader import data_element_generator
from pydicom.uid import UID

PIXEL_TAG = 0x7FE00010
ITEM_TAG = 0xFFFEE000
SEQ_DELIM_TAG = 0xFFFEE0DD


@dataclass
class Case:
    """One malformed input: its path once written, the category, what is allowed, and why."""

    name: str
    category: str
    expect: str  # "error" | "same" | "error_or_same" | "any"
    reference: str | None = None  # source key whose pixels a "same" result must equal
    must: tuple[str, ...] = ()  # one of these words must be in the error message
    path: Path | None = None
    note: str = ""
    big_claim: bool = False  # the header claims far more pixels than the file holds (memory is checked)


@dataclass
class Element:
    """Where one top-level data element sits in the file."""

    tag: int
    vr: str | None
    start: int  # first byte of the tag
    value_start: int
    length: int  # 0xFFFFFFFF for undefined length


@dataclass
class Layout:
    """The byte layout of a Part 10 DICOM file."""

    data: bytes
    meta_end: int  # first byte of the data set (after the file meta group)
    implicit: bool
    little: bool
    transfer_syntax: str
    elements: list[Element] = field(default_factory=list)  # data set elements, file meta excluded
    meta_elements: list[Element] = field(default_factory=list)

    def element(self, tag: int) -> Element:
        return next(e for e in self.elements if e.tag == tag)

    @property
    def pixel(self) -> Element:
        return self.element(PIXEL_TAG)

    @property
    def encapsulated(self) -> bool:
        return self.pixel.length == 0xFFFFFFFF


def _header_len(implicit: bool, vr: str | None) -> int:
    if implicit:
        return 8
    return 12 if vr in {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"} else 8


def _walk(fp: io.BytesIO, implicit: bool, little: bool, stop: Callable[[int], bool] | None = None) -> list[Element]:
    out: list[Element] = []
    stop_when = (lambda tag, vr, length: stop(int(tag))) if stop else None
    pos = fp.tell()  # elements are contiguous: each starts where the previous one ended
    for raw in data_element_generator(fp, implicit, little, stop_when=stop_when, defer_size=256):
        end = fp.tell()
        hdr = _header_len(implicit, raw.VR)
        length = getattr(raw, "length", None)
        if length is None:  # a parsed sequence: its extent in the file
            length = 0xFFFFFFFF if raw.is_undefined_length else end - pos - hdr
        out.append(Element(int(raw.tag), raw.VR, pos, pos + hdr, length))
        pos = end
    return out


def layout(data: bytes) -> Layout:
    """Parse the element positions of a Part 10 file (with 'DICM' prefix)."""
    if data[128:132] != b"DICM":
        raise ValueError("layout() needs a Part 10 file with preamble")
    fp = io.BytesIO(data)
    fp.seek(132)
    meta = _walk(fp, False, True, stop=lambda tag: tag >> 16 != 0x0002)
    meta_end = meta[-1].value_start + meta[-1].length  # the last meta element has a defined length
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    implicit, little = ts.is_implicit_VR, ts.is_little_endian
    if ts == pydicom.uid.DeflatedExplicitVRLittleEndian:
        raise ValueError("deflated files are not used as sources")
    fp.seek(meta_end)
    elements = _walk(fp, implicit, little)
    return Layout(data, meta_end, implicit, little, str(ts), elements, meta)


def items(lay: Layout) -> list[tuple[int, int]]:
    """(offset of the item tag, value length) of each item in encapsulated pixel data (BOT first)."""
    px = lay.pixel
    pos, out = px.value_start, []
    data = lay.data
    while pos + 8 <= len(data):
        tag_group, tag_elem, length = struct.unpack("<HHI", data[pos : pos + 8])
        tag = (tag_group << 16) | tag_elem
        if tag == SEQ_DELIM_TAG:
            break
        if tag != ITEM_TAG:
            raise ValueError("unexpected tag in encapsulated pixel data")
        out.append((pos, length))
        pos += 8 + length
    return out


def _set_u32(data: bytearray, offset: int, value: int, little: bool = True) -> None:
    data[offset : offset + 4] = struct.pack("<I" if little else ">I", value & 0xFFFFFFFF)


def _edit(src: Path, **changes: object) -> bytes:
    """A re-encoded copy of `src` with header elements changed (None deletes); file meta via 'meta_' prefix."""
    ds = pydicom.dcmread(src)
    for keyword, value in changes.items():
        target = ds
        if keyword.startswith("meta_"):
            target, keyword = ds.file_meta, keyword[5:]
        if value is None:
            if keyword in target:
                delattr(target, keyword)
        else:
            setattr(target, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    return buf.getvalue()


def _retag_syntax(data: bytes, lay: Layout, uid: str) -> bytes:
    """The same bytes with the file meta Transfer Syntax UID replaced (group length fixed up)."""
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    ds.file_meta.TransferSyntaxUID = uid
    meta = io.BytesIO()
    pydicom.filewriter.write_file_meta_info(meta, ds.file_meta, enforce_standard=bool(uid))
    return data[:128] + b"DICM" + meta.getvalue() + data[lay.meta_end :]


# --- the source files -------------------------------------------------------------------------------------


@dataclass
class Source:
    key: str
    path: Path

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()


def default_sources(shared_dicom: Path, pydicom_data: Path, full: bool = False) -> list[Source]:
    """Real files: uncompressed 8-bit CR/DX, JPEG baseline, 12-bit J2K/RLE multi-frame, big endian, RGB."""
    sources = [
        Source("nih_implicit", shared_dicom / "udacity_nih_test1.dcm"),
        Source("siim_jpeg", next(shared_dicom.glob("siim-acr_*.dcm"))),
        Source("emri_j2k", pydicom_data / "emri_small_jpeg_2k_lossless.dcm"),
        Source("emri_rle", pydicom_data / "emri_small_RLE.dcm"),
        Source("emri_big_endian", pydicom_data / "emri_small_big_endian.dcm"),
        Source("jpeg_lossless", pydicom_data / "JPEG-LL.dcm"),
        Source("sc_rgb", pydicom_data / "SC_rgb.dcm"),
    ]
    if full:
        sources += [
            Source("rg1_j2k", shared_dicom / "pydicom-data_RG1_J2KI.dcm"),
            Source("emri_jpeg_ls", pydicom_data / "emri_small_jpeg_ls_lossless.dcm"),
            Source("mr_overlay", pydicom_data / "MR-SIEMENS-DICOM-WithOverlays.dcm"),
        ]
    return [s for s in sources if s.path.is_file()]


# --- case families ----------------------------------------------------------------------------------------


class Corpus:
    """Writes cases into `folder`; `cases` collects them."""

    def __init__(self, folder: Path, sources: list[Source], seed: int = 20240601, full: bool = False) -> None:
        self.folder = folder
        self.sources = {s.key: s for s in sources}
        self.rng = random.Random(seed)
        self.full = full
        self.cases: list[Case] = []
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, case: Case, data: bytes | None = None) -> Case:
        sub = self.folder / case.category
        sub.mkdir(exist_ok=True)
        case.path = sub / case.name
        if data is not None:
            case.path.write_bytes(data)
        self.cases.append(case)
        return case

    # truncations -----------------------------------------------------------------------------------------

    def truncations(self) -> None:
        """Cuts in the preamble, the file meta, mid-tag, mid-value, at and inside the pixel data."""
        for key, src in self.sources.items():
            data = src.data
            lay = layout(data)
            px = lay.pixel
            offsets: dict[int, str] = {1: "1 byte", 64: "preamble", 128: "before DICM", 130: "mid DICM",
                                       132: "after DICM", lay.meta_end: "end of file meta"}
            for el in (lay.meta_elements[1], lay.meta_elements[-1]):
                offsets[el.start + 2] = f"mid-tag ({el.tag:08X})"
                offsets[el.value_start] = f"before value ({el.tag:08X})"
            header = [e for e in lay.elements if e.tag != PIXEL_TAG and e.length not in (0, 0xFFFFFFFF)]
            picks = header if self.full else header[:: max(1, len(header) // 6)]
            for el in picks:
                offsets[el.start + 2] = f"mid-tag ({el.tag:08X})"
                offsets[el.start + (6 if lay.implicit else 5)] = f"mid-length ({el.tag:08X})"
                offsets[el.value_start + el.length // 2] = f"mid-value ({el.tag:08X})"
            offsets[px.start] = "before pixel tag"
            offsets[px.start + 3] = "mid pixel tag"
            offsets[px.value_start] = "pixel value start"
            if lay.encapsulated:
                frags = items(lay)
                for n, (pos, length) in enumerate(frags[:3]):
                    offsets[pos + 4] = f"mid item header {n}"
                    offsets[pos + 8 + length // 2] = f"mid fragment {n}"
                    offsets[pos + 8 + length] = f"after fragment {n}"
                offsets[len(data) - 8] = "sequence delimiter cut"
                offsets[len(data) - 3] = "mid sequence delimiter"
            else:
                end = px.value_start + px.length
                for frac in (0.001, 0.25, 0.5, 0.999) if not self.full else (0.001, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999):
                    offsets[px.value_start + int(px.length * frac)] = f"pixel data {frac:.1%}"
                offsets[end - 1] = "last pixel byte missing"
            if self.full:
                for _ in range(40):
                    offsets.setdefault(self.rng.randrange(1, len(data)), "random")
            for off, why in sorted(offsets.items()):
                if not 0 < off < len(data):
                    continue
                # Before the pixel value starts there is nothing to show; after it, a frame may survive.
                expect = "error" if off <= px.value_start else "error_or_same"
                must: tuple[str, ...] = ()
                if not lay.encapsulated and off > px.value_start:
                    frame_bytes = _frame_bytes(src.path)
                    if off < px.value_start + frame_bytes:
                        expect, must = "error", ("truncated",)
                self.add(Case(f"{key}_cut{off:08d}.dcm", "truncated", expect, key, must, note=why),
                         data[:off])

    # header byte flips -----------------------------------------------------------------------------------

    def byte_flips(self, per_source: int) -> None:
        """1-3 random bytes of the header (preamble excluded) XOR-ed with a random non-zero value."""
        for key, src in self.sources.items():
            data = src.data
            lay = layout(data)
            lo, hi = 128, lay.pixel.value_start
            for n in range(per_source):
                buf = bytearray(data)
                spots = sorted(self.rng.randrange(lo, hi) for _ in range(self.rng.randint(1, 3)))
                for spot in spots:
                    buf[spot] ^= self.rng.randrange(1, 256)
                self.add(Case(f"{key}_flip{n:04d}.dcm", "header_flips", "any", key,
                              note="flipped at " + ",".join(map(str, spots))), bytes(buf))

    # tiny and foreign files ------------------------------------------------------------------------------

    def tiny_and_foreign(self, png: Path | None, jpeg: Path | None) -> None:
        dicm = b"\0" * 128 + b"DICM"
        for name, data, must in [
            ("empty.dcm", b"", ("empty",)),
            ("one_byte.dcm", b"\x00", ("not a dicom", "too short", "empty")),
            ("one_byte_D.dcm", b"D", ("not a dicom", "too short")),
            ("preamble_only.dcm", b"\0" * 128, ("not a dicom",)),
            ("prefix_only.dcm", dicm, ("not a dicom", "damaged", "header")),
            ("prefix_garbage.dcm", dicm + bytes(self.rng.randrange(256) for _ in range(4000)),
             ("not a dicom", "damaged", "header", "pixel")),
            ("prefix_zeros.dcm", dicm + b"\0" * 4000, ("not a dicom", "damaged", "header", "pixel")),
            ("text.dcm", b"Patient: this is a text file, not an image\n" * 20, ("not a dicom",)),
            ("html.dcm", b"<!DOCTYPE html><html><body>404 Not Found</body></html>", ("not a dicom",)),
            ("pdf.dcm", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", ("not a dicom",)),
            ("zip.dcm", b"PK\x03\x04" + b"\0" * 200, ("not a dicom",)),
            ("random.dcm", bytes(self.rng.randrange(256) for _ in range(10000)), ("not a dicom",)),
            ("no_extension", b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + b"\xff" * 100, ()),
            ("png_signature_only.dcm", b"\x89PNG\r\n\x1a\n", ("damaged", "not a dicom")),
            ("jpeg_soi_only.dcm", b"\xff\xd8\xff\xe0" + b"\0" * 20, ("damaged", "truncated")),
            ("tiff_header_only.dcm", b"II*\x00\x08\x00\x00\x00" + b"\0" * 8, ("damaged",)),
            ("bmp_header_only.dcm", b"BM" + b"\xff" * 60, ("damaged",)),
        ]:
            self.add(Case(name, "tiny_foreign", "error", None, must), data)
        if png is not None:  # a real PNG named .dcm is an image all the same
            self.add(Case("real_png_named.dcm", "tiny_foreign", "same", "png"), png.read_bytes())
        if jpeg is not None:
            self.add(Case("real_jpeg_named.dcm", "tiny_foreign", "same", "jpeg"), jpeg.read_bytes())
        ds_only = self.sources["nih_implicit"].data
        lay = layout(ds_only)
        # A raw data set without preamble, file meta or pixel data: not an image.
        self.add(Case("raw_dataset_no_pixels.dcm", "tiny_foreign", "error", None, ("no pixel", "not a dicom")),
                 ds_only[lay.meta_end : lay.pixel.start])

    # transfer syntax -------------------------------------------------------------------------------------

    def transfer_syntaxes(self) -> None:
        plain = self.sources["nih_implicit"]
        enc = self.sources["siim_jpeg"]
        j2k = self.sources["emri_j2k"]
        table = [
            (plain, "1.2.3.4.5.6", "unknown_uid", "error", ("not supported", "transfer syntax", "unknown")),
            (plain, "hello world", "not_a_uid", "error", ("not supported", "transfer syntax", "unknown", "damaged")),
            (plain, "", "empty_uid", "any", ()),
            (plain, pydicom.uid.JPEG2000, "j2k_on_plain", "error", ("jpeg 2000", "damaged")),
            (plain, pydicom.uid.JPEGBaseline8Bit, "jpeg_on_plain", "error", ("jpeg", "damaged")),
            (plain, pydicom.uid.RLELossless, "rle_on_plain", "error", ("rle", "damaged")),
            # pydicom notices the data set is really implicit VR and reads it right
            (plain, pydicom.uid.ExplicitVRLittleEndian, "explicit_on_implicit", "error_or_same", ()),
            (plain, pydicom.uid.ExplicitVRBigEndian, "bigendian_on_implicit", "error", ()),
            (plain, pydicom.uid.DeflatedExplicitVRLittleEndian, "deflate_on_plain", "error", ()),
            (enc, pydicom.uid.ExplicitVRLittleEndian, "native_on_jpeg", "error", ()),
            (enc, pydicom.uid.ImplicitVRLittleEndian, "implicit_on_jpeg", "error", ()),
            (enc, pydicom.uid.JPEG2000, "j2k_on_jpeg", "error_or_same", ("could not be decoded", "jpeg 2000")),
            (enc, pydicom.uid.JPEGLSLossless, "jpegls_on_jpeg", "error", ("could not be decoded", "jpeg-ls")),
            (enc, pydicom.uid.MPEG2MPML, "mpeg2_on_jpeg", "error", ("not supported",)),
            (enc, "1.2.840.10008.1.2.4.100.1", "mpeg2_fragmentable", "error", ("not supported",)),
            (j2k, pydicom.uid.RLELossless, "rle_on_j2k", "error", ("could not be decoded", "rle")),
            (j2k, pydicom.uid.JPEGBaseline8Bit, "jpeg_on_j2k", "error_or_same", ("could not be decoded", "jpeg")),
        ]
        for src, uid, name, expect, must in table:
            data = src.data
            lay = layout(data)
            self.add(Case(f"ts_{name}.dcm", "transfer_syntax", expect, src.key, must, note=f"TS {uid!r}"),
                     _retag_syntax(data, lay, uid))

    # size claims -----------------------------------------------------------------------------------------

    def size_claims(self) -> None:
        """Rows x Columns (x frames x samples) claiming far more pixels than the file holds."""
        plain, enc, j2k, rle = (self.sources[k] for k in ("nih_implicit", "siim_jpeg", "emri_j2k", "emri_rle"))
        table: list[tuple[Source, str, dict[str, object], str, tuple[str, ...]]] = [
            (plain, "8192sq", {"Rows": 8192, "Columns": 8192}, "error", ("truncated",)),
            (plain, "8192sq_rgb16", {"Rows": 8192, "Columns": 8192, "SamplesPerPixel": 3, "BitsAllocated": 16,
                                     "BitsStored": 16, "HighBit": 15, "PhotometricInterpretation": "RGB",
                                     "PlanarConfiguration": 0}, "error", ("truncated",)),
            (plain, "65535sq", {"Rows": 65535, "Columns": 65535}, "error", ("too large",)),
            (plain, "frames_2g", {"NumberOfFrames": 2**31 - 1}, "error_or_same", ("truncated", "frame")),
            (plain, "frames_8192sq", {"Rows": 8192, "Columns": 8192, "NumberOfFrames": 100000}, "error",
             ("truncated",)),
            (plain, "rows_1_cols_8192_frames", {"Rows": 1, "Columns": 8192, "NumberOfFrames": 2**30}, "error",
             ("truncated", "frame")),
            (enc, "jpeg_8192sq", {"Rows": 8192, "Columns": 8192}, "error", ()),
            (enc, "jpeg_8192sq_rgb16", {"Rows": 8192, "Columns": 8192, "SamplesPerPixel": 3, "BitsAllocated": 16,
                                        "BitsStored": 16, "HighBit": 15, "PhotometricInterpretation": "RGB",
                                        "PlanarConfiguration": 0}, "error", ()),
            (enc, "jpeg_frames_2g", {"NumberOfFrames": 2**31 - 1}, "error_or_same", ()),
            (j2k, "j2k_8192sq", {"Rows": 8192, "Columns": 8192}, "error", ()),
            (j2k, "j2k_8192sq_frames", {"Rows": 8192, "Columns": 8192, "NumberOfFrames": 65535}, "error", ()),
            (rle, "rle_8192sq", {"Rows": 8192, "Columns": 8192}, "error", ()),
            (rle, "rle_8192sq_rgb", {"Rows": 8192, "Columns": 8192, "SamplesPerPixel": 3,
                                     "PhotometricInterpretation": "RGB", "PlanarConfiguration": 1}, "error", ()),
            (j2k, "j2k_8192sq_rgb16", {"Rows": 8192, "Columns": 8192, "SamplesPerPixel": 3, "BitsAllocated": 16,
                                       "PhotometricInterpretation": "RGB", "PlanarConfiguration": 0}, "error", ()),
            (plain, "negative_rows", {"Rows": 0, "Columns": 1024}, "error", ("image size", "invalid")),
        ]
        for src, name, changes, expect, must in table:
            self.add(Case(f"size_{name}.dcm", "size_claims", expect, src.key, must, big_claim=True),
                     _edit(src.path, **changes))
        # Raw bytes: a header element whose length runs far past the end of the file.
        data = bytearray(plain.data)
        lay = layout(bytes(data))
        el = next(e for e in lay.elements if e.tag == 0x00081030)  # Study Description
        _set_u32(data, el.start + 4, 0xFFFFFFF0)
        self.add(Case("size_element_length_4g.dcm", "size_claims", "error", plain.key,
                      ("damaged", "truncated", "not a dicom", "header"), big_claim=True), bytes(data))
        for tag, what in ((0x00280010, "rows"), (0x00200013, "instance_number"), (0x00081030, "description")):
            # an element (implicit VR) whose length swallows the rest of the file, pixel data included
            el = next((e for e in lay.elements if e.tag == tag), None)
            if el is None:
                continue
            data = bytearray(plain.data)
            _set_u32(data, el.start + 4, len(data) - el.value_start)
            self.add(Case(f"size_{what}_swallows_pixels.dcm", "size_claims", "error", plain.key,
                          ("damaged", "no pixel", "truncated"), big_claim=True), bytes(data))
        data = bytearray(plain.data)
        _set_u32(data, lay.pixel.start + 4, 0xFFFFFFF0)  # pixel data length beyond the file
        self.add(Case("size_pixel_length_4g.dcm", "size_claims", "error_or_same", plain.key,
                      ("truncated", "damaged"), big_claim=True), bytes(data))

    # bits ------------------------------------------------------------------------------------------------

    def bits(self) -> None:
        plain, be, rgb = self.sources["nih_implicit"], self.sources["emri_big_endian"], self.sources["sc_rgb"]
        table: list[tuple[Source, str, dict[str, object], str]] = [
            (plain, "stored_gt_allocated", {"BitsStored": 16, "HighBit": 15}, "any"),
            (plain, "allocated_12", {"BitsAllocated": 12}, "error"),
            (plain, "allocated_0", {"BitsAllocated": 0}, "error"),
            (plain, "stored_0", {"BitsStored": 0}, "any"),
            (plain, "highbit_31", {"HighBit": 31}, "any"),
            (plain, "allocated_16_on_8bit", {"BitsAllocated": 16, "BitsStored": 16, "HighBit": 15}, "error"),
            (plain, "allocated_32_on_8bit", {"BitsAllocated": 32, "BitsStored": 32, "HighBit": 31}, "error"),
            (plain, "allocated_64", {"BitsAllocated": 64, "BitsStored": 64, "HighBit": 63}, "error"),
            (plain, "allocated_1", {"BitsAllocated": 1, "BitsStored": 1, "HighBit": 0}, "any"),
            (plain, "signed_8bit", {"PixelRepresentation": 1}, "any"),
            (plain, "pixel_representation_7", {"PixelRepresentation": 7}, "any"),
            (plain, "samples_3_on_mono", {"SamplesPerPixel": 3}, "error"),
            (plain, "samples_0", {"SamplesPerPixel": 0}, "error"),
            (plain, "photometric_bogus", {"PhotometricInterpretation": "BOGUS"}, "any"),
            (plain, "photometric_palette_no_lut", {"PhotometricInterpretation": "PALETTE COLOR"}, "error"),
            (plain, "no_bits_allocated", {"BitsAllocated": None}, "error"),
            (plain, "no_photometric", {"PhotometricInterpretation": None}, "any"),
            (be, "be_stored_gt_allocated", {"BitsStored": 24, "HighBit": 23}, "any"),
            (be, "be_allocated_8", {"BitsAllocated": 8}, "error_or_same"),
            (rgb, "rgb_planar_5", {"PlanarConfiguration": 5}, "any"),
            (rgb, "rgb_samples_4", {"SamplesPerPixel": 4}, "error"),
            (rgb, "rgb_allocated_16", {"BitsAllocated": 16}, "error"),
        ]
        for src, name, changes, expect in table:
            self.add(Case(f"bits_{name}.dcm", "bits", expect, src.key), _edit(src.path, **changes))

    # encapsulated fragments ------------------------------------------------------------------------------

    def fragments(self) -> None:
        for key in ("siim_jpeg", "emri_j2k", "emri_rle", "jpeg_lossless", "rg1_j2k", "emri_jpeg_ls"):
            if key not in self.sources:
                continue
            data = self.sources[key].data
            lay = layout(data)
            frags = items(lay)
            bot_pos, bot_len = frags[0]
            first_pos, first_len = frags[1]
            last_pos, last_len = frags[-1]
            after_first = data[first_pos + 8 + first_len :]
            variants: list[tuple[str, bytes, str]] = [
                ("bot_huge_offsets", _with_bot(data, bot_pos, bot_len, [0, 0x7FFFFFF0, 0xFFFFFFF0]), "error_or_same"),
                ("first_item_tag_broken", _patch(data, first_pos, b"\xfe\xff\x0d\xe0"), "error"),
                ("bot_item_tag_broken", _patch(data, bot_pos, b"\x00\x00\x00\x00"), "error"),
                ("first_fragment_len_huge", _patch(data, first_pos + 4, _u32(0xFFFFFFF0)), "error_or_same"),
                ("first_fragment_len_past_end", _patch(data, first_pos + 4, _u32(len(data) - first_pos)),
                 "error_or_same"),
                ("first_fragment_len_odd", _patch(data, first_pos + 4, _u32(first_len - 3)), "error"),
                ("first_fragment_len_zero", _patch(data, first_pos + 4, _u32(0)), "error"),
                ("bot_len_huge", _patch(data, bot_pos + 4, _u32(0x7FFFFFF0)), "error"),
                ("no_sequence_delimiter", data[: last_pos + 8 + last_len], "error_or_same"),
                ("no_fragments", data[:first_pos] + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0), "error"),
                ("first_fragment_emptied", data[:first_pos] + _item(0) + after_first, "error"),
            ]
            # A codestream cut short inside a well-formed fragment (decoders may silently pad the rest).
            cut = first_len // 2 & ~1
            half = data[:first_pos] + _item(cut) + data[first_pos + 8 : first_pos + 8 + cut] + after_first
            variants.append(("codestream_half", half, "any"))
            flips = 6 if not self.full else 40
            for n in range(flips):  # random damage inside the first codestream
                buf = bytearray(data)
                for _ in range(self.rng.randint(1, 8)):
                    spot = first_pos + 8 + self.rng.randrange(first_len)
                    buf[spot] ^= self.rng.randrange(1, 256)
                variants.append((f"codestream_flip{n:02d}", bytes(buf), "any"))
            for n in range(2 if not self.full else 10):  # a fragment of random bytes
                junk = bytes(self.rng.randrange(256) for _ in range(first_len & ~1))
                variants.append((f"codestream_random{n:02d}",
                                 data[: first_pos + 8] + junk + data[first_pos + 8 + len(junk) :], "any"))
            for name, blob, expect in variants:
                self.add(Case(f"{key}_{name}.dcm", "fragments", expect, key), blob)

    # special directory entries ---------------------------------------------------------------------------

    def special_entries(self) -> None:
        """A symlink loop, a self-referencing link, a dangling link, a FIFO, a socket, an unreadable file."""
        folder = self.folder / "special"
        folder.mkdir(exist_ok=True)
        good = self.sources["nih_implicit"].data
        (folder / "sub").mkdir(exist_ok=True)
        (folder / "sub" / "good.dcm").write_bytes(good)
        os.symlink("..", folder / "sub" / "loop")  # special/sub/loop -> special (a cycle)
        os.symlink(folder / "sub", folder / "sub_again")  # a second way into the same folder
        cases = [
            Case("dangling_link.dcm", "special", "error", None, ("not found",)),
            Case("self_link.dcm", "special", "error", None, ("symbolic link", "link", "could not be read")),
            Case("pipe.dcm", "special", "error", None, ("not a regular file",)),
            Case("socket.dcm", "special", "error", None, ("not a regular file", "not found", "could not be read")),
            # root reads a chmod-000 file all the same: then it is simply a good image
            Case("unreadable.dcm", "special", "same" if os.geteuid() == 0 else "error", "nih_implicit",
                 ("permission denied",), note="chmod 000"),
            Case("folder.dcm", "special", "error", None, ("folder",)),
            Case("loop", "special", "error", None, ("folder",)),
        ]
        os.symlink(folder / "missing.dcm", folder / "dangling_link.dcm")
        os.symlink("self_link.dcm", folder / "self_link.dcm")
        os.mkfifo(folder / "pipe.dcm")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(folder / "socket.dcm"))
        finally:
            sock.close()
        (folder / "unreadable.dcm").write_bytes(good)
        os.chmod(folder / "unreadable.dcm", 0)
        (folder / "folder.dcm").mkdir()
        os.symlink(".", folder / "loop")
        for case in cases:
            case.path = folder / case.name
            self.cases.append(case)
        self.cases.append(Case("sub/good.dcm", "special", "same", "nih_implicit", path=folder / "sub" / "good.dcm"))


def _frame_bytes(path: Path) -> int:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * max(1, int(ds.BitsAllocated) // 8)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value & 0xFFFFFFFF)


def _item(length: int) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, length)


def _patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def _with_bot(data: bytes, bot_pos: int, bot_len: int, offsets: list[int]) -> bytes:
    table = struct.pack(f"<{len(offsets)}I", *offsets)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(table)) + table
    out = bytearray(data[:bot_pos] + item + data[bot_pos + 8 + bot_len :])
    return bytes(out)


def build(folder: Path, sources: list[Source], *, png: Path | None = None, jpeg: Path | None = None,
          full: bool = False, seed: int = 20240601) -> list[Case]:
    """Write the whole corpus under `folder` and return its cases (CI size, or `full` for the script)."""
    corpus = Corpus(folder, sources, seed=seed, full=full)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values written on purpose
        corpus.truncations()
        corpus.byte_flips(per_source=12 if not full else 300)
        corpus.tiny_and_foreign(png, jpeg)
        corpus.transfer_syntaxes()
        corpus.size_claims()
        corpus.bits()
        corpus.fragments()
        corpus.special_entries()
    return corpus.cases


def iter_categories(cases: list[Case]) -> Iterator[tuple[str, list[Case]]]:
    seen: dict[str, list[Case]] = {}
    for case in cases:
        seen.setdefault(case.category, []).append(case)
    yield from seen.items()
