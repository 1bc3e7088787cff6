"""The annotated image (RGB uint8, numpy + OpenCV only): what PNG export, the Secondary Capture and the
PDF show.

Layout, left to right: the image at the given window/level with one finding's heat map blended in,
the viewer's colour bar (local probability, 0-100 %), and a panel with the summary line and every finding in
the viewer's reading order (`cxrviewer.report.reading`: flagged, check, the rest) with its operating point
and tags ("check", "near cutoff"); a footer across the bottom names the model and says "not for diagnostic
use". The reader's measuring lines and the lung outline (`cxrviewer.report.marks`) are drawn over the
image when the viewer showed them. Nothing that identifies the patient is ever drawn, so the picture is safe
to share as is.

Heat maps are on the fixed "local probability" scale of `cxrviewer.model.cam` (never stretched per
image): the colours and the opacity ramp are the viewer's (`cxrviewer.model.colormap`), so an export
looks like the screen, and cold regions (below the ramp) leave the image untouched.

Small images are enlarged (long side to 1024 px) and very large ones reduced (long side 2048 px) so
the burned-in text stays legible; the map is resampled with the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from cxrviewer import __version__
from cxrviewer.model import colormap
from cxrviewer.model.card import MODIFIED_CARD, ModelCard
from cxrviewer.report import marks
from cxrviewer.report.findings import PredictionLike, gate_reasons, gate_warnings, is_rejected
from cxrviewer.report.marks import ReaderMarks
from cxrviewer.report.reading import percent, reading_order, summary_line, tags, top_label

DISCLAIMER = "Not for diagnostic use"
DEFAULT_ALPHA = 0.5

BACKGROUND = (22, 22, 22)
TEXT = (230, 230, 230)
MUTED = (150, 150, 150)
POSITIVE = (255, 170, 60)
WARNING = (255, 215, 80)

FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_PX = 22.0  # cap height of FONT at scale 1.0, in pixels

MIN_LONG_SIDE = 768  # images smaller than this are enlarged to SMALL_TARGET
SMALL_TARGET = 1024
MAX_LONG_SIDE = 2048


def _levels(values01: np.ndarray) -> np.ndarray:
    v = np.clip(np.nan_to_num(np.asarray(values01, dtype=np.float32)), 0.0, 1.0)
    return np.rint(v * 255.0).astype(np.uint8)


def scale_colours(values01: np.ndarray) -> np.ndarray:
    """The viewer's colour scale (`cxrviewer.model.colormap`): values in [0, 1] -> opaque RGB uint8 (..., 3)."""
    return colormap.LUT_RGB[_levels(values01)]


