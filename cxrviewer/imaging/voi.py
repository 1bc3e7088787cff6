"""Value-of-interest (VOI) transforms: modality units -> [0, 1] display values, polarity applied.

The VOI arithmetic itself is pydicom's (`pydicom.pixels.apply_voi` for a VOI LUT Sequence,
`apply_windowing` for Window Center/Width with LINEAR, LINEAR_EXACT or SIGMOID); this module only evaluates it
cheaply (once per possible integer value, then a table look-up) and normalises the result to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_voi, apply_windowing
from pydicom.valuerep import DSfloat

from cxrviewer.imaging.image import WindowPreset

LINEAR, LINEAR_EXACT, SIGMOID = "LINEAR", "LINEAR_EXACT", "SIGMOID"
VOI_FUNCTIONS = (LINEAR, LINEAR_EXACT, SIGMOID)

ROBUST_PERCENTILES = (0.5, 99.5)  # the automatic window when the file has none (display and model input)
_MAX_TABLE = 1 << 22  # integer ranges up to this size are mapped through a look-up table
_PERCENTILE_SAMPLES = 250_000
_OUT_MAX = 65535.0  # windowing is evaluated into 0..65535 (a 16-bit unsigned output range), then scaled


def _window_dataset(center: float, width: float, function: str) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored = 16
    ds.PixelRepresentation = 0  # output range y = 0 .. 65535
    ds.WindowCenter = DSfloat(float(center), auto_format=True)
    ds.WindowWidth = DSfloat(float(width), auto_format=True)
    ds.VOILUTFunction = function
    return ds


def window_unit(values: np.ndarray, center: float, width: float, function: str = LINEAR) -> np.ndarray:
    """pydicom's windowing of `values` (modality units), scaled to [0, 1] (float64)."""
    function = function.upper() if function.upper() in VOI_FUNCTIONS else LINEAR
    if function == LINEAR and width < 1:  # LINEAR needs width >= 1 (PS3.3 C.11.2.1.2.1)
        function = LINEAR_EXACT
    width = max(float(width), 1e-6)
    out = apply_windowing(np.asarray(values), _window_dataset(center, width, function))
    return np.asarray(out, dtype=np.float64) / _OUT_MAX


def _lut_dataset(item: Dataset) -> Dataset:
    ds = Dataset()
    ds.VOILUTSequence = [item]
    return ds


