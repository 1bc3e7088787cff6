"""The canvas's measuring tools (distance ruler, cardiothoracic ratio) and the magnifier loupe.

The arithmetic is `cxrviewer.imaging.measure` (no Qt); this module only draws the lines and labels in scene
coordinates (original image pixels) and turns mouse gestures into points. A line is made either by dragging
from one end to the other, or by two clicks (click, move, click).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsLineItem, QGraphicsScene, QWidget

from cxrviewer.gui.canvas_overlays import OutlinedLabel
from cxrviewer.imaging.measure import (
    NO_SPACING,
    CardiothoracicRatio,
    Spacing,
    cardiothoracic_ratio,
    distance,
    spacing_of,
)

if TYPE_CHECKING:
    from cxrviewer.imaging.image import Image

RULER_COLOUR = QColor(255, 214, 64)
CARDIAC_COLOUR = QColor(255, 128, 128)
THORACIC_COLOUR = QColor(110, 200, 255)


class CanvasTool(Enum):
    """What the left mouse button does on the canvas."""

    PAN = "pan"
    RULER = "ruler"
    CTR = "ctr"


class _Line:
    """One drawn line with its label centred above it."""

    def __init__(self, scene: QGraphicsScene, colour: QColor, p0: QPointF) -> None:
        self.scene = scene
        pen = QPen(colour, 2.0)
        pen.setCosmetic(True)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        self.item = QGraphicsLineItem()
        self.item.setPen(pen)
        self.item.setZValue(5)
        self.label = OutlinedLabel(colour)
        self.p0 = self.p1 = QPointF(p0)
        scene.addItem(self.item)
        scene.addItem(self.label)
        self.set_end(p0)

    def set_end(self, p1: QPointF) -> None:
        self.p1 = QPointF(p1)
        self.item.setLine(self.p0.x(), self.p0.y(), self.p1.x(), self.p1.y())
        self.label.setPos((self.p0 + self.p1) / 2)

    def points(self) -> tuple[tuple[float, float], tuple[float, float]]:
        return (self.p0.x(), self.p0.y()), (self.p1.x(), self.p1.y())

    def remove(self) -> None:
        for item in (self.item, self.label):
            if item.scene() is not None:
                self.scene.removeItem(item)


class MeasureLayer:
    """Rulers and one cardiothoracic ratio drawn over an image; reports finished measurements."""

    HINTS = {
        CanvasTool.RULER: "Ruler: drag from point to point, or click both · Esc: pan",
        CanvasTool.CTR: "CTR 1/2: drag across the heart at its widest · Esc: pan",
    }
    HINT_THORACIC = "CTR 2/2: drag across the inner thorax at its widest · Esc: pan"

    def __init__(self, scene: QGraphicsScene, on_result: Callable[[str], None]) -> None:
        self._scene = scene
        self._on_result = on_result
        self.spacing: Spacing = NO_SPACING
        self.view_position = ""
        self.bounds = QRectF()
        self._rulers: list[_Line] = []
        self._ctr: list[_Line] = []
        self._active: _Line | None = None
        self._active_tool = CanvasTool.PAN
        self.following = False  # a click started the active line: it follows the mouse until the next click
        self.last_text = ""
        self.last_ctr: CardiothoracicRatio | None = None

    def set_image(self, image: Image | None, width: float, height: float) -> None:
        """A new image: its spacing and bounds; every drawing is removed."""
        self.clear()
        self.spacing = spacing_of(image) if image is not None else NO_SPACING
        meta = getattr(image, "meta", None)
        self.view_position = str(getattr(meta, "view_position", "") or "")
        self.bounds = QRectF(0, 0, width, height)

    def clear(self) -> None:
        self.cancel()
        for line in self._rulers + self._ctr:
            line.remove()
        self._rulers, self._ctr = [], []
        self.last_ctr = None
        self.last_text = ""

    def cancel(self) -> None:
        """Drop a line still being drawn."""
        if self._active is not None:
            self._active.remove()
            if self._active in self._ctr:
                self._ctr.remove(self._active)
        self._active = None
        self.following = False

    def busy(self) -> bool:
        return self._active is not None

    def hint(self, tool: CanvasTool) -> str:
        """What the next gesture of `tool` measures."""
        if tool is CanvasTool.CTR and len([line for line in self._ctr if line is not self._active]) == 1:
            return self.HINT_THORACIC
        return self.HINTS.get(tool, "")

    def texts(self) -> list[str]:
        """The labels drawn now (rulers, then the CTR lines)."""
        return [line.label.text() for line in self._rulers + self._ctr if line.label.text()]

    def lines(self) -> list[tuple[str, tuple[float, float], tuple[float, float], str]]:
        """The finished lines as plain data: (kind "distance" / "cardiac" / "thoracic", start, end, label),
        in image pixels, rulers first (what an export draws; a line still being drawn is left out)."""
        out = [("distance", *line.points(), line.label.text()) for line in self._rulers]
        for i, line in enumerate(self._ctr):
            if line is not self._active:
                out.append(("cardiac" if i == 0 else "thoracic", *line.points(), line.label.text()))
        return out

    def _clamp(self, p: QPointF) -> QPointF:
        b = self.bounds
        if b.isEmpty():
            return QPointF(p)
        return QPointF(min(max(p.x(), b.left()), b.right()), min(max(p.y(), b.top()), b.bottom()))

    # --- gestures (scene points) ---

    def begin(self, tool: CanvasTool, p: QPointF) -> None:
        self.cancel()
        p = self._clamp(p)
        if tool is CanvasTool.CTR:
            if len(self._ctr) >= 2:  # a new ratio replaces the previous one
                for line in self._ctr:
                    line.remove()
                self._ctr, self.last_ctr = [], None
            colour = CARDIAC_COLOUR if not self._ctr else THORACIC_COLOUR
            self._active = _Line(self._scene, colour, p)
            self._ctr.append(self._active)
        else:
            self._active = _Line(self._scene, RULER_COLOUR, p)
        self._active_tool = tool
        self._update_label()

    def move(self, p: QPointF) -> None:
        if self._active is not None:
            self._active.set_end(self._clamp(p))
            self._update_label()

    def follow(self) -> None:
        """The press was a click: keep the line and end it at the next click."""
        self.following = self._active is not None

    def commit(self, p: QPointF) -> None:
        """End the active line at `p` (a zero-length line is dropped)."""
        line = self._active
        if line is None:
            return
        line.set_end(self._clamp(p))
        self._active, self.following = None, False
        a, b = line.points()
        if distance(a, b).pixels < 0.5:
            line.remove()
            if line in self._ctr:
                self._ctr.remove(line)
            return
        if self._active_tool is CanvasTool.CTR:
            self._update_label(line)
            if len(self._ctr) == 2:
                self.last_ctr = cardiothoracic_ratio(
                    self._ctr[0].points(), self._ctr[1].points(), self.spacing, self.view_position
                )
                line.label.set_text(f"{line.label.text()} · CTR {self.last_ctr.ratio:.2f}")
                self._report(self.last_ctr.text)
            return
        self._rulers.append(line)
        self._update_label(line)
        self._report(distance(a, b, self.spacing).text)

    def _update_label(self, line: _Line | None = None) -> None:
        line = line or self._active
        if line is None:
            return
        d = distance(*line.points(), self.spacing)
        value = f"{d.value:.1f} {d.unit}"
        if line in self._ctr:
            value = ("cardiac " if line is self._ctr[0] else "thoracic ") + value
        line.label.set_text(value)

    def _report(self, text: str) -> None:
        self.last_text = text
        self._on_result(text)


class Magnifier(QWidget):
    """A round loupe that shows the film under the cursor `ZOOM` times larger than the view does."""

    ZOOM = 3.0
    DIAMETER = 200

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("magnifier")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setFixedSize(self.DIAMETER, self.DIAMETER)
        self.hide()
        self._pixmap = QPixmap()
        self._scene_point = QPointF()
        self._view = QTransform()

    def show_at(self, viewport_pos: QPointF, scene_point: QPointF, pixmap: QPixmap, view: QTransform) -> None:
        """Centre the loupe on `viewport_pos`, showing `pixmap` (scene units) around `scene_point`."""
        self._pixmap, self._scene_point = pixmap, QPointF(scene_point)
        # the view's rotation, mirror and zoom without its translation
        self._view = QTransform(view.m11(), view.m12(), view.m21(), view.m22(), 0, 0)
        self.move(round(viewport_pos.x()) - self.width() // 2, round(viewport_pos.y()) - self.height() // 2)
        self.show()
        self.raise_()
        self.update()

    def scene_to_loupe(self) -> QTransform:
        """Scene -> loupe pixels."""
        centre = QPointF(self.width() / 2, self.height() / 2)
        return (
            QTransform.fromTranslate(-self._scene_point.x(), -self._scene_point.y())
            * self._view
            * QTransform.fromScale(self.ZOOM, self.ZOOM)
            * QTransform.fromTranslate(centre.x(), centre.y())
        )

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        circle = QPainterPath()
        circle.addEllipse(QRectF(self.rect()).adjusted(2, 2, -2, -2))
        p.setClipPath(circle)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        p.save()
        p.setTransform(self.scene_to_loupe())
        p.drawPixmap(0, 0, self._pixmap)
        p.restore()
        p.setClipping(False)
        c = QPointF(self.width() / 2, self.height() / 2)
        p.setPen(QPen(QColor(0, 0, 0, 160), 3))
        p.drawLine(c - QPointF(12, 0), c - QPointF(5, 0))
        p.drawLine(c + QPointF(5, 0), c + QPointF(12, 0))
        p.setPen(QPen(QColor(255, 214, 64), 1))
        p.drawLine(c - QPointF(12, 0), c - QPointF(5, 0))
        p.drawLine(c + QPointF(5, 0), c + QPointF(12, 0))
        p.setPen(QPen(QColor(230, 230, 230), 2))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(circle)
        p.end()
