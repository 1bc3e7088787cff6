"""The ONE preprocessing path shared by the trainer and the app.

An image in [0, 1] (air dark, see `cxrviewer.imaging.display.model_input`) is letterboxed to
N x N (aspect kept, zero padding, centred) and scaled with fixed constants. `Letterbox` records the
transform so that model-space coordinates and maps can be taken back to the original pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Fixed intensity scaling: x_model = (x01 - MEAN) / STD. Recorded in every model card.
MEAN = 0.5
STD = 0.25


@dataclass(frozen=True)
class Letterbox:
    """Maps between original pixel coordinates and the N x N model input."""

    orig_width: int
    orig_height: int
    size: int
    scale: float  # model pixels per original pixel
    pad_x: int  # left padding in model pixels
    pad_y: int  # top padding in model pixels

    @classmethod
    def fit(cls, width: int, height: int, size: int) -> Letterbox:
        scale = size / max(width, height)
        new_w = max(1, round(width * scale))
        new_h = max(1, round(height * scale))
        return cls(width, height, size, scale, (size - new_w) // 2, (size - new_h) // 2)

    @property
    def content(self) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the image content inside the model input, in model pixels."""
        new_w = max(1, round(self.orig_width * self.scale))
        new_h = max(1, round(self.orig_height * self.scale))
        return self.pad_x, self.pad_y, new_w, new_h

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """Model-input pixel coordinates (pixel centres) -> original image pixel coordinates."""
        ox = (x + 0.5 - self.pad_x) / self.scale - 0.5
        oy = (y + 0.5 - self.pad_y) / self.scale - 0.5
        return (
            float(np.clip(ox, 0, self.orig_width - 1)),
            float(np.clip(oy, 0, self.orig_height - 1)),
        )

    def to_model(self, x: float, y: float) -> tuple[float, float]:
        """Original image pixel coordinates -> model-input pixel coordinates."""
        return (x + 0.5) * self.scale + self.pad_x - 0.5, (y + 0.5) * self.scale + self.pad_y - 0.5

    def map_to_original(self, grid: np.ndarray) -> np.ndarray:
        """Resample a map over the model input (any resolution, e.g. a 7x7 CAM) to original pixels.

        Works on a 2-D (h, w) or 3-D (labels, h, w) array; returns float32 of the original size.
        """
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


def letterbox(image01: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize a 2-D [0, 1] image into a zero-padded size x size float32 square, aspect kept."""
    if image01.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image01.shape}")
    h, w = image01.shape
    box = Letterbox.fit(w, h, size)
    x0, y0, cw, ch = box.content
    src = np.ascontiguousarray(image01, dtype=np.float32)
    interp = cv2.INTER_AREA if box.scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(src, (cw, ch), interpolation=interp)
    out = np.zeros((size, size), dtype=np.float32)
    out[y0 : y0 + ch, x0 : x0 + cw] = np.clip(resized, 0.0, 1.0)
    return out, box


def normalize(square01: np.ndarray) -> np.ndarray:
    """Fixed intensity scaling applied after letterboxing (and after training augmentation)."""
    return ((np.asarray(square01, dtype=np.float32) - MEAN) / STD).astype(np.float32)


def preprocess(image01: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Letterbox + normalize: returns the (1, size, size) float32 model input and its transform."""
    square, box = letterbox(image01, size)
    return normalize(square)[None], box


def preprocessing_record(size: int) -> dict[str, object]:
    """The parameters a model card stores so the app reproduces preprocessing exactly."""
    return {"method": "letterbox", "size": size, "pad_value": 0.0, "mean": MEAN, "std": STD,
            "channels": 1, "input": "model_input [0,1], air dark"}
