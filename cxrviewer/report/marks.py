"""The reader's marks that an export carries: measuring lines (ruler, cardiothoracic ratio) and the lung outline.

Plain data in original image pixels, (x, y) = (column, row), handed over by the viewer (no Qt objects):
`render` draws them on the PNG, the Secondary Capture and the PDF figure in the viewer's colours, and the PNG
panel and the PDF list each line's text as the viewer labels it ("143.4 mm", "thoracic 250.1 mm · CTR 0.52").
The DICOM SR does not carry them: its observer is the model (a device), and a reader's measurements would
need a person observer of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

Point = tuple[float, float]

#: Line colours (RGB), the viewer's (`cxrviewer.gui.canvas_tools`, lung outline in `image_view`).
COLOURS: dict[str, tuple[int, int, int]] = {
    "distance": (255, 214, 64),
    "cardiac": (255, 128, 128),
    "thoracic": (110, 200, 255),
    "lungs": (96, 210, 140),
}
KINDS = ("distance", "cardiac", "thoracic")


@dataclass(frozen=True)
class MeasureLine:
    """One finished measuring line: its kind ("distance", "cardiac", "thoracic"), ends and label."""

    kind: str
    start: Point
    end: Point
    text: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown measuring line kind {self.kind!r}; expected one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class ReaderMarks:
    """What the reader drew over one image, as shown when exporting (an empty outline: not shown)."""

    lines: tuple[MeasureLine, ...] = ()
    lung_outline: tuple[np.ndarray, ...] = ()  # N x 2 (x, y) contours

    def __bool__(self) -> bool:
        return bool(self.lines) or bool(self.lung_outline)

    @property
    def texts(self) -> list[str]:
        """Each line's label, in drawing order."""
        return [line.text for line in self.lines if line.text]

    def describe(self) -> list[str]:
        """Sentences for a report: the measurements, and that the lung outline is drawn."""
        out = [f"Reader's measurement: {text}" for text in self.texts]
        if self.lung_outline:
            out.append("Lung outline (classical lung-field localiser) drawn in green")
        return out


def draw(rgb: np.ndarray, annotations: ReaderMarks | None, scale: float = 1.0) -> np.ndarray:
    """Draw the annotations on an RGB uint8 picture of the image enlarged by `scale` (in place; returned)."""
    if not annotations:
        return rgb
    h, w = rgb.shape[:2]
    thick = max(2, int(round(max(h, w) / 600)))
    font = 0.55 * max(h, w) / 1024
    for contour in annotations.lung_outline:
        pts = np.asarray(contour, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 3:
            continue
        poly = np.rint((pts + 0.5) * scale).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(rgb, [poly], True, COLOURS["lungs"], thick, cv2.LINE_AA)
    for line in annotations.lines:
        a = _pixel(line.start, scale)
        b = _pixel(line.end, scale)
        colour = COLOURS[line.kind]
        cv2.line(rgb, a, b, (0, 0, 0), thick + 2, cv2.LINE_AA)  # dark edge: readable on white lungs
        cv2.line(rgb, a, b, colour, thick, cv2.LINE_AA)
        for end in (a, b):
            cv2.circle(rgb, end, thick + 2, colour, -1, cv2.LINE_AA)
        _label(rgb, line.text, ((a[0] + b[0]) // 2, (a[1] + b[1]) // 2 - 3 * thick), font, colour, thick)
    return rgb


def plain(text: str) -> str:
    """Text for the burned-in (ASCII) font: the viewer's typography replaced, anything else as "?"."""
    for fancy, simple in (("·", "|"), ("×", "x"), ("–", "-"), ("—", "-"), ("≥", ">="), ("≤", "<="), ("…", "...")):
        text = text.replace(fancy, simple)
    return text.encode("ascii", "replace").decode("ascii")


def _label(rgb: np.ndarray, text: str, anchor: tuple[int, int], font: float, colour: tuple[int, int, int],
           thick: int) -> None:
    """A line's label centred above `anchor`, outlined in black, kept inside the picture."""
    text = plain(text)
    if not text:
        return
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
    h, w = rgb.shape[:2]
    x = min(max(2, anchor[0] - tw // 2), max(2, w - tw - 2))
    y = min(max(th + 2, anchor[1]), h - 2)
    cv2.putText(rgb, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick + 2, cv2.LINE_AA)
    cv2.putText(rgb, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, font, colour, thick, cv2.LINE_AA)


def _pixel(p: Sequence[float], scale: float) -> tuple[int, int]:
    return int(round(float(p[0]) * scale)), int(round(float(p[1]) * scale))
