"""The status bar's permanent parts: cursor readout, queue progress, PACS, model, notice.

They stay narrow (texts elided, full text in the tooltip; the cursor readout only while the cursor is
over the image; window/level and zoom are in the canvas's corner, not repeated here) so that messages
on the left are read in full, also in a 1024 px wide window.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar

from cxrviewer.gui import backend
from cxrviewer.gui.welcome import NOTICE
from cxrviewer.model.card import MODIFIED_CARD

MODEL_STATUS_WIDTH = 160


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

    def show_cursor(self, info: Any) -> None:
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

    def model_ready(self, engine: Any) -> None:
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
