"""The image canvas: the film at its window/level, zoom/pan/rotate/flip, the heat-map overlay layer and the
measuring tools.

Mouse: wheel = zoom at the cursor, left drag = the current tool (`CanvasTool`: pan, distance ruler,
cardiothoracic ratio; Esc returns to pan), middle drag = pan, right drag = window/level (horizontal: width,
vertical: centre, as in OHIF/cornerstone), double click = fit. Scene coordinates are original image pixels
(pixel (x, y) covers [x, x+1) x [y, y+1)). The view shows mirror^flip o rotate(rotation) o zoom of the scene.
Drawn over the film: the corner text, the colour bar and the loupe (`canvas_overlays`, `canvas_tools`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QFont,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsPixmapItem, QGraphicsScene, QLabel, QWidget

from cxrviewer.gui import backend
from cxrviewer.gui.canvas_geometry import FIT_MARGIN, ZoomableView
from cxrviewer.gui.canvas_input import CanvasInput
from cxrviewer.gui.canvas_overlays import ColourBar, HeatMapLayer, bgra_qimage, gray_qimage, paint_corner_text
from cxrviewer.gui.canvas_tools import CanvasTool
from cxrviewer.report.marks import MeasureLine, ReaderMarks

if TYPE_CHECKING:
    from cxrviewer.imaging.image import Image, WindowPreset

__all__ = ["CanvasTool", "ColourBar", "ImageCanvas", "Window", "bgra_qimage", "gray_qimage"]

BAR_GAP = 12  # pixels between the colour bar and the film or the viewport edge


@dataclass(frozen=True)
class Window:
    """A window (VOI) in modality units; mirrors imaging's WindowPreset."""

    center: float
    width: float
    name: str = ""


