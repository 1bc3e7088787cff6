"""Things a site burns into its films that are not anatomy: text, side markers, black frames.

Each function returns the film and the mask (float32 0..1) of the pixels it may have changed.
"""

from __future__ import annotations

import cv2
import numpy as np

from cxrviewer.train.shift.paint import paint

WORDS = ("PORTABLE", "AP SUPINE", "AP SITTING", "SEMI-ERECT", "ICU", "12:47", "MOBILE")


def text_markers(film: np.ndarray, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, np.ndarray]:
    """Burned-in white text ("PORTABLE", "AP SUPINE", ...) near the top corners and an L or R side marker."""
    h, w = film.shape
    side = max(h, w)
    canvas = np.zeros((h, w), dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = side / 640.0 * (0.8 + 0.4 * severity)
    thick = max(1, round(side / 400))
    first = "PORTABLE" if rng.random() < 0.5 else "AP SUPINE"
    others = [word for word in WORDS if word != first]
    second = others[int(rng.integers(len(others)))]
    y = int((0.06 + rng.uniform(0, 0.03)) * h)
    for word, left in ((first, True), (second, False)):
        (tw, _), _ = cv2.getTextSize(word, font, scale, thick)
        x = int(0.04 * w) if left else int(w - tw - 0.04 * w)
        cv2.putText(canvas, word, (x, y), font, scale, 255, thick, cv2.LINE_AA)
    marker = "L" if rng.random() < 0.5 else "R"
    mscale = 2.0 * scale
    (mw, mh), _ = cv2.getTextSize(marker, font, mscale, thick * 2)
    mx = int(w - mw - 0.06 * w) if marker == "L" else int(0.06 * w)  # the patient's left is image right
    my = int(rng.uniform(0.14, 0.3) * h) + mh
    cv2.putText(canvas, marker, (mx, my), font, mscale, 255, thick * 2, cv2.LINE_AA)
    alpha = canvas.astype(np.float32) / 255.0
    return paint(film, alpha, 1.0, 1.0), alpha


def border(film: np.ndarray, rng: np.random.Generator, severity: float) -> tuple[np.ndarray, np.ndarray]:
    """Black frame: electronic shutters of 4-10 % x severity on each side (uneven, as collimation is)."""
    h, w = film.shape
    top, bottom, left, right = (int(round(rng.uniform(0.04, 0.1) * severity * n)) for n in (h, h, w, w))
    mask = np.zeros((h, w), dtype=np.float32)
    mask[:top] = 1.0
    mask[h - bottom:] = 1.0
    mask[:, :left] = 1.0
    mask[:, w - right:] = 1.0
    return np.where(mask > 0, 0.0, film).astype(np.float32), mask
