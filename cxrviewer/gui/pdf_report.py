"""PDF writer: paints `cxrviewer.report.pdf_content.ReportPage`s with Qt's own QPdfWriter and QPainter.

Works without a display: `ensure_gui_app` creates a QGuiApplication on the "offscreen" platform when no
Qt application exists yet (headless callers such as `cxrviewer-predict --export`). Painting on a
QPdfWriter is allowed outside the GUI thread, so the GUI may export from a worker.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QCoreApplication, QMarginsF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QPen,
)

from cxrviewer.report.pdf_content import ReportPage, software_line

DPI = 300
_app: QCoreApplication | None = None  # keeps an application created here alive

INK = QColor(20, 20, 20)
MUTED = QColor(105, 105, 105)
ALERT = QColor(170, 30, 30)
POSITIVE = QColor(175, 75, 0)
RULE = QColor(190, 190, 190)
FAMILY = "DejaVu Sans"


def ensure_gui_app() -> QCoreApplication:
    """The running Qt application, or a new QGuiApplication (offscreen when there is no display)."""
    global _app
    app = QCoreApplication.instance()
    if app is not None:
        return app
    if not os.environ.get("QT_QPA_PLATFORM") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    _app = QGuiApplication(["cxrviewer-pdf"])
    return _app


def _qimage(rgb: np.ndarray) -> QImage:
    arr = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class _Painter:
    """A cursor over one page: text blocks and rules placed top to bottom, in device pixels."""

    def __init__(self, painter: QPainter, rect: QRectF) -> None:
        self.p = painter
        self.rect = rect
        self.y = rect.top()

    def font(self, size: float, bold: bool = False) -> QFont:
        f = QFont(FAMILY)
        f.setFeature(QFont.Tag("liga"), 0)  # no ligatures: copied or searched text keeps plain letters
        f.setPointSizeF(size)
        f.setBold(bold)
        self.p.setFont(f)
        return f

    def px(self, points: float) -> float:
        return points * DPI / 72.0

    def text(
        self,
        text: str,
        size: float = 9,
        *,
        bold: bool = False,
        colour: QColor = INK,
        x: float | None = None,
        width: float | None = None,
        advance: bool = True,
        align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft,
    ) -> float:
        """Wrapped text at the cursor; returns its height."""
        self.font(size, bold)
        left = self.rect.left() if x is None else x
        w = (self.rect.right() - left) if width is None else width
        flags = int(align) | int(Qt.TextFlag.TextWordWrap)
        bound = self.p.boundingRect(QRectF(left, self.y, w, 10 * self.rect.height()), flags, text)
        self.p.setPen(colour)
        self.p.drawText(QRectF(left, self.y, w, bound.height()), flags, text)
        if advance:
            self.y += bound.height()
        return bound.height()

    def gap(self, points: float) -> None:
        self.y += self.px(points)

    def rule(self) -> None:
        self.p.setPen(QPen(RULE, 3))
        self.p.drawLine(int(self.rect.left()), int(self.y), int(self.rect.right()), int(self.y))
        self.gap(4)


def _header(c: _Painter, page: ReportPage) -> None:
    top = c.y
    h = c.text(page.title, 15, bold=True, advance=False)
    c.text(
        "NOT FOR DIAGNOSTIC USE",
        11,
        bold=True,
        colour=ALERT,
        align=Qt.AlignmentFlag.AlignRight,
        advance=False,
    )
    c.y = top + h
    c.text(f"{page.page_label}  |  generated {page.generated} by {software_line()}", 8, colour=MUTED)
    c.gap(4)
    c.rule()
    key_w = c.px(90)
    col_w = (c.rect.width() - c.px(12)) / 2
    rows = page.header
    half = (len(rows) + 1) // 2
    start = c.y
    bottoms = []
    for col, chunk in enumerate((rows[:half], rows[half:])):
        c.y = start
        x0 = c.rect.left() + col * (col_w + c.px(12))
        for key, value in chunk:
            c.text(key, 9, colour=MUTED, x=x0, width=key_w, advance=False)
            c.text(value, 9, bold=key in ("Patient", "Patient ID"), x=x0 + key_w, width=col_w - key_w)
        bottoms.append(c.y)
    c.y = max(bottoms)
    c.gap(4)
    c.rule()


def _findings_table(c: _Painter, page: ReportPage, x: float, width: float) -> float:
    """The table of findings to the right of the figure; returns its bottom."""
    c.text("Findings (ranked)", 11, bold=True, x=x, width=width)
    c.gap(2)
    if page.status:
        for line in page.status:
            c.text(line, 9, colour=ALERT, x=x, width=width)
        return c.y
    cols = [0.44, 0.17, 0.21, 0.18]
    xs = [x + sum(cols[:i]) * width for i in range(len(cols))]
    ws = [f * width for f in cols]
    heads = ["Finding", "Prob.", "Op. point", "Result"]
    top = c.y
    h = 0.0
    for xi, wi, head in zip(xs, ws, heads, strict=True):
        h = max(h, c.text(head, 7.5, bold=True, colour=MUTED, x=xi, width=wi, advance=False))
    c.y = top + h + c.px(2)
    c.p.setPen(QPen(RULE, 2))
    c.p.drawLine(int(x), int(c.y), int(x + width), int(c.y))
    c.gap(2)
    for row in page.findings:
        colour = POSITIVE if row.positive else INK
        values = [row.label, row.probability, row.operating_point, row.result]
        top = c.y
        h = 0.0
        for i, (xi, wi, v) in enumerate(zip(xs, ws, values, strict=True)):
            h = max(
                h,
                c.text(
                    v, 8.5, bold=row.positive and i in (0, 3), colour=colour, x=xi, width=wi, advance=False
                ),
            )
        c.y = top + h + c.px(1.5)
    c.gap(3)
    c.text(
        "Result at the operating point: present = probability at or above the model's operating "
        "point for that finding.",
        7,
        colour=MUTED,
        x=x,
        width=width,
    )
    return c.y


def _figure(c: _Painter, page: ReportPage, width: float, max_height: float) -> float:
    """The image with its heat map at the cursor's left; returns its bottom."""
    top = c.y
    if page.figure is None:
        c.text("(image not available)", 9, colour=MUTED, width=width)
        return c.y
    img = _qimage(page.figure)
    scale = min(width / img.width(), max_height / img.height())
    w, h = img.width() * scale, img.height() * scale
    c.p.drawImage(QRectF(c.rect.left(), top, w, h), img)
    c.y = top + h + c.px(3)
    c.text(page.figure_caption, 7.5, colour=MUTED, width=width)
    return c.y


