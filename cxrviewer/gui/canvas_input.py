"""Mouse and keyboard on the image canvas: pan, window/level, the measuring tools, Esc and the loupe.

Left drag does what the current `CanvasTool` says (pan, ruler, cardiothoracic ratio); middle drag always pans
and right drag always sets window/level. A measuring line is dragged from end to end, or made by two clicks.
Esc drops a line being drawn and returns to pan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QCursor, QKeyEvent, QMouseEvent, QTransform
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsScene, QWidget

from cxrviewer.gui.canvas_tools import CanvasTool, Magnifier, MeasureLayer

if TYPE_CHECKING:
    from cxrviewer.gui.image_view import Window


class Canvas(Protocol):
    """What `CanvasInput` drives on its canvas (`image_view.ImageCanvas`): the view's Qt surface, its film, its
    window/level and pan, and its tool (the canvas owns the tool buttons' state)."""

    def viewport(self) -> QWidget: ...
    def scene(self) -> QGraphicsScene: ...
    def mapToScene(self, point: QPoint, /) -> QPointF: ...  # noqa: N802  (Qt's name)
    def transform(self) -> QTransform: ...
    def has_image(self) -> bool: ...
    def image_item(self) -> QGraphicsPixmapItem: ...
    @property
    def current_window(self) -> Window | None: ...
    def drag_window(self, start: Window, delta: QPointF) -> None: ...
    def pan_by(self, delta: QPointF) -> None: ...
    def set_tool(self, tool: CanvasTool) -> None: ...


class CanvasInput:
    """The gesture state of one canvas (`Canvas`), which forwards its mouse and key events here."""

    CLICK = 4  # a press and release closer than this (screen pixels, |dx| + |dy|) is a click

    def __init__(self, canvas: Canvas, on_result: Callable[[str], None]) -> None:
        self.canvas = canvas
        self.tool = CanvasTool.PAN
        self.measure = MeasureLayer(canvas.scene(), on_result)
        self.magnifier = Magnifier(canvas.viewport())
        self.magnifier_on = False
        self._drag: tuple[str, QPointF, Window | None] | None = None  # (pan | wl | measure | close, last point, window)

    # --- tool ---

    def set_tool(self, tool: CanvasTool) -> bool:
        """Choose the tool (a line still being drawn is dropped); True when it changed."""
        self.measure.cancel()
        if self._drag is not None and self._drag[0] in ("measure", "close"):
            self._drag = None
        changed, self.tool = tool is not self.tool, tool
        self.apply_cursor()
        self.canvas.viewport().update()
        return changed

    def apply_cursor(self) -> None:
        if self.tool is CanvasTool.PAN:
            self.canvas.viewport().unsetCursor()
        else:
            self.canvas.viewport().setCursor(Qt.CursorShape.CrossCursor)

    def hint(self) -> str:
        return self.measure.hint(self.tool) if self.tool is not CanvasTool.PAN else ""

    def clear(self) -> bool:
        """Remove every measurement; True when there was one to remove."""
        had = bool(self.measure.last_text or self.measure.texts() or self.measure.busy())
        self.measure.clear()
        if self._drag is not None and self._drag[0] in ("measure", "close"):
            self._drag = None
        return had

    # --- mouse ---

    def _scene(self, pos: QPointF) -> QPointF:
        return self.canvas.mapToScene(pos.toPoint())

    def press(self, event: QMouseEvent) -> bool:
        """True when the press starts a gesture."""
        canvas = self.canvas
        if not canvas.has_image():
            return False
        button, pos = event.button(), event.position()
        if button == Qt.MouseButton.LeftButton and self.tool is not CanvasTool.PAN:
            if self.measure.following:  # the second click of a click-click line
                self.measure.commit(self._scene(pos))
                self._drag = ("close", pos, None)
            else:
                self.measure.begin(self.tool, self._scene(pos))
                self._drag = ("measure", pos, None)
            canvas.viewport().update()
        elif button == Qt.MouseButton.RightButton:
            self._drag = ("wl", pos, canvas.current_window)
            canvas.viewport().setCursor(Qt.CursorShape.SizeAllCursor)
        elif button in (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton):
            self._drag = ("pan", pos, None)
            canvas.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        else:
            return False
        return True

    def move(self, event: QMouseEvent) -> bool:
        """True while a gesture owns the mouse."""
        pos = event.position()
        kind, start, window = self._drag if self._drag is not None else ("", pos, None)
        if kind == "pan":
            self._drag = (kind, pos, None)
            self.canvas.pan_by(pos - start)
        elif kind == "wl" and window is not None:
            self.canvas.drag_window(window, pos - start)
        elif kind == "measure" or (not kind and self.measure.following):
            self.measure.move(self._scene(pos))
        self.update_magnifier(pos)
        return bool(kind)

    def release(self, event: QMouseEvent) -> bool:
        """True when the release ends a gesture."""
        if self._drag is None:
            return False
        kind, start, _ = self._drag
        self._drag = None
        if kind == "measure":
            pos = event.position()
            moved = pos - start
            if abs(moved.x()) + abs(moved.y()) < self.CLICK:
                self.measure.follow()  # a click: the line ends at the next click
            else:
                self.measure.commit(self._scene(pos))
            self.canvas.viewport().update()
        self.apply_cursor()
        return True

    # --- keyboard ---

    def wants_key(self, event: QEvent) -> bool:
        """Esc belongs to the canvas while a tool is chosen, even where a window shortcut also uses it."""
        return (
            isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Escape
            and (self.tool is not CanvasTool.PAN or self.measure.busy())
        )

    def key(self, event: QKeyEvent) -> bool:
        if not self.wants_key(event):
            return False
        self.canvas.set_tool(CanvasTool.PAN)
        return True

    # --- loupe ---

    def set_magnifier(self, enabled: bool) -> None:
        self.magnifier_on = bool(enabled)
        if self.magnifier_on:
            self.update_magnifier(QPointF(self.canvas.viewport().mapFromGlobal(QCursor.pos())))
        else:
            self.magnifier.hide()

    def update_magnifier(self, pos: QPointF) -> None:
        if not self.magnifier_on:
            return
        scene, item = self._scene(pos), self.canvas.image_item()
        pixmap = item.pixmap()
        inside = self.canvas.viewport().rect().contains(pos.toPoint()) and item.boundingRect().contains(scene)
        if pixmap.isNull() or not inside:
            self.magnifier.hide()
        else:
            self.magnifier.show_at(pos, scene, pixmap, self.canvas.transform())
