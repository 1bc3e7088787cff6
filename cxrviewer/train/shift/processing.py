"""Other detector processing: the same anatomy as another vendor's pipeline would render it.

Each function takes a film (float32 [0, 1], air dark), a generator and a severity (1.0 = the level the
battery uses) and returns a new film of the same shape. Lengths scale with the film's longer side, so a
256 px NIH film and a 2k DICOM get the same look.
"""

from __future__ import annotations

import cv2
import numpy as np


def _side(film: np.ndarray) -> int:
    return int(max(film.shape))


def _u8(film: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(film, 0.0, 1.0) * 255.0).astype(np.uint8)


def gamma(film: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Another tone curve: x ** g with g = 1.6 ** (+-severity), the direction drawn per film."""
    g = 1.6 ** (severity if rng.random() < 0.5 else -severity)
    return np.power(np.clip(film, 0.0, 1.0), g).astype(np.float32)


def unsharp(film: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Edge enhancement (unsharp mask, a vendor's large-kernel frequency processing): x + a (x - blur(x))."""
    sigma = 0.02 * _side(film) * rng.uniform(0.8, 1.2)
    blurred = cv2.GaussianBlur(film.astype(np.float32), (0, 0), sigma)
    return np.clip(film + 1.2 * severity * (film - blurred), 0.0, 1.0).astype(np.float32)


def clahe(film: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (8 x 8 tiles, clip limit 1 + 2 x severity)."""
    eq = cv2.createCLAHE(clipLimit=1.0 + 2.0 * severity, tileGridSize=(8, 8)).apply(_u8(film))
    return (eq.astype(np.float32) / 255.0).astype(np.float32)


def noise(film: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Quantum-like noise: Gaussian, standard deviation 0.02 x severity, stronger where the film is dark."""
    std = 0.02 * severity * (1.2 - 0.4 * np.clip(film, 0.0, 1.0))
    return np.clip(film + rng.standard_normal(film.shape) * std, 0.0, 1.0).astype(np.float32)


def blur(film: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Unsharpness (motion, grid, detector): Gaussian of sigma 0.006 x the longer side x severity."""
    sigma = max(0.3, 0.006 * _side(film) * severity)
    return cv2.GaussianBlur(film.astype(np.float32), (0, 0), sigma).astype(np.float32)


def lowres(film: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Resolution loss: down-sampled by 1 + 1.5 x severity (area) and back up (bilinear)."""
    h, w = film.shape
    f = 1.0 + 1.5 * severity
    small = cv2.resize(film.astype(np.float32), (max(8, round(w / f)), max(8, round(h / f))),
                       interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.float32)


def jpeg(film: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    """Lossy re-compression: 8-bit JPEG at quality 90 - 65 x severity (25 at severity 1)."""
    quality = int(np.clip(round(90 - 65 * severity), 5, 95))
    ok, buf = cv2.imencode(".jpg", _u8(film), [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else None
    if decoded is None:
        raise RuntimeError("OpenCV failed to round-trip a JPEG it encoded")
    return (decoded.astype(np.float32) / 255.0).astype(np.float32)
