"""What the image canvas draws over the film: the heat-map layer with its colour bar and peak marker, and
outlined text.

Text over a radiograph must stay readable on black lung fields and on white bone or an inverted film alike, so
it is drawn with a dark outline all round each glyph (`draw_outlined_text`), not a one-pixel drop shadow.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QImage,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
    QPixmap,
    QTransform,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QStyleOptionGraphicsItem,
    QWidget,
)

from cxrviewer.model import colormap

TEXT_COLOUR = QColor(235, 238, 242)
OUTLINE_COLOUR = QColor(0, 0, 0, 230)
OUTLINE_WIDTH = 3.0  # pixels, centred on the glyph edge: 1.5 px of dark all round
NOTE_COLOUR = QColor(90, 200, 255)
HINT_COLOUR = QColor(255, 214, 64)


def gray_qimage(arr: np.ndarray, copy: bool = True) -> QImage:
    """A uint8 (h, w) array as a QImage; with copy=False it borrows the array, which must outlive it."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = arr.shape
    image = QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_Grayscale8)
    return image.copy() if copy else image


def bgra_qimage(arr: np.ndarray) -> QImage:
    """A premultiplied BGRA uint8 (h, w, 4) array as a QImage that owns its pixels."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, arr.strides[0], QImage.Format.Format_ARGB32_Premultiplied).copy()


#: Outlined texts drawn lately, as images (stroking the outline costs 1-2 ms a line; a canvas repaints its corner
#: text on every pan, zoom and film change): (text, font, colour, pixel ratio) -> (image, offset from the baseline).
_OUTLINED: OrderedDict[tuple[str, str, int, float], tuple[QImage, QPointF]] = OrderedDict()
_OUTLINED_MAX = 256


def _outlined_image(text: str, font: QFont, colour: QColor, ratio: float) -> tuple[QImage, QPointF]:
    key = (text, font.key(), colour.rgba(), ratio)
    hit = _OUTLINED.get(key)
    if hit is not None:
        _OUTLINED.move_to_end(key)
        return hit
    path = QPainterPath()
    path.addText(QPointF(0, 0), font, text)
    box = path.boundingRect().adjusted(-OUTLINE_WIDTH, -OUTLINE_WIDTH, OUTLINE_WIDTH, OUTLINE_WIDTH)
    left, top = math.floor(box.left()), math.floor(box.top())
    width, height = math.ceil(box.right()) - left + 1, math.ceil(box.bottom()) - top + 1
    image = QImage(max(1, math.ceil(width * ratio)), max(1, math.ceil(height * ratio)),
                   QImage.Format.Format_ARGB32_Premultiplied)
    image.setDevicePixelRatio(ratio)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.translate(-left, -top)
    pen = QPen(OUTLINE_COLOUR, OUTLINE_WIDTH)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    painter.strokePath(path, pen)
    painter.fillPath(path, colour)
    painter.end()
    hit = _OUTLINED[key] = (image, QPointF(left, top))
    if len(_OUTLINED) > _OUTLINED_MAX:
        _OUTLINED.popitem(last=False)
    return hit


def draw_outlined_text(painter: QPainter, x: float, y: float, text: str, colour: QColor = TEXT_COLOUR) -> None:
    """`text` with its baseline starting at (x, y), filled with `colour` inside a dark outline (drawn once per
    text, font and colour, then reused as an image)."""
    if not text:
        return
    device = painter.device()
    image, offset = _outlined_image(text, painter.font(), colour, device.devicePixelRatioF() if device else 1.0)
    painter.drawImage(QPointF(x, y) + offset, image)


def paint_corner_text(
    painter: QPainter,
    vp: QRect,
    corners: tuple[list[str], list[str], list[str]],
    note: str = "",
    hint: str = "",
    hint_top: int = 10,
) -> None:
    """The canvas text, outlined: `corners` (top left, top right, bottom left lines), the analysed-region `note`
    bottom right and a tool `hint` centred at `hint_top`."""
    fm = painter.fontMetrics()

    def draw(lines: list[str], x: int, y: int, right: bool, up: bool, colour: QColor = TEXT_COLOUR) -> None:
        for i, text in enumerate(lines):
            yy = y - (len(lines) - 1 - i) * fm.height() if up else y + i * fm.height()
            draw_outlined_text(painter, x - fm.horizontalAdvance(text) if right else x, yy, text, colour)

    top, bottom = 10 + fm.ascent(), vp.bottom() - 10 - fm.descent()
    draw(corners[0], 10, top, False, False)
    draw(corners[1], vp.right() - 10, top, True, False)
    draw(corners[2], 10, bottom, False, True)
    if note:
        draw([note], vp.right() - 10, bottom, True, True, NOTE_COLOUR)
    if hint:  # under the top corners' text, never over it
        hint = fm.elidedText(hint, Qt.TextElideMode.ElideRight, max(vp.width() - 20, 40))
        y = max(hint_top, 10 + max(len(corners[0]), len(corners[1])) * fm.height() + 6) + fm.ascent()
        draw([hint], vp.center().x() - fm.horizontalAdvance(hint) // 2, y, False, False, HINT_COLOUR)


class OutlinedLabel(QGraphicsItem):
    """A text label centred just above a scene point, drawn at screen size (not zoomed, rotated or mirrored)."""

    LIFT = 8  # pixels between the point and the text's baseline

    def __init__(self, colour: QColor) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setZValue(6)
        self._colour = QColor(colour)
        self._text = ""
        self._font = QFont()
        self._font.setBold(True)

    def text(self) -> str:
        return self._text

    def set_text(self, text: str) -> None:
        self.prepareGeometryChange()
        self._text = text
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt API)
        fm = QFontMetricsF(self._font)
        width = fm.horizontalAdvance(self._text)
        return QRectF(-width / 2 - 4, -self.LIFT - fm.ascent() - 4, width + 8, fm.height() + 8)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setFont(self._font)
        x = -QFontMetricsF(self._font).horizontalAdvance(self._text) / 2
        draw_outlined_text(painter, x, -self.LIFT, self._text, self._colour)


class ColourBar(QWidget):
    """Vertical colour bar of the fixed heat-map scale (0-100 % local probability), as drawn; the same scale,
    ticks and title as the exported reports' bar (`colormap.bar_colours`).

    Its height follows the room it gets (`fit_height`), between `MIN_HEIGHT` and `MAX_HEIGHT`.
    """

    WIDTH, MIN_HEIGHT, MAX_HEIGHT = 88, 150, 270

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("colourBar")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setFixedSize(self.WIDTH, self.MAX_HEIGHT)
        self.title = ""
        self.opacity = 0.5

    def fit_height(self, available: int) -> None:
        self.setFixedSize(self.WIDTH, int(max(self.MIN_HEIGHT, min(self.MAX_HEIGHT, available))))

    def _scale_font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        return font

    def title_layout(self) -> tuple[list[str], QFont]:
        """The finding's name as drawn: on one line, else over two, in the scale's font or smaller (down to
        6 pt) until it fits; elided only if even that fails ("Pneumothorax", not "Pneumothor…")."""
        return fit_title(self.title, self._scale_font(), self.width() - 8)

    def set_title(self, title: str) -> None:
        self.title = title
        self.setToolTip(
            f"Heat map of {title}: local probability on a fixed 0-100 % scale "
            f"(the same colours on every image); below {colormap.ALPHA_LOW:.0%} nothing is drawn."
        )
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(12, 14, 18, 200))
        p.drawRoundedRect(self.rect(), 6, 6)
        p.setFont(self._scale_font())
        fm = p.fontMetrics()
        top, bottom = 10 + 2 * fm.height() + 4, self.height() - 10 - 2 * fm.height() - 4
        bar = QRectF(10, top, 16, bottom - top)
        # The scale exactly as it is drawn: colours with their alpha ramp, over mid-grey.
        p.fillRect(bar, QColor(*colormap.BAR_BACKDROP))
        grad = QLinearGradient(bar.bottomLeft(), bar.topLeft())
        for i in range(0, 256, 8):
            r, g, b = (int(c) for c in colormap.LUT_RGB[i])
            a = float(colormap.ALPHA[i]) * max(self.opacity, colormap.MIN_BAR_OPACITY)
            grad.setColorAt(i / 255, QColor(r, g, b, int(255 * a)))
        r, g, b = (int(c) for c in colormap.LUT_RGB[255])
        grad.setColorAt(1.0, QColor(r, g, b, int(255 * max(self.opacity, colormap.MIN_BAR_OPACITY))))
        p.fillRect(bar, grad)
        p.setPen(QPen(QColor(200, 200, 200), 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(bar)
        for value in colormap.BAR_TICKS:
            y = bar.bottom() - value * bar.height()
            p.drawLine(QPointF(bar.right(), y), QPointF(bar.right() + 4, y))
            p.drawText(QPointF(bar.right() + 7, y + fm.ascent() / 2 - 1), colormap.tick_label(value))
        p.setPen(QColor(235, 235, 235))
        lines, title_font = self.title_layout()
        p.setFont(title_font)
        line_height = QFontMetricsF(title_font).height()
        y = 6 + (2 * fm.height() - len(lines) * line_height) / 2  # centred in the two lines kept for it
        for line in lines:
            p.drawText(QRectF(4, y, self.width() - 8, line_height), Qt.AlignmentFlag.AlignHCenter, line)
            y += line_height
        p.setFont(self._scale_font())
        p.setPen(QColor(170, 175, 185))
        p.drawText(
            QRectF(2, bottom + 4, self.width() - 4, 2 * fm.height()),
            Qt.AlignmentFlag.AlignHCenter,
            colormap.SCALE_TITLE.replace(" ", "\n", 1),
        )
        p.end()


def fit_title(title: str, font: QFont, width: float, min_points: float = 6.0) -> tuple[list[str], QFont]:
    """`title` in at most two lines no wider than `width`, and the font that fits them (see `ColourBar`)."""
    words = title.split()
    candidates = [[title]]
    if len(words) > 1:  # the two-line split whose longer line is shortest
        splits = [[" ".join(words[:i]), " ".join(words[i:])] for i in range(1, len(words))]
        fm = QFontMetricsF(font)
        candidates.append(min(splits, key=lambda pair: max(fm.horizontalAdvance(x) for x in pair)))
    size = font.pointSizeF()
    while True:
        trial = QFont(font)
        trial.setPointSizeF(size)
        fm = QFontMetricsF(trial)
        for lines in candidates:
            if all(fm.horizontalAdvance(line) <= width for line in lines):
                return lines, trial
        if size <= min_points:
            lines = candidates[-1]
            return [fm.elidedText(line, Qt.TextElideMode.ElideRight, width) for line in lines], trial
        size = max(min_points, size - 0.5)


def crosshair() -> QPainterPath:
    """The heat-map peak marker: a ring with four ticks, in screen pixels."""
    path = QPainterPath()
    path.addEllipse(QPointF(0, 0), 9, 9)
    for a, b in (((-15, 0), (-5, 0)), ((5, 0), (15, 0)), ((0, -15), (0, -5)), ((0, 5), (0, 15))):
        path.moveTo(*a)
        path.lineTo(*b)
    return path


class HeatMapLayer:
    """The heat map, its peak marker, the analysed-region outline and the colour bar of one canvas."""

    def __init__(self, scene: QGraphicsScene, viewport: QWidget) -> None:
        self.overlay_item = QGraphicsPixmapItem()
        self.overlay_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.overlay_item.setZValue(1)
        self.outline_item = QGraphicsRectItem()
        pen = QPen(QColor(90, 200, 255), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.outline_item.setPen(pen)
        self.outline_item.setZValue(2)
        self.outline_note = ""
        self.peak_item = QGraphicsPathItem(crosshair())
        pen = QPen(QColor(255, 255, 255), 1.5)
        pen.setCosmetic(True)
        self.peak_item.setPen(pen)
        self.peak_item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.peak_item.setZValue(3)
        for item in (self.overlay_item, self.outline_item, self.peak_item):
            scene.addItem(item)
            item.setVisible(False)
        self.colour_bar = ColourBar(viewport)
        self.colour_bar.hide()
        self.wanted = True  # the user's heat-map toggle
        self.has_map = False
        self.has_peak = False
        self.opacity = 0.5

    def set(self, bgra: np.ndarray, title: str, peak: tuple[float, float] | None, image_rect: QRectF) -> None:
        """A heat map (premultiplied BGRA, any size) stretched over `image_rect`; `peak` in image pixels."""
        pixmap = QPixmap.fromImage(bgra_qimage(bgra))
        self.overlay_item.setPixmap(pixmap)
        self.overlay_item.setTransform(
            QTransform.fromScale(image_rect.width() / pixmap.width(), image_rect.height() / pixmap.height())
        )
        self.overlay_item.setOpacity(self.opacity)
        self.has_map = True
        self.colour_bar.set_title(title)
        self.has_peak = peak is not None
        if peak is not None:
            self.peak_item.setPos(QPointF(peak[0] + 0.5, peak[1] + 0.5))

    def clear(self) -> None:
        self.has_map = self.has_peak = False
        self.overlay_item.setPixmap(QPixmap())

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(np.clip(opacity, 0.0, 1.0))
        self.overlay_item.setOpacity(self.opacity)
        self.colour_bar.opacity = self.opacity
        self.colour_bar.update()

    def set_region(self, rect: tuple[float, float, float, float] | None, note: str) -> None:
        self.outline_note = "" if rect is None else (note or "analysed region")
        if rect is not None:
            self.outline_item.setRect(QRectF(*rect))

    def region(self) -> QRectF | None:
        return self.outline_item.rect() if self.outline_note else None

    def shown(self) -> bool:
        """True when a heat map is on screen (a map is set and the user has not hidden it)."""
        return self.has_map and self.wanted

    def sync(self) -> bool:
        """Show or hide the items; True when the colour bar appeared or went."""
        shown = self.shown()
        self.overlay_item.setVisible(shown)
        self.peak_item.setVisible(shown and self.has_peak)
        self.outline_item.setVisible(shown and bool(self.outline_note))
        parent = self.colour_bar.parentWidget()
        visible = self.colour_bar.isVisibleTo(parent) if parent is not None else self.colour_bar.isVisible()
        changed = visible != shown
        self.colour_bar.setVisible(shown)
        return changed
