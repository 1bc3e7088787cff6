"""Painting radio-opaque things onto a film: anti-aliased strokes, a placement frame from the lung fields.

Paint only brightens (an opaque object adds attenuation; it never makes a film darker): a stroke with
coverage a (0..1, anti-aliased) and level L gives ``max(x, x + a * opacity * (L - x))``. Pixels the stroke does
not cover are left exactly as they were, so the stroke's coverage is the transform's mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cxrviewer.imaging.anatomy import find_lung_fields

_SUB = 4  # fractional bits of cv2's sub-pixel drawing
#: The thorax box (fractions of width, height) used when the lung fields are not found.
DEFAULT_BOX = (0.12, 0.08, 0.88, 0.86)

Point = tuple[float, float]


@dataclass(frozen=True)
class Frame:
    """Where things go: the thorax box (the lung-field localiser's, else a default) in film pixels."""

    width: int
    height: int
    x0: float
    y0: float
    x1: float
    y1: float
    found: bool

    @classmethod
    def of(cls, film: np.ndarray) -> Frame:
        h, w = film.shape
        fields = find_lung_fields(film)
        if fields.found:
            x0, y0, x1, y1 = (float(v) for v in fields.box)
        else:
            fx0, fy0, fx1, fy1 = DEFAULT_BOX
            x0, y0, x1, y1 = fx0 * w, fy0 * h, fx1 * w, fy1 * h
        return cls(w, h, x0, y0, x1, y1, fields.found)

    @property
    def bw(self) -> float:
        return self.x1 - self.x0

    @property
    def bh(self) -> float:
        return self.y1 - self.y0

    @property
    def mid(self) -> float:
        """The midline (x) of the thorax box."""
        return 0.5 * (self.x0 + self.x1)

    @property
    def side(self) -> int:
        return max(self.width, self.height)

    def at(self, fx: float, fy: float) -> Point:
        """A point at fractions (fx, fy) of the thorax box (may lie outside it)."""
        return self.x0 + fx * self.bw, self.y0 + fy * self.bh

    def stroke(self, fraction: float) -> int:
        """A line thickness of `fraction` of the film's longer side, at least 1 pixel."""
        return max(1, round(fraction * self.side))


def bezier(points: list[Point], n: int = 48) -> np.ndarray:
    """n points (n x 2) along the Bezier curve with control points `points` (de Casteljau)."""
    p = np.asarray(points, dtype=np.float64)
    t = np.linspace(0.0, 1.0, n)[:, None, None]
    q = np.broadcast_to(p, (n, *p.shape))
    while q.shape[1] > 1:
        q = (1 - t) * q[:, :-1] + t * q[:, 1:]
    return np.asarray(q[:, 0], dtype=np.float64)


def offset(curve: np.ndarray, distance: float) -> np.ndarray:
    """The curve moved sideways by `distance` pixels (along its normals): the other wall of a tube."""
    d = np.gradient(curve, axis=0)
    norm = np.hypot(d[:, 0], d[:, 1])[:, None]
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.maximum(norm, 1e-9)
    return np.asarray(curve + distance * normal, dtype=np.float64)


class Canvas:
    """Coverage (0..1) of the strokes drawn so far, at the film's size."""

    def __init__(self, shape: tuple[int, int]):
        self.cover = np.zeros(shape, dtype=np.uint8)

    def polyline(self, curve: np.ndarray, thickness: int) -> Canvas:
        pts = np.rint(np.asarray(curve) * (1 << _SUB)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(self.cover, [pts], False, 255, thickness, cv2.LINE_AA, _SUB)
        return self

    def circle(self, centre: Point, radius: float, thickness: int) -> Canvas:
        """A ring (thickness > 0) or a disc (thickness < 0)."""
        c = (round(centre[0] * (1 << _SUB)), round(centre[1] * (1 << _SUB)))
        cv2.circle(self.cover, c, max(1, round(radius * (1 << _SUB))), 255, thickness, cv2.LINE_AA, _SUB)
        return self

    def polygon(self, points: np.ndarray) -> Canvas:
        pts = np.rint(np.asarray(points) * (1 << _SUB)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(self.cover, [pts], 255, cv2.LINE_AA, _SUB)
        return self

    @property
    def alpha(self) -> np.ndarray:
        return (self.cover.astype(np.float32) / 255.0).astype(np.float32)


def paint(film: np.ndarray, alpha: np.ndarray, level: float, opacity: float) -> np.ndarray:
    """Brighten `film` toward `level` where `alpha` > 0 (never darker; untouched where alpha is 0)."""
    a = np.clip(alpha, 0.0, 1.0) * opacity
    painted = np.maximum(film, film + a * (level - film))
    return np.where(a > 0, painted, film).astype(np.float32)
