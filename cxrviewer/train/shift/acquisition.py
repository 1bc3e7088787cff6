"""Acquisition: the portable / AP-supine look of a bedside film.

Three effects, in this order: the scapulae over the upper lateral lung fields (on an AP film the shoulders
are not rotated forward), a denser soft band over each apex; then tighter collimation (the thorax fills more
of the film: zoom 1 + 0.12 x severity about the thorax centre) and a small rotation (2-5 degrees x severity,
either way). Not modelled: magnified heart, lower lung volumes, supine redistribution of fluid.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxrviewer.train.shift.paint import Canvas, Frame


def _scapulae(film: np.ndarray, rng: np.random.Generator, severity: float, frame: Frame) -> np.ndarray:
    canvas = Canvas(film.shape)
    for mirror in (False, True):
        # Outline of a scapula in thorax-box fractions on the image-left side: superior angle, medial border
        # down to the inferior angle, lateral border back up out of the lung field.
        pts = [(-0.04, 0.0), (0.2, 0.04), (0.24, 0.22), (0.16, rng.uniform(0.42, 0.52)), (-0.04, 0.35)]
        poly = np.array([frame.at(1.0 - fx if mirror else fx, fy) for fx, fy in pts])
        canvas.polygon(poly)
    soft = cv2.GaussianBlur(canvas.alpha, (0, 0), 0.01 * frame.side + 0.5)
    gain = 0.12 * severity * rng.uniform(0.8, 1.2)
    return np.clip(film + gain * soft * (1.0 - film), 0.0, 1.0).astype(np.float32)


def portable_ap(film: np.ndarray, rng: np.random.Generator, severity: float) -> np.ndarray:
    frame = Frame.of(film)
    out = _scapulae(film, rng, severity, frame)
    h, w = film.shape
    angle = rng.uniform(2.0, 5.0) * severity * (1 if rng.random() < 0.5 else -1)
    zoom = 1.0 + 0.12 * severity
    centre = (frame.mid, frame.y0 + 0.5 * frame.bh)
    m = np.asarray(cv2.getRotationMatrix2D(centre, angle, zoom), dtype=np.float64)
    m[:, 2] = m[:, 2] + np.array([w / 2 - centre[0], h / 2 - centre[1]]) * 0.5  # half-way to centring the thorax
    warped = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.asarray(warped, dtype=np.float32)
