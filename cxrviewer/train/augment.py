"""Anatomy-respecting augmentation on letterboxed uint8 squares (no left-right flips by default).

JPEG re-compression is applied to a random half of ALL images so that compression history (the
shared NIH no-finding images are mostly JPEG-sourced) cannot become a label shortcut.

Site-shift augmentation (``site_shift_p``, off by default; `cxrviewer-train --site-shift-augment P`): with
probability P an image first gets one of the battery's transforms (`cxrviewer.train.shift`: painted
devices, another detector's processing, burned-in text, frames, the portable AP look) at a random severity,
positives and negatives alike and labels unchanged, so that a chest drain, ECG leads or edge enhancement
cannot stand in for a finding. The battery then measures whether the shortcut is gone (its transforms
are the same family: its numbers for a model trained this way measure robustness to these shifts, not to
unseen ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxrviewer.train.shift import SHIFTS, apply_shift

#: Transforms used in training: every single one of the battery's ("icu_devices" is three of them at once).
TRAIN_SHIFTS = tuple(name for name in SHIFTS if name != "icu_devices")


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.85, 1.2)
    shift: float = 0.1  # large enough that absolute position (film edges, markers) is a weak cue
    brightness: float = 0.08
    contrast: float = 0.15
    gamma: tuple[float, float] = (0.8, 1.25)
    blur_p: float = 0.15
    noise_p: float = 0.2
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (35, 95)
    aspect_p: float = 0.2  # simulate letterbox margins of non-square films
    hflip_p: float = 0.0
    site_shift_p: float = 0.0  # probability of one site-shift transform (see the module docstring)
    site_shifts: tuple[str, ...] = TRAIN_SHIFTS
    site_severity: tuple[float, float] = (0.5, 1.25)


def site_shift(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """One random site-shift transform of a uint8 square (display polarity, as the cache holds it)."""
    name = cfg.site_shifts[int(rng.integers(len(cfg.site_shifts)))]
    severity = float(rng.uniform(*cfg.site_severity))
    film = apply_shift(img.astype(np.float32) / 255.0, name, seed=int(rng.integers(2**31)), severity=severity).film
    return np.clip(np.rint(film * 255.0), 0, 255).astype(np.uint8)


def augment(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Return an augmented float32 [0, 1] copy of a uint8 square."""
    return augment_with_geometry(img, rng, cfg)[0]


def augment_with_geometry(img: np.ndarray, rng: np.random.Generator,
                          cfg: AugmentConfig = AugmentConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Augmented float32 [0, 1] copy and the 2x3 matrix taking input pixel coordinates to output ones."""
    size = img.shape[0]
    out = img
    geo = np.eye(3)
    if cfg.site_shift_p and rng.random() < cfg.site_shift_p:  # before the detector-like steps below
        out = site_shift(out, rng, cfg)
    if rng.random() < cfg.jpeg_p:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
            assert decoded is not None, "OpenCV failed to decode a JPEG it has just encoded"
            out = decoded
    if rng.random() < cfg.aspect_p:  # squeeze one axis, re-pad: margins as a non-square film would have
        f = rng.uniform(0.75, 0.95)
        axis = int(rng.integers(2))
        new = (size, max(8, int(size * f))) if axis == 0 else (max(8, int(size * f)), size)
        small = cv2.resize(out, new, interpolation=cv2.INTER_AREA)
        canvas = np.zeros_like(out)
        y0, x0 = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
        canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
        out = canvas
        geo = np.array([[small.shape[1] / size, 0, x0], [0, small.shape[0] / size, y0], [0, 0, 1]]) @ geo
    angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
    scale = rng.uniform(*cfg.scale)
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    m[:, 2] += rng.uniform(-cfg.shift, cfg.shift, 2) * size
    out = cv2.warpAffine(out, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    geo = np.vstack([m, [0, 0, 1]]) @ geo
    if cfg.hflip_p and rng.random() < cfg.hflip_p:
        out = out[:, ::-1]
        geo = np.array([[-1.0, 0, size], [0, 1, 0], [0, 0, 1]]) @ geo
    x: np.ndarray = out.astype(np.float32) / 255.0
    if rng.random() < cfg.blur_p:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.0))
    g = rng.uniform(*cfg.gamma)
    x = np.power(np.clip(x, 0, 1), g)
    x = (x - 0.5) * (1 + rng.uniform(-cfg.contrast, cfg.contrast)) + 0.5 + rng.uniform(-cfg.brightness, cfg.brightness)
    if rng.random() < cfg.noise_p:
        x = x + rng.normal(0, rng.uniform(0.005, 0.02), x.shape).astype(np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32), geo[:2]