def overlay(gray: np.ndarray, heat01: np.ndarray | None, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Blend a [0, 1] heat map over an 8-bit grey image; opacity = alpha * value. Returns RGB uint8."""
    base = np.repeat(np.asarray(gray, dtype=np.uint8)[..., None], 3, axis=2)
    if heat01 is None:
        return base
    heat = np.clip(np.nan_to_num(np.asarray(heat01, dtype=np.float32)), 0.0, 1.0)
    if heat.shape != base.shape[:2]:
        raise ValueError(f"heat map shape {heat.shape} differs from the image {base.shape[:2]}")
    a = (float(np.clip(alpha, 0.0, 1.0)) * colormap.ALPHA[_levels(heat)])[..., None]  # the viewer's ramp
    out = base.astype(np.float32) * (1.0 - a) + scale_colours(heat).astype(np.float32) * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def working_scale(width: int, height: int) -> float:
    """Factor applied to the image before annotating it (see the module docstring)."""
    long_side = max(width, height)
    if long_side < MIN_LONG_SIDE:
        return SMALL_TARGET / long_side
    if long_side > MAX_LONG_SIDE:
        return MAX_LONG_SIDE / long_side
    return 1.0


def ascii_text(text: str) -> str:
    """The burned-in font is ASCII only: the viewer's typography replaced, anything else as "?"."""
    return marks.plain(str(text))


def _size(text: str, scale: float, thickness: int = 1) -> tuple[int, int]:
    (w, h), _ = cv2.getTextSize(ascii_text(text), FONT, scale, thickness)
    return w, h


def _put(img: np.ndarray, text: str, x: float, y: float, scale: float, colour: tuple[int, int, int],
         thickness: int = 1) -> None:
    """Draw text with its baseline at y."""
    cv2.putText(img, ascii_text(text), (int(round(x)), int(round(y))), FONT, scale, colour, thickness,
                cv2.LINE_AA)


def wrap(text: str, max_width: int, scale: float, thickness: int = 1) -> list[str]:
    """Greedy word wrap to a pixel width (a word longer than the width gets a line of its own)."""
    lines: list[str] = []
    current = ""
    for word in ascii_text(text).split():
        trial = f"{current} {word}".strip()
        if current and _size(trial, scale, thickness)[0] > max_width:
            lines.append(current)
            current = word
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


def _resize(arr: np.ndarray, scale: float, shape: tuple[int, int]) -> np.ndarray:
    if scale == 1.0:
        return arr
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(arr, (shape[1], shape[0]), interpolation=interp)


@dataclass(frozen=True)
class _Metrics:
    """Sizes derived from the (scaled) image height."""

    line: float  # line height, px
    font: float  # font scale
    margin: int

    @classmethod
    def for_height(cls, height: int, line: float | None = None) -> _Metrics:
        unit = height / 1024.0
        line = line if line is not None else 34.0 * unit
        return cls(line=line, font=0.62 * line / _FONT_PX, margin=max(6, int(round(16 * unit))))


@dataclass(frozen=True)
class BarGeometry:
    """Where the scale sits inside a `colour_bar` strip: rows top..bottom-1 (value 1 at the top), columns
    x0..x0+width-1."""

    top: int
    bottom: int
    x0: int
    width: int

    def value_at(self, row: int) -> float:
        return 1.0 - (row - self.top) / max(1, self.bottom - 1 - self.top)


def _bar_layout(height: int, m: _Metrics) -> tuple[BarGeometry, float, int]:
    tick_font = 0.8 * m.font
    bar_w = max(10, int(round(0.028 * height)))
    title_w = max(_size(word, tick_font)[0] for word in colormap.SCALE_TITLE.split())
    label_w = max(_size(colormap.tick_label(v), tick_font)[0] for v in colormap.BAR_TICKS)
    width = max(m.margin + bar_w + m.margin // 2 + 6 + label_w, m.margin + title_w) + m.margin
    top = int(round(m.margin + 2 * m.line))  # room for the two-line title
    bottom = max(top + 20, int(round(0.55 * height)))
    bottom = min(bottom, height - m.margin)
    return BarGeometry(top, bottom, m.margin, bar_w), tick_font, width


def colour_bar_geometry(height: int, metrics: _Metrics | None = None) -> BarGeometry:
    """The scale's place in `colour_bar(height)` (for tests and callers that annotate it)."""
    return _bar_layout(height, metrics or _Metrics.for_height(height))[0]


def colour_bar(height: int, metrics: _Metrics | None = None, opacity: float = DEFAULT_ALPHA) -> np.ndarray:
    """The viewer's colour bar as a vertical strip (RGB): the fixed scale of `cxrviewer.model.colormap` as it
    is drawn at this opacity (grey below the 50 % floor, where no heat map is drawn), titled "local
    probability", ticks 0 %, 25 %, ..., 100 %."""
    m = metrics or _Metrics.for_height(height)
    geo, tick_font, width = _bar_layout(height, m)
    strip = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    top, bottom, x0, bar_w = geo.top, geo.bottom, geo.x0, geo.width
    values = np.array([geo.value_at(row) for row in range(top, bottom)], dtype=np.float32)
    strip[top:bottom, x0 : x0 + bar_w] = colormap.bar_colours(values, opacity)[:, None, :]
    cv2.rectangle(strip, (x0 - 1, top - 1), (x0 + bar_w, bottom), MUTED, 1)
    for i, word in enumerate(colormap.SCALE_TITLE.split()):
        _put(strip, word, x0, top - (1.55 - 0.9 * i) * m.line, tick_font, MUTED)
    th = _size("0", tick_font)[1]
    for v in colormap.BAR_TICKS:
        y = int(round(bottom - 1 - v * (bottom - 1 - top)))
        cv2.line(strip, (x0 + bar_w, y), (x0 + bar_w + 5, y), MUTED, 1)
        _put(strip, colormap.tick_label(v), x0 + bar_w + m.margin // 2 + 6, y + th / 2, tick_font, TEXT)
    return strip


def _scaled_inputs(display: np.ndarray, heat01: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    gray = np.asarray(display)
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit grey image (H, W), got {gray.dtype} {gray.shape}")
    h, w = gray.shape
    s = working_scale(w, h)
    shape = (max(1, int(round(h * s))), max(1, int(round(w * s))))
    gray_s = _resize(gray, s, shape)
    heat_s = None
    if heat01 is not None:
        heat = np.asarray(heat01, dtype=np.float32)
        if heat.shape != gray.shape:
            raise ValueError(f"heat map shape {heat.shape} differs from the image {gray.shape}")
        heat_s = _resize(heat, s, shape)
    return gray_s, heat_s


def _picture(display: np.ndarray, heat01: np.ndarray | None, alpha: float,
             annotations: ReaderMarks | None) -> np.ndarray:
    gray, heat = _scaled_inputs(display, heat01)
    picture = overlay(gray, heat, alpha)
    return marks.draw(picture, annotations, picture.shape[0] / display.shape[0])


def render_figure(display: np.ndarray, heat01: np.ndarray | None, alpha: float = DEFAULT_ALPHA,
                  annotations: ReaderMarks | None = None) -> np.ndarray:
    """Image + heat map (+ the reader's marks) + colour bar, without text panel or footer (used by the PDF)."""
    picture = _picture(display, heat01, alpha, annotations)
    return np.concatenate([picture, colour_bar(picture.shape[0], opacity=alpha)], axis=1)


def _finding_rows(prediction: PredictionLike) -> list[tuple[str, str, str, bool, str]]:
    """(label, probability, operating point, flagged, tags) in reading order, "No Finding" left out."""
    return [(f.label, percent(f.probability), f"op {percent(f.threshold)}", bool(f.positive), ", ".join(tags(f)))
            for f in reading_order(prediction.findings)]


def _panel_lines(prediction: PredictionLike | None, map_note: str, not_assessed: Sequence[str],
                 width: int, font: float, annotations: ReaderMarks | None = None
                 ) -> list[tuple[str, tuple[int, int, int]]]:
    """Free-text lines below the findings table, wrapped to the panel width."""
    out: list[tuple[str, tuple[int, int, int]]] = []

    def add(text: str, colour: tuple[int, int, int]) -> None:
        out.extend((line, colour) for line in wrap(text, width, font))

    if prediction is not None and not is_rejected(prediction):
        add(map_note, TEXT)
        add(f"colour = {colormap.SCALE_TITLE} on a fixed 0-100% scale; {colormap.floor_note()}", MUTED)
    for sentence in annotations.describe() if annotations else []:
        add(sentence, marks.COLOURS["distance"])
    for w in gate_warnings(prediction):
        add(f"Caution: {w}", WARNING)
    if not_assessed:
        add("Not assessed by this model: " + ", ".join(not_assessed), MUTED)
    return out


def render(display: np.ndarray, prediction: PredictionLike | None, *, label: str | None = None,
           model_name: str = "", alpha: float = DEFAULT_ALPHA,
           not_assessed: Sequence[str] = (), annotations: ReaderMarks | None = None) -> np.ndarray:
    """Annotated image as RGB uint8.

    display: the 8-bit grey rendering at the wanted window/level (air dark unless inverted on purpose).
    prediction: the model output for this image (None: image only, e.g. when inference failed).
    label: whose heat map to show; default the first finding of the reading order (`reading.top_label`).
    not_assessed: observations the model does not cover (listed, never shown as negative).
    annotations: the reader's measuring lines and lung outline, drawn and listed.
    """
    rejected = is_rejected(prediction)
    heat = None
    map_note = "Heat map: none"
    if prediction is not None and not rejected:
        label = label or top_label(prediction)
        if label is not None:
            heat = prediction.cam(label)
            map_note = f"Heat map: {label}" if heat is not None else \
                f"Heat map: none ({label} is below its display cutoff)"
    picture = _picture(display, heat, alpha, annotations)
    h = picture.shape[0]
    m0 = _Metrics.for_height(h)

    usable = prediction is not None and not rejected
    rows = _finding_rows(prediction) if prediction is not None and usable else []
    summary = summary_line(prediction.findings) if prediction is not None and usable else ""
    header = "Findings: probability, operating point" if rows else "Findings"
    legend = "+ = flagged at its operating point; the others are not flagged there (not absent)"
    pad = m0.margin

    def layout(m: _Metrics) -> tuple[int, list[tuple[str, tuple[int, int, int]]], list[str], list[str], int]:
        col_label = max([_size(r[0], m.font, 2)[0] for r in rows] + [0])
        col_prob = _size("100%", m.font, 2)[0]
        col_op = _size("op 100%", m.font)[0]
        col_tag = max([_size(r[4], 0.8 * m.font)[0] for r in rows] + [0])
        table_w = _size("+ ", m.font, 2)[0] + col_label + pad + col_prob + pad + col_op + pad + col_tag
        text_w = _size(header, m.font)[0]
        width = int(max(0.42 * h, table_w, text_w)) + 2 * pad
        inner = width - 2 * pad
        if prediction is None:
            status = ["No model result for this image."]
        elif rejected:
            reasons = " ".join(gate_reasons(prediction))
            status = wrap(f"Not assessed: the input check refused this image. {reasons}", inner, m.font)
        else:
            status = []
        top = wrap(summary, inner, m.font) + (wrap(legend, inner, 0.8 * m.font) if rows else [])
        extra = _panel_lines(prediction, map_note, not_assessed, inner, m.font, annotations)
        n = 2 + len(top) + len(rows) + len(status) + 1 + len(extra)
        return width, extra, status, top, n

    m = m0
    width, extra, status, top, n = layout(m)
    if n * m.line + 2 * pad > h:  # shrink the text so everything fits beside the image
        m = _Metrics.for_height(h, line=(h - 2 * pad) / n)
        width, extra, status, top, n = layout(m)

    panel = np.full((h, width, 3), BACKGROUND, dtype=np.uint8)
    y = pad + m.line * 0.8
    _put(panel, header, pad, y, m.font, TEXT, 1)
    y += m.line
    n_summary = len(wrap(summary, width - 2 * pad, m.font))
    for i, line in enumerate(top):
        summary_part = i < n_summary
        _put(panel, line, pad, y, m.font if summary_part else 0.8 * m.font, TEXT if summary_part else MUTED)
        y += m.line
    y += m.line * 0.2
    if rows:
        marker_w = _size("+ ", m.font, 2)[0]
        col_label = max(_size(r[0], m.font, 2)[0] for r in rows)
        x_prob = pad + marker_w + col_label + pad
        x_op = x_prob + _size("100%", m.font, 2)[0] + pad
        x_tag = x_op + _size("op 100%", m.font)[0] + pad
        for lab, prob, op, positive, tag in rows:
            colour = POSITIVE if positive else TEXT
            thick = 2 if positive else 1
            if positive:
                _put(panel, "+", pad, y, m.font, colour, 2)
            _put(panel, lab, pad + marker_w, y, m.font, colour, thick)
            pw = _size(prob, m.font, thick)[0]
            _put(panel, prob, x_prob + _size("100%", m.font, 2)[0] - pw, y, m.font, colour, thick)
            _put(panel, op, x_op, y, m.font, MUTED, 1)
            if tag:
                _put(panel, tag, x_tag, y, 0.8 * m.font, WARNING, 1)
            y += m.line
    for line in status:
        _put(panel, line, pad, y, m.font, WARNING)
        y += m.line
    y += m.line * 0.5
    for line, colour in extra:
        _put(panel, line, pad, y, m.font, colour)
        y += m.line

    body = np.concatenate([picture, colour_bar(h, m0, alpha), panel], axis=1)
    footer = _footer(body.shape[1], m0, model_name)
    return np.ascontiguousarray(np.concatenate([body, footer], axis=0))


def _footer(width: int, m: _Metrics, model_name: str) -> np.ndarray:
    height = int(round(1.6 * m.line))
    strip = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    cv2.line(strip, (0, 0), (width - 1, 0), MUTED, 1)
    right = DISCLAIMER.upper()
    left = f"cxrviewer {__version__}" + (f" | model: {model_name}" if model_name else "")
    font = m.font
    while font > 0.2 and _size(left, font)[0] + _size(right, font, 2)[0] + 3 * m.margin > width:
        font *= 0.9
    baseline = height / 2 + _size("A", font)[1] / 2
    _put(strip, left, m.margin, baseline, font, TEXT)
    _put(strip, right, width - m.margin - _size(right, font, 2)[0], baseline, font, WARNING, 2)
    return strip


def model_display_name(card: ModelCard | None) -> str:
    """"name version" from a model card (empty when there is no card), "(modified model card)" added when the
    card does not match its seal."""
    if not isinstance(card, ModelCard):
        return ""
    return card.display_name + (f" ({MODIFIED_CARD})" if card.is_modified else "")
