"""PDF writer: lays out `cxrviewer.report.pdf_content.ReportPage`s with ReportLab (no Qt, no display).

A4 portrait, one page per image: title and "NOT FOR DIAGNOSTIC USE", the patient/study header in two
columns, the figure (image + heat map + colour bar, from `render.render_figure`) beside the ranked
findings table, cautions, the observations the model does not assess, the model summary, and the
disclaimer at the foot. Text is real PDF text (searchable, extractable) in DejaVu Sans when the system
has it (Debian's fonts-dejavu-core), else in the Bitstream Vera fonts that ReportLab ships. The document
metadata carry the title and the software only, never an identifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from cxrviewer.report.pdf_content import ReportPage, software_line

RGB = tuple[float, float, float]

INK: RGB = (20 / 255, 20 / 255, 20 / 255)
MUTED: RGB = (105 / 255, 105 / 255, 105 / 255)
ALERT: RGB = (170 / 255, 30 / 255, 30 / 255)
POSITIVE: RGB = (175 / 255, 75 / 255, 0.0)
RULE: RGB = (190 / 255, 190 / 255, 190 / 255)

MARGIN_X, MARGIN_Y = 14 * mm, 12 * mm
LEADING = 1.22  # line height / font size

_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"),
              Path("/usr/local/share/fonts"))


@lru_cache(maxsize=1)
def fonts() -> tuple[str, str]:
    """(regular, bold) font names, registered with ReportLab on first use."""
    import reportlab

    candidates = [(d / "DejaVuSans.ttf", d / "DejaVuSans-Bold.ttf") for d in _FONT_DIRS]
    shipped = Path(reportlab.__file__).parent / "fonts"
    candidates.append((shipped / "Vera.ttf", shipped / "VeraBd.ttf"))
    for regular, bold in candidates:
        if regular.is_file() and bold.is_file():
            try:
                pdfmetrics.registerFont(TTFont("CXR-Regular", str(regular)))
                pdfmetrics.registerFont(TTFont("CXR-Bold", str(bold)))
            except Exception:  # a broken font file: try the next
                continue
            return "CXR-Regular", "CXR-Bold"
    return "Helvetica", "Helvetica-Bold"  # Latin-1 only; never reached with ReportLab's own fonts present


@dataclass
class _Cursor:
    """Text blocks and rules placed top to bottom on one page; y is measured down from the page top."""

    canvas: Canvas
    left: float
    right: float
    top: float
    bottom: float
    y: float = 0.0

    def __post_init__(self) -> None:
        self.y = self.top
        self.regular, self.bold = fonts()

    @property
    def width(self) -> float:
        return self.right - self.left

    def _baseline(self, y_top: float, size: float) -> float:
        """ReportLab's y (from the bottom) of the baseline of a line whose box starts at y_top."""
        return A4[1] - (y_top + 0.93 * size)

    def lines(self, text: str, size: float, bold: bool, width: float) -> list[str]:
        font = self.bold if bold else self.regular
        out: list[str] = []
        for paragraph in str(text).split("\n"):
            out.extend(simpleSplit(paragraph, font, size, width) or [""])
        return out

    def text(self, text: str, size: float = 9, *, bold: bool = False, colour: RGB = INK,
             x: float | None = None, width: float | None = None, advance: bool = True,
             align: str = "left") -> float:
        """Wrapped text at the cursor; returns its height."""
        left = self.left if x is None else x
        w = (self.right - left) if width is None else width
        font = self.bold if bold else self.regular
        c = self.canvas
        c.setFont(font, size)
        c.setFillColorRGB(*colour)
        y = self.y
        lines = self.lines(text, size, bold, w)
        for line in lines:
            base = self._baseline(y, size)
            if align == "right":
                c.drawRightString(left + w, base, line)
            else:
                c.drawString(left, base, line)
            y += size * LEADING
        height = len(lines) * size * LEADING
        if advance:
            self.y += height
        return height

    def height_of(self, text: str, size: float, bold: bool = False) -> float:
        return len(self.lines(text, size, bold, self.width)) * size * LEADING

    def gap(self, points: float) -> None:
        self.y += points

    def hline(self, x0: float, x1: float, weight: float = 0.7) -> None:
        c = self.canvas
        c.setStrokeColorRGB(*RULE)
        c.setLineWidth(weight)
        c.line(x0, A4[1] - self.y, x1, A4[1] - self.y)

    def rule(self) -> None:
        self.hline(self.left, self.right)
        self.gap(4)


def _header(c: _Cursor, page: ReportPage) -> None:
    top = c.y
    h = c.text(page.title, 15, bold=True, advance=False)
    c.text("NOT FOR DIAGNOSTIC USE", 11, bold=True, colour=ALERT, align="right", advance=False)
    c.y = top + h
    c.text(f"{page.page_label}  |  generated {page.generated} by {software_line()}", 8, colour=MUTED)
    c.gap(4)
    c.rule()
    key_w = 90.0
    col_w = (c.width - 12) / 2
    rows = page.header
    half = (len(rows) + 1) // 2
    start = c.y
    bottoms = []
    for col, chunk in enumerate((rows[:half], rows[half:])):
        c.y = start
        x0 = c.left + col * (col_w + 12)
        for key, value in chunk:
            c.text(key, 9, colour=MUTED, x=x0, width=key_w, advance=False)
            c.text(value, 9, bold=key in ("Patient", "Patient ID"), x=x0 + key_w, width=col_w - key_w)
        bottoms.append(c.y)
    c.y = max(bottoms, default=start)
    c.gap(4)
    c.rule()