@dataclass(frozen=True)
class Voi:
    """One VOI choice plus the image's polarity.

    `window` is used unless `lut` (a data set holding one VOI LUT Sequence item) is set; with a LUT,
    `window` is its linear equivalent, the starting point of a window/level drag. `invert` is the file's own
    polarity (MONOCHROME1 or Presentation LUT Shape INVERSE): applied once, after the VOI.
    """

    window: WindowPreset
    function: str = LINEAR
    invert: bool = False
    lut: Dataset | None = None
    source: str = ""  # "header VOI LUT", "header window", "full range", "percentile window", "user window"

    def with_window(self, window: WindowPreset, function: str = LINEAR) -> Voi:
        """The same polarity with another (user) window instead of the header's VOI."""
        return replace(self, window=window, function=function, lut=None, source="user window")

    def unit(self, values: np.ndarray) -> np.ndarray:
        """Map modality values to [0, 1] display values (float64), polarity applied: air dark."""
        if self.lut is not None:
            ints = values if np.issubdtype(values.dtype, np.integer) else np.rint(values).astype(np.int64)
            raw = np.asarray(apply_voi(ints, self.lut), dtype=np.float64)
            data = np.asarray(self.lut.VOILUTSequence[0].LUTData, dtype=np.float64).ravel()
            lo, hi = float(data.min()), float(data.max())
            out = (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
        else:
            out = window_unit(values, self.window.center, self.window.width, self.function)
        return 1.0 - out if self.invert else out

    __call__ = unit  # an `Image.display_lut`


def _lut_item(item: Dataset, little_endian: bool) -> Dataset:
    """A copy of a VOI LUT item with its LUT Data as a list of integers (OW byte data is unpacked)."""
    descriptor = [int(v) for v in item.LUTDescriptor]
    data = item.LUTData
    if isinstance(data, bytes | bytearray):
        count = descriptor[0] or 2**16
        dtype = np.dtype("<u2" if little_endian else ">u2")
        data = np.frombuffer(bytes(data), dtype=dtype, count=count)
    values = np.asarray(data, dtype=np.int64).ravel()
    out = Dataset()
    out.LUTDescriptor = descriptor
    out.add_new("LUTData", "US", [int(v) for v in values])
    return out


def lut_voi(item: Dataset, invert: bool, little_endian: bool = True) -> Voi:
    """A `Voi` from one VOI LUT Sequence item (raises if pydicom cannot apply it)."""
    item = _lut_item(item, little_endian)
    ds = _lut_dataset(item)
    first_map = int(item.LUTDescriptor[1])
    data = np.asarray(item.LUTData, dtype=np.float64).ravel()
    domain = np.arange(first_map, first_map + len(data), dtype=np.int64)
    mapped = np.asarray(apply_voi(domain, ds), dtype=np.float64)  # also checks pydicom can apply it
    inside = np.nonzero((mapped > data.min()) & (mapped < data.max()))[0]
    if inside.size:
        lo, hi = domain[inside[0]] - 1, domain[inside[-1]] + 1
    else:
        lo, hi = domain[0], domain[-1]
    window = WindowPreset(center=float(lo + hi) / 2.0, width=float(max(hi - lo, 1)), name="VOI LUT")
    return Voi(window=window, invert=invert, lut=ds, source="header VOI LUT")


def robust_window(pixels: np.ndarray) -> WindowPreset:
    """The 0.5th..99.5th percentile window of the pixel values (sampled on a grid for speed)."""
    step = max(1, int(np.sqrt(pixels.size / _PERCENTILE_SAMPLES)))
    sample = pixels[::step, ::step].ravel()
    if not np.issubdtype(sample.dtype, np.integer):
        sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return WindowPreset(center=0.5, width=1.0, name="auto")
    lo, hi = (float(v) for v in np.percentile(sample, ROBUST_PERCENTILES))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    if hi <= lo:
        hi = lo + 1.0
    return WindowPreset(center=(lo + hi) / 2.0, width=hi - lo, name="auto")


def auto_voi(pixels: np.ndarray, invert: bool, full_range_bits: int | None = None) -> Voi:
    """The VOI used when a file has none of its own.

    8-bit data (`full_range_bits` <= 8) is already windowed: its whole 0..2^bits-1 range maps to [0, 1]
    (for an 8-bit file exactly value / 255). Anything deeper uses the robust 0.5..99.5 percentile window.
    """
    if full_range_bits is not None and full_range_bits <= 8:
        top = float(2**full_range_bits - 1)
        return Voi(WindowPreset(top / 2.0, top, "full range"), LINEAR_EXACT, invert, source="full range")
    return Voi(robust_window(pixels), LINEAR_EXACT, invert, source="percentile window")


def apply(voi: Voi, pixels: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """`voi.unit` over a whole image: as uint8 (0..255) or float32 ([0, 1]).

    Integer images are mapped through a table evaluated once per possible value, which keeps a 2k x 2k display
    conversion to a few milliseconds.
    """
    to_uint8 = np.dtype(dtype) == np.uint8

    def finish(unit: np.ndarray) -> np.ndarray:
        if to_uint8:
            return np.rint(unit * 255.0).astype(np.uint8)
        return unit.astype(np.float32)

    if np.issubdtype(pixels.dtype, np.integer):
        if pixels.dtype in (np.uint8, np.uint16):
            table = finish(voi.unit(np.arange(np.iinfo(pixels.dtype).max + 1, dtype=np.int64)))
            return table[pixels]
        if pixels.dtype in (np.int8, np.int16):
            info = np.iinfo(pixels.dtype)
            table = finish(voi.unit(np.arange(info.min, info.max + 1, dtype=np.int64)))
            unsigned = np.uint8 if pixels.dtype == np.int8 else np.uint16
            return table[np.bitwise_xor(pixels.view(unsigned), unsigned(-info.min))]
        lo, hi = int(pixels.min()), int(pixels.max())
        if hi - lo < _MAX_TABLE:
            table = finish(voi.unit(np.arange(lo, hi + 1, dtype=np.int64)))
            return table[(pixels - lo).astype(np.intp, copy=False)]
    values = pixels.astype(np.float64)
    out = finish(np.nan_to_num(voi.unit(values), nan=0.0))
    return out
