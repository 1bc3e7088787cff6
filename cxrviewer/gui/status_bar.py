"""The status bar's permanent parts: cursor readout, queue progress, PACS, model, notice.

They stay narrow (texts elided, full text in the tooltip; the cursor readout only while the cursor is
over the image; window/level and zoom are in the canvas's corner, not repeated here) so that messages
on the left are read in full, also in a 1024 px wide window. The model's name gets a share of the bar's
width (`MODEL_STATUS_SHARE`, at least `MODEL_STATUS_WIDTH`): in full on a usual screen, elided only when narrow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from cxrviewer.gui import backend
from cxrviewer.gui.welcome import NOTICE
from cxrviewer.model.card import MODIFIED_CARD

if TYPE_CHECKING:
    from cxrviewer.model.inference import Engine

MODEL_STATUS_WIDTH = 160  # px, the least the model's name gets
MODEL_STATUS_SHARE = 0.35  # of the status bar's width, the most it gets


class ElidedLabel(QLabel):
    """A label that shows as much of its text as fits in `max_width` pixels, the whole in its tooltip."""

    def __init__(self, text: str = "", max_width: int = MODEL_STATUS_WIDTH) -> None:
        super().__init__()
        self._full = ""
        self._max = max_width
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 (Qt API)
        self._full = text
        shown = self.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, self._max)
        super().setText(shown)
        if shown != text and not self.toolTip():
            self.setToolTip(text)

    def set_max_width(self, max_width: int) -> None:
        if max_width != self._max:
            self._max = max_width
            self.setText(self._full)

    def full_text(self) -> str:
        return self._full


class StatusBar:
    def __init__(self, bar: QStatusBar) -> None:
        self.bar = bar
        self.pixel_label = QLabel("")
        self.pixel_label.setObjectName("pixelLabel")
        self.pixel_label.setToolTip("Position under the cursor (image pixels) = the pixel's stored value")
        self.pixel_label.hide()
        self.progress = QProgressBar()
        self.progress.setObjectName("queueProgress")
        self.progress.setFormat("Analysing %v / %m")
        self.progress.setMaximumWidth(170)
        self.progress.hide()
        self.pacs_status = ElidedLabel("", 260)
        self.pacs_status.setObjectName("pacsStatus")
        self.pacs_status.hide()
        self.model_status = ElidedLabel("Model: loading…")
        self.model_status.setObjectName("modelStatus")
        self.notice = QLabel(NOTICE)
        self.notice.setObjectName("notice")
        self.notice.setToolTip(
            "cxrviewer is a research and education tool. Its findings are a second opinion "
            "for a qualified reader, never a diagnosis."
        )
        for w in (self.pixel_label, self.progress, self.pacs_status, self.model_status, self.notice):
            bar.addPermanentWidget(w)
        self._resized = _ResizeFilter(bar, self._fit_model_status)
        bar.installEventFilter(self._resized)

    def _fit_model_status(self, width: int) -> None:
        self.model_status.set_max_width(max(MODEL_STATUS_WIDTH, int(width * MODEL_STATUS_SHARE)))

    def show_cursor(self, info: tuple[int, int, float | None] | None) -> None:
        if info is None:
            self.pixel_label.setText("")
            self.pixel_label.hide()
            return
        x, y, value = info
        text = f"x {x}  y {y}"
        if value is not None:
            text += f"  = {value:g}"
        self.pixel_label.setText(text)
        self.pixel_label.show()

    def show_progress(self, done: int, total: int) -> None:
        if total > 1:
            self.progress.setMaximum(total)
            self.progress.setValue(done)
            self.progress.show()
        else:
            self.progress.hide()

    def model_ready(self, engine: Engine) -> None:
        warning = backend.card_warning(engine)
        self.model_status.setToolTip(
            f"{engine.name}: {len(engine.labels)} findings. Help ▸ Model card for its validation results."
            + (f"\n{warning}" if warning else "")
        )
        self.model_status.setText(f"⚠ {MODIFIED_CARD}: {engine.name}" if warning else f"Model: {engine.name}")

    def model_failed(self, text: str) -> None:
        self.model_status.setToolTip(text)
        self.model_status.setText("No model")

    def show_pacs(self, text: str) -> None:
        self.pacs_status.setToolTip(f"PACS: {text}")
        self.pacs_status.setText(f"PACS: {text}")
        self.pacs_status.setVisible(True)


class _ResizeFilter(QObject):
    """Calls `on_width(width)` whenever the watched widget is resized."""

    def __init__(self, parent: QObject, on_width: Callable[[int], None]) -> None:
        super().__init__(parent)
        self._on_width = on_width

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        if event.type() == QEvent.Type.Resize and isinstance(watched, QWidget):
            self._on_width(watched.width())
        return False
