"""The canvas's geometry: a graphics view of one picture with zoom, fit, pan, 90° rotation and a mirror.

The view shows mirror^flip o rotate(rotation) o zoom of the scene: the mirror acts on the screen, after the
rotation, so "rotate clockwise" keeps turning the picture clockwise on screen whether it is mirrored or not.
`ImageCanvas` (image_view) builds on this with the film, window/level, overlays and tools.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QResizeEvent, QTransform, QWheelEvent
from PySide6.QtWidgets import QGraphicsView, QSizePolicy, QWidget

MIN_ZOOM = 0.02
MAX_ZOOM = 40.0
WHEEL_STEP = 1.2
FIT_MARGIN = 8  # pixels left around a fitted picture


class ZoomableView(QGraphicsView):
    """Zoom (wheel at the cursor), fit (double click), pan, rotation and flip of `_content_rect()`."""

    view_changed = Signal()  # window, zoom, rotation, flip or inversion changed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
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
        self._rotation = 0
        self._flip = False
        self._fit = True
        self._zoom = 1.0

    # --- what subclasses provide ---

    def has_image(self) -> bool:
        return False

    def _content_rect(self) -> QRectF:
        """The picture's scene rectangle."""
        return QRectF()

    def _fit_reserve(self) -> int:
        """Pixels on the right that a fitted picture leaves free (e.g. for a colour bar)."""
        return 0

    # --- state ---

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

    def flipped(self) -> bool:
        """True when the view is mirrored left-right (on screen, after the rotation)."""
        return self._flip

    # --- changes ---

    def fit(self) -> None:
        self._fit = True
        rect = self._content_rect()
        if rect.isEmpty():
            return
        rotated = QTransform().rotate(self._rotation).mapRect(rect)
        reserve = self._fit_reserve()
        vw = max(self.viewport().width() - FIT_MARGIN - reserve, 10)
        vh = max(self.viewport().height() - FIT_MARGIN, 10)
        self._zoom = min(vw / rotated.width(), vh / rotated.height())
        self._apply_transform()
        self.centerOn(rect.center())
        if reserve:  # the picture sits in the middle of what is left
            h = self.horizontalScrollBar()
            h.setValue(h.value() + reserve // 2)
        self.view_changed.emit()

    def pan_by(self, delta: QPointF) -> None:
        """Move the picture by `delta` screen pixels (leaves fit mode)."""
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(h.value() - round(delta.x()))
        v.setValue(v.value() - round(delta.y()))
        self._fit = False

    def actual_size(self) -> None:
        """1:1 - one image pixel per screen pixel, centred where the view is centred."""
        self._set_zoom(1.0)

    def zoom_by(self, factor: float) -> None:
        self._set_zoom(self._zoom * factor)

    def _set_zoom(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the view centre (or the viewport point `anchor`) on the same image point."""
        if not self.has_image():
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
        """Rotate what is on screen clockwise by `degrees` (counter-clockwise when negative), flipped or not."""
        # mirror o rot(r) turned by d on screen = rot(d) o mirror o rot(r) = mirror o rot(r - d)
        self._rotation = (self._rotation + (-degrees if self._flip else degrees)) % 360
        self._reorient()

    def flip_horizontal(self) -> None:
        """Mirror what is on screen left-right (again: back)."""
        self._flip = not self._flip
        self._reorient()

    def _reorient(self) -> None:
        if self._fit:
            self.fit()
        else:
            centre = self.mapToScene(self.viewport().rect().center())
            self._apply_transform()
            self.centerOn(centre)
        self.view_changed.emit()

    def _apply_transform(self) -> None:
        mirror = QTransform.fromScale(-1.0 if self._flip else 1.0, 1.0)
        self.setTransform(QTransform().rotate(self._rotation).scale(self._zoom, self._zoom) * mirror)
        self.viewport().update()

    # --- events ---

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        if self._fit and self.has_image():
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        if not self.has_image():
            return
        steps = event.angleDelta().y() / 120.0
        if steps:
            self._set_zoom(self._zoom * WHEEL_STEP**steps, anchor=event.position())
        event.accept()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self.has_image():
            self.fit()
            event.accept()
            return
        super().mouseDoubleClickEvent(event)
