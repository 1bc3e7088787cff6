"""Exports of the displayed study (PNG, PDF, JSON, DICOM SR, Secondary Capture), with their messages."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QStatusBar, QWidget

from cxrviewer.gui import backend
from cxrviewer.gui.records import State, scrub
from cxrviewer.model.site import operating_points_entry

if TYPE_CHECKING:
    from cxrviewer.gui.caches import ImageCache
    from cxrviewer.gui.image_view import ImageCanvas
    from cxrviewer.gui.records import StudyRecord
    from cxrviewer.gui.settings import AppSettings
    from cxrviewer.gui.viewer_state import ViewerState
    from cxrviewer.gui.worklist import Worklist
    from cxrviewer.imaging.image import WindowPreset
    from cxrviewer.model.inference import Engine

log = logging.getLogger(__name__)

FORMAT_NAMES = {"png": "PNG", "pdf": "PDF", "json": "JSON", "sr": "DICOM SR", "sc": "Secondary Capture"}


def exports_available() -> bool:
    return importlib.util.find_spec("cxrviewer.report.export") is not None


def summary(written: list[Path], folder: Path, skipped: set[str]) -> str:
    """The status-bar line after an export: what was written and which formats did not apply."""
    text = f"Exported {len(written)} file{'s' if len(written) != 1 else ''} to {folder}"
    if skipped:
        names = " and ".join(FORMAT_NAMES.get(f, f) for f in sorted(skipped, key=list(FORMAT_NAMES).index))
        text += f"; {names} skipped: they need a DICOM study"
    return text


class StudyExporter:
    """Exports the study the viewer displays, as it is displayed (window/level, inversion, heat map, the
    reader's measuring lines and the lung outline when shown).

    What it reads and drives is handed in: the `ViewerState` (displayed study, image and finding, whether
    identifiers are hidden: then exports are anonymised), the worklist, the decoded-image cache, the canvas
    (what is shown), the settings (the last export folder), `engine()` (the loaded model, None without one),
    the status bar for its messages and the parent widget of its dialogs.
    """

    def __init__(self, state: ViewerState, worklist: Worklist, images: ImageCache, canvas: ImageCanvas,
                 settings: AppSettings, engine: Callable[[], Engine | None], status: QStatusBar,
                 parent: QWidget) -> None:
        self.state = state
        self.worklist = worklist
        self.images = images
        self.canvas = canvas
        self.settings = settings
        self.engine = engine
        self.status = status
        self.parent = parent

    def _status(self, text: str, ms: int = 8000) -> None:
        self.status.showMessage(text, ms)

    def _study(self) -> StudyRecord | None:
        return self.worklist.study(self.state.displayed_study)

    def dialog(self, formats: set[str] | frozenset[str] | None) -> None:
        """Ask for a folder (the last export folder, else the user's documents) and export there."""
        if self._study() is None:
            self._status("Select a study to export.", 5000)
            return
        anonymise = self.state.hide_identifiers
        title = "Export to folder" + (" (anonymised: identifiers are hidden)" if anonymise else "")
        folder = QFileDialog.getExistingDirectory(self.parent, title, self.settings.export_folder)
        if folder:
            self.export(Path(folder), formats, anonymise)

    def export(self, folder: Path, formats: set[str] | frozenset[str] | None = None,
               anonymise: bool | None = None) -> list[Path]:
        """Write the displayed study in `formats` (all that apply by default) to `folder`; `anonymise`
        defaults to the state's hide-identifiers flag. Returns the files written."""
        study = self._study()
        if study is None:
            return []
        if not exports_available():
            self._status("Exports are not available in this installation.")
            return []
        from cxrviewer.report import export as exporter

        anonymise = self.state.hide_identifiers if anonymise is None else anonymise
        canvas = self.canvas
        images, predictions, windows, displays, marks = [], [], [], [], []
        for rec in study.images:
            if rec.state == State.ERROR:
                continue
            decoded = self.images.peek(rec.key)
            try:
                image = decoded.image if decoded is not None else backend.load(rec.path)
            except backend.model_errors() as exc:
                self._status(f"Export skipped an image: {scrub(str(exc), study, anonymise)}")
                continue
            images.append(image)
            predictions.append(rec.prediction)
            shown = rec.key == self.state.displayed_image
            windows.append(self._shown_window() if shown else None)
            displays.append(canvas.display_array() if shown else None)
            marks.append(canvas.reader_marks() if shown else None)  # measuring lines, lung outline
        if not images:
            self._status("Nothing to export: no image of this study could be opened.")
            return []
        requested = set(formats) if formats else set(exporter.FORMATS)
        chosen = set(exporter.applicable_formats(images, requested))
        skipped = requested - chosen
        if not chosen:
            self._status(summary([], folder, skipped))
            return []
        engine = self.engine()
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            written = exporter.export_study(
                images, predictions, getattr(engine, "card", None), folder, chosen, anonymise, windows,
                self.state.selected_label, invert=canvas.inverted, displays=displays, alpha=canvas.overlay_opacity,
                annotations=marks, operating_points=operating_points_entry(engine) if engine else None,
            )
        except Exception as exc:  # ExportError (plain message) or anything unexpected
            QApplication.restoreOverrideCursor()
            expected = type(exc).__name__ == "ExportError"
            if not expected:
                log.exception("export failed")
            message = str(exc) if expected else f"export failed ({type(exc).__name__})"
            QMessageBox.warning(self.parent, "Export", scrub(message, study, anonymise))
            return []
        QApplication.restoreOverrideCursor()
        self.settings.export_folder = folder
        self._status(summary(written, folder, skipped), 10000)
        return written

    def _shown_window(self) -> WindowPreset | None:
        window = self.canvas.user_window
        if window is None:  # the file's own VOI
            return None
        from cxrviewer.imaging.image import WindowPreset

        return WindowPreset(window.center, window.width, window.name)