def _findings_table(c: _Cursor, page: ReportPage, x: float, width: float) -> float:
    """The table of findings to the right of the figure; returns its bottom."""
    c.text("Findings", 11, bold=True, x=x, width=width)
    c.gap(2)
    if page.summary:
        c.text(page.summary, 8.5, bold=True, x=x, width=width)
        c.gap(3)
    if page.status:
        for line in page.status:
            c.text(line, 9, colour=ALERT, x=x, width=width)
        return c.y
    cols = [0.40, 0.14, 0.20, 0.26]
    xs = [x + sum(cols[:i]) * width for i in range(len(cols))]
    ws = [f * width - 3 for f in cols]
    top = c.y
    h = 0.0
    for xi, wi, head in zip(xs, ws, ["Finding", "Prob.", "Op. point", "Result"], strict=True):
        h = max(h, c.text(head, 7.5, bold=True, colour=MUTED, x=xi, width=wi, advance=False))
    c.y = top + h + 2
    c.hline(x, x + width, 0.5)
    c.gap(2)
    for row in page.findings:
        colour = POSITIVE if row.positive else INK
        top = c.y
        h = 0.0
        values = [row.label, row.probability, row.operating_point, row.result]
        for i, (xi, wi, v) in enumerate(zip(xs, ws, values, strict=True)):
            bold = row.positive and i in (0, 3)
            h = max(h, c.text(v, 8.5, bold=bold, colour=colour, x=xi, width=wi, advance=False))
        c.y = top + h
        if row.detail:
            c.text(row.detail, 7, colour=MUTED, x=xs[0] + 6, width=width - 6)
        c.y += 1.5
    c.gap(3)
    c.text("In reading order: flagged findings (by how far above their operating point), then triage checks, "
           "then the rest. Flagged = probability at or above the model's operating point for that finding; "
           "not flagged is not absent: the sensitivity is the share of validation films with the finding that "
           "this operating point flags. Near cutoff = so close to the operating point that another copy of the "
           "same film can fall on the other side.", 7, colour=MUTED, x=x, width=width)
    return c.y


def _figure(c: _Cursor, page: ReportPage, width: float, max_height: float) -> float:
    """The image with its heat map and colour bar at the cursor's left; returns its bottom."""
    if page.figure is None:
        c.text("(image not available)", 9, colour=MUTED, width=width)
        return c.y
    rgb = np.ascontiguousarray(page.figure, dtype=np.uint8)
    h_px, w_px = rgb.shape[:2]
    scale = min(width / w_px, max_height / h_px)
    w, h = w_px * scale, h_px * scale
    c.canvas.drawImage(ImageReader(PILImage.fromarray(rgb, "RGB")), c.left, A4[1] - (c.y + h), w, h)
    c.y += h + 3
    c.text(page.figure_caption, 7.5, colour=MUTED, width=width)
    return c.y


def _lower(c: _Cursor, page: ReportPage) -> None:
    if page.measurements:
        c.text("Reader's marks on the image", 10, bold=True)
        for line in page.measurements:
            c.text(f"- {line}", 8.5)
        c.gap(4)
    if page.warnings:
        c.text("Cautions", 10, bold=True)
        for w in page.warnings:
            c.text(f"- {w}", 8.5, colour=ALERT)
        c.gap(4)
    if page.not_assessed:
        c.text("Not assessed by this model", 10, bold=True)
        c.text(", ".join(page.not_assessed) + ". These observations are not evaluated; they are not negative.", 8.5)
        c.gap(4)
    m = page.model
    c.text("Model", 10, bold=True)
    card = f", card SHA-256 {m.card_sha256}..." if m.card_sha256 else ""
    c.text(f"{m.name} {m.version}   (weights SHA-256 {m.sha256}...{card})", 8.5)
    if m.card_note:
        c.text(m.card_note, 8.5, bold=True, colour=ALERT)
    if m.operating_points:
        c.text(f"Operating points: {m.operating_points}", 8.5)
    if m.description:
        c.text(m.description, 8, colour=MUTED)
    c.text(m.validation_note + ": " + "; ".join(f"{lab} {v}" for lab, v in m.auroc), 8)
    if m.datasets:
        c.text("Training data: " + "; ".join(m.datasets), 8)
    if m.intended_use:
        c.text("Intended use: " + m.intended_use, 8)


def _page(canvas: Canvas, page: ReportPage) -> None:
    c = _Cursor(canvas, MARGIN_X, A4[0] - MARGIN_X, MARGIN_Y, A4[1] - MARGIN_Y)
    _header(c, page)
    c.gap(4)
    body_top = c.y
    fig_w = c.width * 0.54
    fig_bottom = _figure(c, page, fig_w, (c.bottom - c.top) * 0.5)
    c.y = body_top
    table_x = c.left + fig_w + 12
    table_bottom = _findings_table(c, page, table_x, c.right - table_x)
    c.y = max(fig_bottom, table_bottom) + 6
    c.rule()
    _lower(c, page)
    foot = c.height_of(page.disclaimer, 8, bold=True)
    c.y = max(c.y + 6, c.bottom - foot - 4)
    c.rule()
    c.text(page.disclaimer, 8, bold=True, colour=ALERT)


def write_pdf(pages: Sequence[ReportPage], path: str | Path) -> Path:
    """Lay out one page per `ReportPage` into a PDF at `path` (A4 portrait). Raises OSError on failure."""
    if not pages:
        raise ValueError("a report needs at least one page")
    path = Path(path)
    canvas = Canvas(str(path), pagesize=A4, pageCompression=1)
    canvas.setTitle("cxrviewer second-opinion report")  # no identifiers in the document metadata
    canvas.setCreator(software_line())
    canvas.setAuthor("")
    canvas.setSubject("")
    for page in pages:
        _page(canvas, page)
        canvas.showPage()
    canvas.save()
    return path