class ImageCanvas(ZoomableView):
    """Shows one image with window/level, zoom, pan, rotation, flip, inversion, a heat-map overlay, the
    measuring tools and a magnifier loupe."""

    cursor_info = Signal(object)  # (x, y, value or None) in original pixels, or None off the image
    measurementChanged = Signal(str)  # noqa: N815 (Qt style) the last finished measurement's text; "" when cleared
    tool_changed = Signal(object)  # the new CanvasTool

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageCanvas")
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)

        self._image_item = QGraphicsPixmapItem()
        self._image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._scene.addItem(self._image_item)
        self._heat = HeatMapLayer(self._scene, self.viewport())
        self.colour_bar = self._heat.colour_bar
        self._overlay_item, self._outline_item, self._peak_item = (
            self._heat.overlay_item,
            self._heat.outline_item,
            self._heat.peak_item,
        )
        self._lungs_item = QGraphicsPathItem()
        pen = QPen(QColor(96, 210, 140, 220), 1.6)
        pen.setCosmetic(True)
        self._lungs_item.setPen(pen)
        self._lungs_item.setZValue(4)
        self._lungs_item.hide()
        self._lungs_wanted = False
        self._lung_contours: list[np.ndarray] = []  # what the outline was drawn from (for exports)
        self._scene.addItem(self._lungs_item)
        self.banner = QLabel(self.viewport())
        self.banner.setObjectName("canvasBanner")
        self.banner.setWordWrap(True)
        self.banner.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.banner.hide()

        self._image: Image | None = None
        self._ready_rgb32: np.ndarray | None = None
        self._pixmap_words: np.ndarray | None = None  # pixel memory the image pixmap shares
        self._base_display: np.ndarray | None = None  # at the file's own window
        self._display: np.ndarray | None = None  # what is shown now
        self._default_window: Window | None = None
        self._window: Window | None = None  # None: the file's own VOI
        self._invert = False
        self.annotations: dict[str, list[str]] = {"top_left": [], "top_right": []}
        self._input = CanvasInput(self, self.measurementChanged.emit)

    # --- image --------------------------------------------------------------------------------------------

    @property
    def image(self) -> Image | None:
        return self._image

    def has_image(self) -> bool:
        return self._image is not None

    def set_image(
        self, image: Image, display: np.ndarray, window: WindowPreset | None, *, keep_view: bool = False,
        rgb32: np.ndarray | None = None,
    ) -> None:
        """Show a decoded image; `display` is its rendering at the file's own window (`rgb32`: the same
        already converted by a worker, see `backend.gray_to_rgb32`, which saves the GUI thread a copy).
        Measurements are cleared unless the same image is shown again with `keep_view`."""
        if not (keep_view and image is self._image):
            self.clear_measurements()
            self.set_lung_outline(None)
            self._input.measure.set_image(image, display.shape[1], display.shape[0])
        self._image = image
        self._base_display = display
        self._ready_rgb32 = rgb32
        self._default_window = _window_of(window)
        if not keep_view:
            self._window = None
            self._invert = False
            self._rotation = 0
            self._flip = False
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
        self.clear_measurements()
        self.set_lung_outline(None)
        self._input.magnifier.hide()
        self.annotations = {"top_left": [], "top_right": []}
        self.viewport().update()
        self.view_changed.emit()

    def image_item(self) -> QGraphicsPixmapItem:
        """The film's scene item (for the loupe)."""
        return self._image_item

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
    def _window_preset(window: Window) -> WindowPreset:
        from cxrviewer.imaging.image import WindowPreset

        return WindowPreset(window.center, window.width, window.name)

    # --- window / level -----------------------------------------------------------------------------------

    @property
    def current_window(self) -> Window | None:
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

    def drag_window(self, start: Window, delta: QPointF) -> None:
        """Window/level from a right drag of `delta` screen pixels that began at `start`."""
        step = max(self._default_window.width if self._default_window else 1.0, 1e-3) / 300.0
        self.set_window(start.center + delta.y() * step, max(start.width + delta.x() * step, step), "manual")

    # --- geometry (canvas_geometry) -------------------------------------------------------------------------

    def _content_rect(self) -> QRectF:
        return self._image_item.boundingRect()

    def _fit_reserve(self) -> int:
        """The colour bar gets its own strip on the right, off the film."""
        return self.colour_bar.width() + 2 * BAR_GAP - FIT_MARGIN if self.overlay_shown() else 0

    def reset_view(self) -> None:
        """Space: fit, the file's own window, no inversion, no rotation, no flip."""
        self._window = None
        self._invert = False
        self._rotation = 0
        self._flip = False
        self._render()
        self.fit()

    # --- overlay ------------------------------------------------------------------------------------------

    def set_overlay(self, bgra: np.ndarray, title: str, peak: tuple[float, float] | None = None) -> None:
        """Show a heat map (premultiplied BGRA, any size; stretched over the whole image)."""
        if self._image is None:
            return
        self._heat.set(bgra, title, peak, self._content_rect())
        self.hide_message()
        self._sync_overlay()

    def clear_overlay(self) -> None:
        self._heat.clear()
        self._sync_overlay()

    def set_overlay_visible(self, visible: bool) -> None:
        self._heat.wanted = bool(visible)
        self._sync_overlay()

    def set_overlay_opacity(self, opacity: float) -> None:
        self._heat.set_opacity(opacity)

    @property
    def overlay_opacity(self) -> float:
        return self._heat.opacity

    def overlay_shown(self) -> bool:
        """True when a heat map is on screen (a map is set and the user has not hidden it)."""
        return self._heat.shown()

    def _sync_overlay(self) -> None:
        bar_changed = self._heat.sync()
        self._place_children()
        if bar_changed and self._fit and self._image is not None:
            self.fit()  # make room for the bar beside the film, or take the room back
        self.viewport().update()

    def set_analysed_region(self, rect: tuple[float, float, float, float] | None, note: str = "") -> None:
        """Outline the part of the image the model analysed (x, y, w, h in original pixels).

        Drawn together with the heat map, whose coordinates it frames.
        """
        self._heat.set_region(rect, note)
        self._sync_overlay()

    def analysed_region_shown(self) -> bool:
        return self._outline_item.isVisible()

    def analysed_region(self) -> QRectF | None:
        return self._heat.region()

    # --- lung outline -------------------------------------------------------------------------------------

    def set_lung_outline(self, contours: list[np.ndarray] | None) -> None:
        """The lung fields' outline (N x 2 (x, y) contours in image pixels), drawn when switched on."""
        self._lung_contours = [np.asarray(c) for c in contours or []]
        path = QPainterPath()
        for contour in contours or []:
            pts = np.asarray(contour, dtype=np.float64).reshape(-1, 2) + 0.5  # pixel centres
            if len(pts) < 3:
                continue
            path.moveTo(pts[0, 0], pts[0, 1])
            for x, y in pts[1:]:
                path.lineTo(x, y)
            path.closeSubpath()
        self._lungs_item.setPath(path)
        self._lungs_item.setVisible(self._lungs_wanted and not path.isEmpty())

    def set_lung_outline_visible(self, visible: bool) -> None:
        self._lungs_wanted = visible
        self._lungs_item.setVisible(visible and not self._lungs_item.path().isEmpty())

    def lung_outline_shown(self) -> bool:
        return self._lungs_item.isVisible()

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
        text_room = 4 * self.fontMetrics().height() + 2 * BAR_GAP  # the corner text above and below
        self.colour_bar.fit_height(vp.height() - 2 * text_room)
        self.colour_bar.move(
            vp.right() - self.colour_bar.width() - BAR_GAP,
            max(BAR_GAP, vp.center().y() - self.colour_bar.height() // 2),
        )
        width = min(560, vp.width() - 40)
        self.banner.setFixedWidth(max(width, 100))
        self.banner.adjustSize()
        self.banner.move(vp.center().x() - self.banner.width() // 2, 14)

    # --- events -------------------------------------------------------------------------------------------

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        self._place_children()
        super().resizeEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._input.press(event):
            event.accept()
        else:
            super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        dragging = self._input.move(event)
        self._report_cursor(event.position())
        if dragging:
            event.accept()
        else:
            super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._input.release(event):
            event.accept()
        else:
            super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        # with a measuring tool a quick second click ends the line; with pan a double click fits
        if self._input.tool is not CanvasTool.PAN and self._input.press(event):
            event.accept()
        else:
            super().mouseDoubleClickEvent(event)

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802
        event.accept()  # right button is window/level

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802
        self.cursor_info.emit(None)
        self._input.magnifier.hide()
        super().leaveEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and self._input.wants_key(event):
            event.accept()  # Esc leaves the tool, even where a window shortcut also uses it
            return True
        return super().event(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if self._input.key(event):
            event.accept()
        else:
            super().keyPressEvent(event)

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

    # --- tools and magnifier ------------------------------------------------------------------------------

    def tool(self) -> CanvasTool:
        return self._input.tool

    def set_tool(self, tool: CanvasTool) -> None:
        """What the left button does: pan, measure a distance or the cardiothoracic ratio (Esc: back to pan).
        A line still being drawn is dropped; finished measurements stay until the next image."""
        if self._input.set_tool(CanvasTool(tool)):
            self.tool_changed.emit(self._input.tool)

    def tool_hint(self) -> str:
        """What the current tool expects next ("" for pan)."""
        return self._input.hint()

    def measurements(self) -> list[str]:
        """The labels of the lines drawn now."""
        return self._input.measure.texts()

    def reader_marks(self) -> ReaderMarks:
        """What the reader sees drawn over the film, as plain data for an export: the finished measuring lines
        and, while it is shown, the lung outline (image pixels)."""
        lines = tuple(MeasureLine(kind, start, end, text) for kind, start, end, text in self._input.measure.lines())
        outline = tuple(self._lung_contours) if self.lung_outline_shown() else ()
        return ReaderMarks(lines=lines, lung_outline=outline)

    def clear_measurements(self) -> None:
        if self._input.clear():
            self.measurementChanged.emit("")
        self.viewport().update()

    def magnifier_enabled(self) -> bool:
        return self._input.magnifier_on

    def set_magnifier(self, enabled: bool) -> None:
        """A loupe under the cursor showing the film `Magnifier.ZOOM` times larger than the view."""
        self._input.set_magnifier(enabled)

    # --- corner annotations -------------------------------------------------------------------------------

    def set_annotations(self, top_left: list[str], top_right: list[str]) -> None:
        self.annotations = {"top_left": list(top_left), "top_right": list(top_right)}
        self.viewport().update()

    def annotation_text(self) -> str:
        """All text drawn over the image (for checks)."""
        lines = self.annotations["top_left"] + self.annotations["top_right"] + self._status_lines()
        if self._outline_item.isVisible():
            lines.append(self._heat.outline_note)
        return "\n".join(lines)

    def _status_lines(self) -> list[str]:
        if self._image is None:
            return []
        lines = []
        w = self.current_window
        if w is not None:
            lines.append(f"W {w.width:.0f}  L {w.center:.0f}" + ("  (file)" if self._window is None else ""))
        extra = [f"Zoom {self._zoom:.0%}"]
        if self._rotation:
            extra.append(f"Rot {self._rotation}°")
        if self._flip:
            extra.append("Flipped")
        if self._invert:
            extra.append("Inverted")
        lines.append("  ".join(extra))
        return lines

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:  # noqa: N802
        if self._image is None:
            return
        painter.save()
        painter.resetTransform()
        painter.setFont(QFont(self.font()))
        corners = (self.annotations["top_left"], self.annotations["top_right"], self._status_lines())
        note = f"┅ {self._heat.outline_note}" if self._outline_item.isVisible() else ""
        hint_top = self.banner.geometry().bottom() + 8 if self.banner.isVisible() else 10
        paint_corner_text(painter, self.viewport().rect(), corners, note, self.tool_hint(), hint_top)
        painter.restore()


def _window_of(preset: WindowPreset | None) -> Window | None:
    if preset is None:
        return None
    return Window(float(preset.center), float(preset.width), str(getattr(preset, "name", "") or ""))
