"""The image canvas: the film at its window/level, zoom/pan/rotate, and the heat-map overlay layer.

Mouse: wheel = zoom at the cursor, left or middle drag = pan, right drag = window/level
(horizontal: width, vertical: centre, as in OHIF/cornerstone), double click = fit.
Scene coordinates are original image pixels (pixel (x, y) covers [x, x+1) x [y, y+1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QLinearGradient,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QLabel,
    QSizePolicy,
    QWidget,
)

from cxrviewer.gui import backend
from cxrviewer.model import colormap

MIN_ZOOM = 0.02
MAX_ZOOM = 40.0
WHEEL_STEP = 1.2


@dataclass(frozen=True)
class Window:
    """A window (VOI) in modality units; mirrors imaging's WindowPreset."""

    center: float
    width: float
    name: str = ""


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


class ColourBar(QWidget):
    """Vertical colour bar of the fixed heat-map scale (0-100 % local probability), as drawn."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("colourBar")
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setFixedSize(96, 270)
        self.title = ""
        self.opacity = 0.5

    def set_title(self, title: str) -> None:
        self.title = title
        self.setToolTip(
            f"Heat map of {title}: local probability on a fixed 0-100 % scale "
            f"(the same colours on every image); below {colormap.ALPHA_LOW:.0%} nothing is drawn."
        )
        self.update()

    def paintEvent(self, event: Any) -> None:  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(12, 14, 18, 200))
        p.drawRoundedRect(self.rect(), 6, 6)
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        p.setFont(font)
        fm = p.fontMetrics()
        top, bottom = 10 + 2 * fm.height() + 4, self.height() - 10 - 2 * fm.height() - 4
        bar = QRectF(10, top, 16, bottom - top)
        # The scale exactly as it is drawn: colours with their alpha ramp, over mid-grey.
        p.fillRect(bar, QColor(110, 110, 110))
        grad = QLinearGradient(bar.bottomLeft(), bar.topLeft())
        for i in range(0, 256, 8):
            r, g, b = (int(c) for c in colormap.LUT_RGB[i])
            a = float(colormap.ALPHA[i]) * max(self.opacity, 0.25)
            grad.setColorAt(i / 255, QColor(r, g, b, int(255 * a)))
        r, g, b = (int(c) for c in colormap.LUT_RGB[255])
        grad.setColorAt(1.0, QColor(r, g, b, int(255 * max(self.opacity, 0.25))))
        p.fillRect(bar, grad)
        p.setPen(QPen(QColor(200, 200, 200), 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(bar)
        for value in (0.0, 0.25, 0.5, 0.75, 1.0):
            y = bar.bottom() - value * bar.height()
            p.drawLine(QPointF(bar.right(), y), QPointF(bar.right() + 4, y))
            p.drawText(QPointF(bar.right() + 7, y + fm.ascent() / 2 - 1), f"{value:.0%}")
        p.setPen(QColor(235, 235, 235))
        p.drawText(
            QRectF(4, 6, self.width() - 8, fm.height()),
            Qt.AlignmentFlag.AlignHCenter,
            fm.elidedText(self.title, Qt.TextElideMode.ElideRight, self.width() - 8),
        )
        p.setPen(QColor(170, 175, 185))
        p.drawText(
            QRectF(2, bottom + 4, self.width() - 4, 2 * fm.height()),
            Qt.AlignmentFlag.AlignHCenter,
            "local\nprobability",
        )
        p.end()


class ImageCanvas(QGraphicsView):
    """Shows one image with window/level, zoom, pan, rotation, inversion and a heat-map overlay."""

    cursor_info = Signal(object)  # (x, y, value or None) in original pixels, or None off the image
    view_changed = Signal()  # window, zoom, rotation or inversion changed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageCanvas")
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self.setBackgroundBrush(QColor(0, 0, 0))
        self.setFrameShape(QGraphicsView.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform | QPainter.RenderHint.Antialiasing)
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)

        self._image_item = QGraphicsPixmapItem()
        self._image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._overlay_item = QGraphicsPixmapItem()
        self._overlay_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._overlay_item.setZValue(1)
        self._outline_item = QGraphicsRectItem()
        pen = QPen(QColor(90, 200, 255), 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self._outline_item.setPen(pen)
        self._outline_item.setZValue(2)
        self._outline_note = ""
        self._peak_item = QGraphicsPathItem(_crosshair())
        pen = QPen(QColor(255, 255, 255), 1.5)
        pen.setCosmetic(True)
        self._peak_item.setPen(pen)
        self._peak_item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self._peak_item.setZValue(3)
        for item in (
            self._image_item,
            self._overlay_item,
            self._outline_item,
            self._peak_item,
        ):
            self._scene.addItem(item)
        for item in (self._overlay_item, self._outline_item, self._peak_item):
            item.setVisible(False)

        self.colour_bar = ColourBar(self.viewport())
        self.colour_bar.hide()
        self.banner = QLabel(self.viewport())
        self.banner.setObjectName("canvasBanner")
        self.banner.setWordWrap(True)
        self.banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.banner.hide()

        self._image: Any = None
        self._ready_rgb32: np.ndarray | None = None
        self._pixmap_words: np.ndarray | None = None  # pixel memory the image pixmap shares
        self._base_display: np.ndarray | None = None  # at the file's own window
        self._display: np.ndarray | None = None  # what is shown now
        self._default_window: Window | None = None
        self._window: Window | None = None  # None: the file's own VOI
        self._invert = False
        self._rotation = 0
        self._fit = True
        self._zoom = 1.0
        self._overlay_wanted = True  # the user's heat-map toggle
        self._has_overlay = False
        self._has_peak = False
        self._overlay_opacity = 0.5
        self._drag: tuple[str, QPointF, Window | None] | None = None
        self.annotations: dict[str, list[str]] = {"top_left": [], "top_right": []}

    # --- image --------------------------------------------------------------------------------------------

    @property
    def image(self) -> Any:
        return self._image

    def has_image(self) -> bool:
        return self._image is not None

    def set_image(
        self, image: Any, display: np.ndarray, window: Any, *, keep_view: bool = False, rgb32: np.ndarray | None = None
    ) -> None:
        """Show a decoded image; `display` is its rendering at the file's own window (`rgb32`: the same
        already converted by a worker, see `backend.gray_to_rgb32`, which saves the GUI thread a copy)."""
        self._image = image
        self._base_display = display
        self._ready_rgb32 = rgb32
        self._default_window = _window_of(window)
        if not keep_view:
            self._window = None
            self._invert = False
            self._rotation = 0
            self._fit = True
        self.clear_overlay()
        self._render()
        rect = QRectF(0, 0, display.shape[1], display.shape[0])
        margin = max(rect.width(), rect.height()) * 2
        self._scene.setSceneRect(rect.adjusted(-margin, -margin, margin, margin))
        if self._fit:
            self.fit()
        else:
            self._apply_transform()
        self.view_changed.emit()

    def clear(self) -> None:
        self._image = None
        self._base_display = self._display = None
        self._image_item.setPixmap(QPixmap())
        self._pixmap_words = self._ready_rgb32 = None
        self.clear_overlay()
        self.annotations = {"top_left": [], "top_right": []}
        self.viewport().update()
        self.view_changed.emit()

    def display_array(self) -> np.ndarray | None:
        """The 8-bit image currently shown (after window/level and inversion), for checks and exports."""
        return self._display

    def _render(self) -> None:
        if self._image is None or self._base_display is None:
            return
        if self._window is None and not self._invert:
            arr = self._base_display
        elif self._window is None:
            arr = 255 - self._base_display
        else:
            arr = backend.to_display(self._image, self._window_preset(self._window), self._invert)
        self._display = np.ascontiguousarray(arr, dtype=np.uint8)
        rgb32 = self._ready_rgb32 if arr is self._base_display and self._ready_rgb32 is not None else None
        if rgb32 is None:
            rgb32 = backend.gray_to_rgb32(self._display)
        h, w = self._display.shape
        # The pixmap shares the words of `rgb32` (no conversion, no copy): keep them alive with it.
        qimage = QImage(rgb32.data, w, h, rgb32.strides[0], QImage.Format.Format_RGB32)
        self._image_item.setPixmap(QPixmap.fromImage(qimage))
        self._pixmap_words = rgb32
        self.viewport().update()

    @staticmethod
    def _window_preset(window: Window) -> Any:
        from cxrviewer.imaging.image import WindowPreset

        return WindowPreset(window.center, window.width, window.name)

    # --- window / level -----------------------------------------------------------------------------------

    @property
    def window(self) -> Window | None:
        """The window in use (the file's default when the user has not changed it)."""
        return self._window or self._default_window

    @property
    def user_window(self) -> Window | None:
        """The window the user chose (None while the file's own VOI is in use)."""
        return self._window

    @property
    def inverted(self) -> bool:
        return self._invert

    def set_window(self, center: float, width: float, name: str = "") -> None:
        if self._image is None:
            return
        self._window = Window(float(center), max(float(width), 1e-3), name)
        self._render()
        self.view_changed.emit()

    def reset_window(self) -> None:
        self._window = None
        self._render()
        self.view_changed.emit()

    def set_inverted(self, inverted: bool) -> None:
        self._invert = bool(inverted)
        self._render()
        self.view_changed.emit()

    def toggle_invert(self) -> None:
        self.set_inverted(not self._invert)

    # --- zoom / pan / rotate ------------------------------------------------------------------------------

    @property
    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return self._zoom

    @property
    def rotation(self) -> int:
        return self._rotation

    @property
    def fit_mode(self) -> bool:
        return self._fit

    def _image_rect(self) -> QRectF:
        return self._image_item.boundingRect()

    def fit(self) -> None:
        self._fit = True
        rect = self._image_rect()
        if rect.isEmpty():
            return
        rotated = QTransform().rotate(self._rotation).mapRect(rect)
        vw, vh = max(self.viewport().width() - 8, 10), max(self.viewport().height() - 8, 10)
        self._zoom = min(vw / rotated.width(), vh / rotated.height())
        self._apply_transform()
        self.centerOn(rect.center())
        self.view_changed.emit()

    def actual_size(self) -> None:
        """1:1 - one image pixel per screen pixel, centred where the view is centred."""
        self._set_zoom(1.0)

    def zoom_by(self, factor: float) -> None:
        self._set_zoom(self._zoom * factor)

    def _set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the view centre (or the viewport point `anchor`) on the same image point."""
        if self._image is None:
            return
        at = anchor if anchor is not None else QPointF(self.viewport().rect().center())
        scene_point = self.mapToScene(at.toPoint())
        self._fit = False
        self._zoom = float(np.clip(zoom, MIN_ZOOM, MAX_ZOOM))
        self._apply_transform()
        moved = self.mapFromScene(scene_point) - at.toPoint()
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(h.value() + moved.x())
        v.setValue(v.value() + moved.y())
        self.view_changed.emit()

    def rotate_by(self, degrees: int) -> None:
        self._rotation = (self._rotation + degrees) % 360
        if self._fit:
            self.fit()
        else:
            centre = self.mapToScene(self.viewport().rect().center())
            self._apply_transform()
            self.centerOn(centre)
        self.view_changed.emit()

    def _apply_transform(self) -> None:
        self.setTransform(QTransform().rotate(self._rotation).scale(self._zoom, self._zoom))
        self.viewport().update()

    def reset_view(self) -> None:
        """Space: fit, the file's own window, no inversion, no rotation."""
        self._window = None
        self._invert = False
        self._rotation = 0
        self._render()
        self.fit()

    # --- overlay ------------------------------------------------------------------------------------------

    def set_overlay(self, bgra: np.ndarray, title: str, peak: tuple[float, float] | None = None) -> None:
        """Show a heat map (premultiplied BGRA, any size; stretched over the whole image)."""
        if self._image is None:
            return
        pixmap = QPixmap.fromImage(bgra_qimage(bgra))
        rect = self._image_rect()
        self._overlay_item.setPixmap(pixmap)
        self._overlay_item.setTransform(
            QTransform.fromScale(rect.width() / pixmap.width(), rect.height() / pixmap.height())
        )
        self._overlay_item.setOpacity(self._overlay_opacity)
        self._has_overlay = True
        self.colour_bar.set_title(title)
        self._has_peak = peak is not None
        if peak is not None:
            self._peak_item.setPos(QPointF(peak[0] + 0.5, peak[1] + 0.5))
        self.hide_message()
        self._sync_overlay()

    def clear_overlay(self) -> None:
        self._has_overlay = False
        self._has_peak = False
        self._overlay_item.setPixmap(QPixmap())
        self._sync_overlay()

    def set_overlay_visible(self, visible: bool) -> None:
        self._overlay_wanted = bool(visible)
        self._sync_overlay()

    def set_overlay_opacity(self, opacity: float) -> None:
        self._overlay_opacity = float(np.clip(opacity, 0.0, 1.0))
        self._overlay_item.setOpacity(self._overlay_opacity)
        self.colour_bar.opacity = self._overlay_opacity
        self.colour_bar.update()

    @property
    def overlay_opacity(self) -> float:
        return self._overlay_opacity

    def overlay_shown(self) -> bool:
        """True when a heat map is on screen (a map is set and the user has not hidden it)."""
        return self._has_overlay and self._overlay_wanted

    def _sync_overlay(self) -> None:
        shown = self.overlay_shown()
        self._overlay_item.setVisible(shown)
        self._peak_item.setVisible(shown and self._has_peak)
        self._outline_item.setVisible(shown and bool(self._outline_note))
        self.colour_bar.setVisible(shown)
        self._place_children()
        self.viewport().update()

    def set_analysed_region(self, rect: tuple[float, float, float, float] | None, note: str = "") -> None:
        """Outline the part of the image the model analysed (x, y, w, h in original pixels).

        Drawn together with the heat map, whose coordinates it frames.
        """
        self._outline_note = "" if rect is None else (note or "analysed region")
        if rect is not None:
            self._outline_item.setRect(QRectF(*rect))
        self._sync_overlay()

    def analysed_region_shown(self) -> bool:
        return self._outline_item.isVisible()

    def analysed_region(self) -> QRectF | None:
        return self._outline_item.rect() if self._outline_note else None

    # --- messages -----------------------------------------------------------------------------------------

    def show_message(self, text: str) -> None:
        self.banner.setText(text)
        self.banner.adjustSize()
        self.banner.show()
        self._place_children()

    def hide_message(self) -> None:
        self.banner.hide()

    def message(self) -> str:
        return self.banner.text() if self.banner.isVisible() else ""

    def _place_children(self) -> None:
        vp = self.viewport().rect()
        self.colour_bar.move(
            vp.right() - self.colour_bar.width() - 12,
            max(12, vp.center().y() - self.colour_bar.height() // 2),
        )
        width = min(560, vp.width() - 40)
        self.banner.setFixedWidth(max(width, 100))
        self.banner.adjustSize()
        self.banner.move(vp.center().x() - self.banner.width() // 2, 14)

    # --- events -------------------------------------------------------------------------------------------

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._place_children()
        if self._fit and self._image is not None:
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        if self._image is None:
            return
        steps = event.angleDelta().y() / 120.0
        if steps:
            self._set_zoom(self._zoom * WHEEL_STEP**steps, anchor=event.position())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._image is None:
            return super().mousePressEvent(event)
        button = event.button()
        if button == Qt.MouseButton.RightButton:
            self._drag = ("wl", event.position(), self.window)
            self.viewport().setCursor(Qt.CursorShape.SizeAllCursor)
            event.accept()
            return
        if button in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            self._drag = ("pan", event.position(), None)
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        pos = event.position()
        if self._drag is not None:
            kind, start, start_window = self._drag
            delta = pos - start
            if kind == "pan":
                self._drag = (kind, pos, None)
                h, v = self.horizontalScrollBar(), self.verticalScrollBar()
                h.setValue(h.value() - round(delta.x()))
                v.setValue(v.value() - round(delta.y()))
                if self._fit:
                    self._fit = False
            elif start_window is not None:
                sensitivity = max(self._default_window.width if self._default_window else 1.0, 1e-3) / 300.0
                width = max(start_window.width + delta.x() * sensitivity, sensitivity)
                centre = start_window.center + delta.y() * sensitivity
                self.set_window(centre, width, "manual")
            event.accept()
        self._report_cursor(pos)
        if self._drag is None:
            super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._drag is not None:
            self._drag = None
            self.viewport().unsetCursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self._image is not None:
            self.fit()
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def contextMenuEvent(self, event: Any) -> None:  # noqa: N802
        event.accept()  # right button is window/level

    def leaveEvent(self, event: Any) -> None:  # noqa: N802
        self.cursor_info.emit(None)
        super().leaveEvent(event)

    def _report_cursor(self, pos: QPointF) -> None:
        if self._image is None or self._display is None:
            return
        scene = self.mapToScene(pos.toPoint())
        x, y = math.floor(scene.x()), math.floor(scene.y())
        h, w = self._display.shape
        if 0 <= x < w and 0 <= y < h:
            self.cursor_info.emit((x, y, backend.pixel_value(self._image, x, y)))
        else:
            self.cursor_info.emit(None)

    # --- corner annotations -------------------------------------------------------------------------------

    def set_annotations(self, top_left: list[str], top_right: list[str]) -> None:
        self.annotations = {"top_left": list(top_left), "top_right": list(top_right)}
        self.viewport().update()

    def annotation_text(self) -> str:
        """All text drawn over the image (for checks)."""
        lines = self.annotations["top_left"] + self.annotations["top_right"] + self._status_lines()
        if self._outline_item.isVisible():
            lines.append(self._outline_note)
        return "\n".join(lines)

    def _status_lines(self) -> list[str]:
        if self._image is None:
            return []
        lines = []
        w = self.window
        if w is not None:
            lines.append(f"W {w.width:.0f}  L {w.center:.0f}" + ("  (file)" if self._window is None else ""))
        extra = [f"Zoom {self._zoom:.0%}"]
        if self._rotation:
            extra.append(f"Rot {self._rotation}°")
        if self._invert:
            extra.append("Inverted")
        lines.append("  ".join(extra))
        return lines

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:  # noqa: N802
        if self._image is None:
            return
        painter.save()
        painter.resetTransform()
        font = QFont(self.font())
        painter.setFont(font)
        fm = painter.fontMetrics()
        vp = self.viewport().rect()
        line = fm.height()

        def draw(lines: list[str], x: int, y: int, align_right: bool, up: bool) -> None:
            for i, text in enumerate(lines):
                yy = y - (len(lines) - 1 - i) * line if up else y + i * line
                xx = x - fm.horizontalAdvance(text) if align_right else x
                painter.setPen(QColor(0, 0, 0, 200))
                painter.drawText(xx + 1, yy + 1, text)
                painter.setPen(QColor(225, 228, 232))
                painter.drawText(xx, yy, text)

        top = 10 + fm.ascent()
        draw(self.annotations["top_left"], 10, top, False, False)
        draw(self.annotations["top_right"], vp.right() - 10, top, True, False)
        draw(self._status_lines(), 10, vp.bottom() - 10 - fm.descent(), False, True)
        if self._outline_item.isVisible():
            note = f"┅ {self._outline_note}"
            x = vp.right() - 10 - fm.horizontalAdvance(note)
            y = vp.bottom() - 10 - fm.descent()
            painter.setPen(QColor(0, 0, 0, 200))
            painter.drawText(x + 1, y + 1, note)
            painter.setPen(QColor(90, 200, 255))
            painter.drawText(x, y, note)
        painter.restore()


def _window_of(preset: Any) -> Window | None:
    if preset is None:
        return None
    return Window(float(preset.center), float(preset.width), str(getattr(preset, "name", "") or ""))


def _crosshair() -> QPainterPath:
    path = QPainterPath()
    path.addEllipse(QPointF(0, 0), 9, 9)
    for a, b in (((-15, 0), (-5, 0)), ((5, 0), (15, 0)), ((0, -15), (0, -5)), ((0, 5), (0, 15))):
        path.moveTo(*a)
        path.lineTo(*b)
    return path