def _lower(c: _Painter, page: ReportPage) -> None:
    if page.warnings:
        c.text("Cautions", 10, bold=True)
        for w in page.warnings:
            c.text(f"- {w}", 8.5, colour=ALERT)
        c.gap(4)
    if page.not_assessed:
        c.text("Not assessed by this model", 10, bold=True)
        c.text(
            ", ".join(page.not_assessed) + ". These observations are not evaluated; they are not negative.",
            8.5,
        )
        c.gap(4)
    m = page.model
    c.text("Model", 10, bold=True)
    c.text(f"{m.name} {m.version}   (weights SHA-256 {m.sha256}...)", 8.5)
    if m.description:
        c.text(m.description, 8, colour=MUTED)
    c.text(m.validation_note + ": " + "; ".join(f"{lab} {v}" for lab, v in m.auroc), 8)
    if m.datasets:
        c.text("Training data: " + "; ".join(m.datasets), 8)
    if m.intended_use:
        c.text("Intended use: " + m.intended_use, 8)


def _page(painter: QPainter, rect: QRectF, page: ReportPage) -> None:
    c = _Painter(painter, rect)
    _header(c, page)
    c.gap(4)
    body_top = c.y
    fig_w = rect.width() * 0.54
    fig_bottom = _figure(c, page, fig_w, rect.height() * 0.5)
    c.y = body_top
    table_x = rect.left() + fig_w + c.px(12)
    table_bottom = _findings_table(c, page, table_x, rect.right() - table_x)
    c.y = max(fig_bottom, table_bottom) + c.px(6)
    c.rule()
    _lower(c, page)
    # Disclaimer at the foot of the page.
    c.font(8)
    flags = int(Qt.TextFlag.TextWordWrap)
    foot = painter.boundingRect(QRectF(rect.left(), 0, rect.width(), rect.height()), flags, page.disclaimer)
    c.y = max(c.y + c.px(6), rect.bottom() - foot.height())
    c.rule()
    c.text(page.disclaimer, 8, bold=True, colour=ALERT)


def write_pdf(pages: Sequence[ReportPage], path: str | Path) -> Path:
    """Paint one page per `ReportPage` into a PDF at `path` (A4 portrait). Raises OSError on failure."""
    if not pages:
        raise ValueError("a report needs at least one page")
    ensure_gui_app()
    path = Path(path)
    writer = QPdfWriter(str(path))
    writer.setResolution(DPI)
    writer.setTitle("cxrviewer second-opinion report")  # no identifiers in the document metadata
    writer.setCreator(software_line())
    writer.setPageLayout(
        QPageLayout(
            QPageSize(QPageSize.PageSizeId.A4),
            QPageLayout.Orientation.Portrait,
            QMarginsF(14, 12, 14, 12),
            QPageLayout.Unit.Millimeter,
        )
    )
    painter = QPainter()
    if not painter.begin(writer):
        raise OSError(f"cannot write the PDF {path.name}")
    try:
        rect = QRectF(writer.pageLayout().paintRectPixels(DPI))
        rect.moveTo(0, 0)
        for i, page in enumerate(pages):
            if i:
                writer.newPage()
            _page(painter, rect, page)
    finally:
        ok = painter.end()
        del writer
    if not ok:
        raise OSError(f"cannot finish the PDF {path.name}")
    return path
