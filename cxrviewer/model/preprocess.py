"""The ONE preprocessing path shared by the trainer and the app.

An image in [0, 1] (air dark, see `cxrviewer.imaging.display.model_input`) is, optionally, cropped to
the thorax found by the lung-field localiser (`crop="thorax"`, recorded in the model card), letterboxed
to N x N (aspect kept, zero padding, centred) and scaled with fixed constants. `Letterbox` records the
transform so that model-space coordinates and maps can be taken back to the original pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxrviewer.imaging.anatomy import LungFields, find_lung_fields

#: Fixed intensity scaling: x_model = (x01 - MEAN) / STD. Recorded in every model card.
MEAN = 0.5
STD = 0.25
#: Crop modes: None (the whole image) or "thorax" (the lung-field localiser's thorax box; the whole image
#: when it finds no lungs).
CROPS = (None, "thorax")
#: A map's value (logit units) over original pixels outside the crop the model saw: no evidence there.
OUTSIDE = -30.0


@dataclass(frozen=True)
class Letterbox:
    """Maps between original pixel coordinates and the N x N model input."""

    orig_width: int
    orig_height: int
    size: int
    scale: float  # model pixels per original pixel
    pad_x: int  # left padding in model pixels
    pad_y: int  # top padding in model pixels
    crop_x: int = 0  # the region of the original that was letterboxed (original pixels);
    crop_y: int = 0  # a width/height of 0 means the whole image
    crop_w: int = 0
    crop_h: int = 0

    @classmethod
    def fit(cls, width: int, height: int, size: int,
            crop: tuple[int, int, int, int] | None = None) -> Letterbox:
        """The letterbox of a width x height image, or of its region `crop` = (x, y, w, h), into size x size."""
        cx, cy, cw, ch = _clip_crop(crop, width, height)
        scale = size / max(cw, ch)
        new_w = max(1, round(cw * scale))
        new_h = max(1, round(ch * scale))
        if (cx, cy, cw, ch) == (0, 0, width, height):
            return cls(width, height, size, scale, (size - new_w) // 2, (size - new_h) // 2)
        return cls(width, height, size, scale, (size - new_w) // 2, (size - new_h) // 2, cx, cy, cw, ch)

    @property
    def region(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the original that the model saw, in original pixels (the whole image uncropped)."""
        if self.crop_w <= 0 or self.crop_h <= 0:
            return 0, 0, self.orig_width, self.orig_height
        return self.crop_x, self.crop_y, self.crop_w, self.crop_h

    @property
    def cropped(self) -> bool:
        return self.region != (0, 0, self.orig_width, self.orig_height)

    def resized(self, width: int, height: int) -> Letterbox:
        """The same transform for the image resized to width x height (e.g. a display copy)."""
        sx, sy = width / self.orig_width, height / self.orig_height
        x, y, w, h = self.region
        crop = (round(x * sx), round(y * sy), max(1, round(w * sx)), max(1, round(h * sy)))
        return Letterbox.fit(width, height, self.size, crop if self.cropped else None)

    def uncropped(self) -> Letterbox:
        """This letterbox as if the crop region were the whole image (coordinates relative to the region)."""
        _, _, w, h = self.region
        return Letterbox(w, h, self.size, self.scale, self.pad_x, self.pad_y)

    @property
    def content(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the image content inside the model input, in model pixels."""
        _, _, w, h = self.region
        new_w = max(1, round(w * self.scale))
        new_h = max(1, round(h * self.scale))
        return self.pad_x, self.pad_y, new_w, new_h

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """Model-input pixel coordinates (pixel centres) -> original image pixel coordinates."""
        rx, ry, _, _ = self.region
        ox = (x + 0.5 - self.pad_x) / self.scale - 0.5 + rx
        oy = (y + 0.5 - self.pad_y) / self.scale - 0.5 + ry
        return (
            float(np.clip(ox, 0, self.orig_width - 1)),
            float(np.clip(oy, 0, self.orig_height - 1)),
        )

    def to_model(self, x: float, y: float) -> tuple[float, float]:
        """Original image pixel coordinates -> model-input pixel coordinates."""
        rx, ry, _, _ = self.region
        return ((x - rx + 0.5) * self.scale + self.pad_x - 0.5,
                (y - ry + 0.5) * self.scale + self.pad_y - 0.5)

    def map_to_original(self, grid: np.ndarray, outside: float = OUTSIDE) -> np.ndarray:
        """Resample a map over the model input (any resolution, e.g. a 7x7 CAM) to original pixels.

        Works on a 2-D (h, w) or 3-D (labels, h, w) array; returns float32 of the original size. Pixels
        outside a crop region (never seen by the model) get `outside`.
        """
        if self.cropped:
            inner = self.uncropped().map_to_original(grid)
            return place_in_region(inner, self, outside)
        arr = np.asarray(grid, dtype=np.float32)
        stack = arr[None] if arr.ndim == 2 else arr
        gh, gw = stack.shape[-2:]
        sx, sy = gw / self.size, gh / self.size  # grid cells per model pixel
        x0, y0, cw, ch = self.content
        # Crop of the grid that covers the content, in (fractional) grid units.
        fx0, fy0 = x0 * sx, y0 * sy
        fw, fh = cw * sx, ch * sy
        out = np.empty((stack.shape[0], self.orig_height, self.orig_width), dtype=np.float32)
        # Affine: original pixel (u, v) -> grid coordinate; sample with bilinear interpolation.
        ax = fw / self.orig_width
        ay = fh / self.orig_height
        m = np.array([[ax, 0, fx0 + 0.5 * ax - 0.5], [0, ay, fy0 + 0.5 * ay - 0.5]], dtype=np.float64)
        for i, g in enumerate(stack):
            out[i] = cv2.warpAffine(
                g,
                m,
                (self.orig_width, self.orig_height),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            )
        return out[0] if arr.ndim == 2 else out


def _clip_crop(crop: tuple[int, int, int, int] | None, width: int, height: int) -> tuple[int, int, int, int]:
    if crop is None:
        return 0, 0, width, height
    x, y, w, h = (int(round(float(v))) for v in crop)
    x, y = min(max(0, x), width - 1), min(max(0, y), height - 1)
    w, h = min(max(1, w), width - x), min(max(1, h), height - y)
    return x, y, w, h


def place_in_region(inner: np.ndarray, box: Letterbox, outside: float) -> np.ndarray:
    """A map over the crop region (..., h, w) placed into the original frame, `outside` elsewhere."""
    x, y, w, h = box.region
    out = np.full((*inner.shape[:-2], box.orig_height, box.orig_width), outside, dtype=np.float32)
    out[..., y : y + h, x : x + w] = inner
    return out


def crop_region(image01: np.ndarray, crop: str | None,
                fields: LungFields | None = None) -> tuple[int, int, int, int] | None:
    """(x, y, w, h) of the region to letterbox for a crop mode, or None for the whole image.

    `fields`: the lung-field localiser's answer for this image when the caller already has it."""
    if crop is None:
        return None
    if crop != "thorax":
        raise ValueError(f"unknown crop mode {crop!r} (known: {', '.join(str(c) for c in CROPS)})")
    x0, y0, x1, y1 = (fields or find_lung_fields(image01)).box  # the whole image when no lungs are found
    return x0, y0, x1 - x0, y1 - y0


def shrunk(image01: np.ndarray, side: int) -> np.ndarray:
    """A float32 copy with its long side at most `side` pixels (area averaging, aspect kept; the image itself,
    as float32, when already that small): the resize `letterbox` does for an uncropped image of that size, so
    callers that need both (the gate's roughness) compute it once and pass it on."""
    img = np.asarray(image01, dtype=np.float32)
    h, w = img.shape
    if min(h, w) == 0 or side >= max(h, w):  # nothing to shrink (an empty image is the gate's to refuse)
        return img
    scale = side / max(h, w)
    return cv2.resize(np.ascontiguousarray(img), (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def letterbox(image01: np.ndarray, size: int, crop: str | None = None,
              fields: LungFields | None = None, small: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """Resize a 2-D [0, 1] image (or its `crop` region) into a zero-padded size x size float32 square,
    aspect kept (`fields`: see `crop_region`; `small`: ``shrunk(image01, size)`` when the caller has it, used
    for an uncropped image instead of resizing again)."""
    if image01.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image01.shape}")
    h, w = image01.shape
    box = Letterbox.fit(w, h, size, crop_region(image01, crop, fields))
    x0, y0, cw, ch = box.content
    if small is not None and not box.cropped and box.scale < 1 and small.shape == (ch, cw):
        resized = small  # the same INTER_AREA resize to the same size
    else:
        rx, ry, rw, rh = box.region
        src = np.ascontiguousarray(image01[ry : ry + rh, rx : rx + rw], dtype=np.float32)
        interp = cv2.INTER_AREA if box.scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(src, (cw, ch), interpolation=interp)
    out = np.zeros((size, size), dtype=np.float32)
    out[y0 : y0 + ch, x0 : x0 + cw] = np.clip(resized, 0.0, 1.0)
    return out, box


def normalize(square01: np.ndarray) -> np.ndarray:
    """Fixed intensity scaling applied after letterboxing (and after training augmentation)."""
    return ((np.asarray(square01, dtype=np.float32) - MEAN) / STD).astype(np.float32)


def preprocess(image01: np.ndarray, size: int, crop: str | None = None,
               fields: LungFields | None = None, small: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """(Crop +) letterbox + normalize: returns the (1, size, size) float32 model input and its transform
    (`fields`, `small`: see `letterbox`)."""
    square, box = letterbox(image01, size, crop, fields, small)
    return normalize(square)[None], box


def preprocessing_record(size: int, crop: str | None = None) -> dict[str, object]:
    """The parameters a model card stores so the app reproduces preprocessing exactly."""
    rec: dict[str, object] = {"method": "letterbox", "size": size, "pad_value": 0.0, "mean": MEAN, "std": STD,
                              "channels": 1, "input": "model_input [0,1], air dark"}
    if crop is not None:
        rec["crop"] = crop
    return rec
