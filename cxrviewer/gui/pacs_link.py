"""The main window's side of PACS: start the node when configured, the Preferences dialog, open what
arrives, send results (by hand or after each analysis) and report in the status bar.

`cxrviewer.gui.pacs` (pynetdicom) is imported only once the user has configured PACS or opens its
dialog, so a plain viewer start never loads the network stack.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from cxrviewer.gui import backend
from cxrviewer.gui.records import State, StudyRecord, scrub
from cxrviewer.gui.worklist import Worklist

if TYPE_CHECKING:
    from cxrviewer.gui.caches import ImageCache
    from cxrviewer.gui.pacs import PacsController, PacsPreferencesDialog, PacsSettings
    from cxrviewer.gui.settings import AppSettings
    from cxrviewer.gui.status_bar import StatusBar
    from cxrviewer.gui.viewer_state import ViewerState
    from cxrviewer.model.inference import Engine


class OpenPaths(Protocol):
    """The window's `open_paths` (`Intake.open_paths`)."""

    def __call__(self, paths: Sequence[Path | str], remember: bool = ..., show: bool = ...) -> object: ...


def _pacs_module() -> ModuleType:
    import cxrviewer.gui.pacs as pacs

    return pacs


class PacsLink:
    """The viewer's PACS node and sends. Handed in: the `ViewerState` (identifiers hidden in its messages), the
    decoded-image cache, the settings (PACS section), `engine()` (the loaded model), the status bar (messages and
    the PACS indicator), the parent of its dialog and node, and the window's calls it makes: `open_paths` (for
    what arrives), `refresh_actions` (after the configuration changed) and `closing()`."""

    def __init__(self, state: ViewerState, images: ImageCache, settings: AppSettings,
                 engine: Callable[[], Engine | None], status: StatusBar, parent: QWidget, *, open_paths: OpenPaths,
                 refresh_actions: Callable[[], None], closing: Callable[[], bool]) -> None:
        self.state = state
        self.images = images
        self.settings = settings
        self.engine = engine
        self.status = status
        self.parent = parent
        self.open_paths = open_paths
        self.refresh_actions = refresh_actions
        self.closing = closing
        self.controller: PacsController | None = None  # created on first use
        self._sent: set[str] = set()  # study keys whose results went out automatically

    def _message(self, text: str, ms: int = 10000) -> None:
        self.status.bar.showMessage(text, ms)

    def configured(self) -> bool:
        q = self.settings.q
        enabled = str(q.value("pacs/enabled", "false")).strip().lower() in {"1", "true", "yes", "on"}
        return enabled or bool(str(q.value("pacs/remote_host", "") or "").strip())

    def has_remote(self) -> bool:
        return self.controller is not None and self.controller.settings.config.remote is not None

    def start_if_configured(self) -> None:
        if not self.closing() and self.configured():
            self.ensure()

    def ensure(self) -> PacsController:
        """The PACS controller, created on first use with the stored settings."""
        if self.controller is not None:
            return self.controller
        module = _pacs_module()
        controller: PacsController = module.PacsController(self.parent)
        controller.received.connect(self._on_received)
        controller.refused.connect(lambda text: self._message(f"PACS: refused {text}"))
        controller.state_changed.connect(self.status.show_pacs)
        controller.send_finished.connect(lambda report: self._message(f"PACS: {report.summary()}", 15000))
        controller.send_failed.connect(lambda text: self._message(f"PACS: {text}", 15000))
        self.controller = controller
        controller.apply(module.load_pacs_settings(self.settings.q))
        self.refresh_actions()
        return controller

    def show_preferences(self) -> PacsPreferencesDialog:
        module = _pacs_module()
        dialog: PacsPreferencesDialog = module.PacsPreferencesDialog(module.load_pacs_settings(self.settings.q),
                                                                     self.parent)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.apply(dialog.result_settings()))
        dialog.open()
        return dialog

    def apply(self, settings: PacsSettings) -> None:
        _pacs_module().save_pacs_settings(self.settings.q, settings)
        self.ensure().apply(settings)
        self.refresh_actions()

    def _on_received(self, path: str) -> None:
        if not self.closing():
            self.open_paths([Path(path)], remember=False, show=False)  # never takes the reader's film away

    def send(self, study: StudyRecord) -> bool:
        """Send the SR + Secondary Capture of a study's analysed images."""
        controller = self.ensure()
        done = [img for img in study.images if img.prediction is not None and img.state == State.DONE]
        if not done:
            self._message("PACS: nothing to send (no analysed image in this study).", 8000)
            return False
        images = []
        for rec in done:
            decoded = self.images.peek(rec.key)
            try:
                images.append(decoded.image if decoded is not None else backend.load(rec.path))
            except backend.model_errors() as exc:
                self._message(f"PACS: {scrub(str(exc), study, self.state.hide_identifiers)}")
                return False
        controller.send_study(images, [rec.prediction for rec in done], getattr(self.engine(), "card", None))
        self._sent.add(study.key)
        self._message("PACS: sending the results…", 8000)
        return True

    def maybe_auto_send(self, study: StudyRecord) -> None:
        """After an analysis: send the study once all its images are through, when the user asked for it."""
        controller = self.controller
        if controller is None or not controller.auto_send or study.key in self._sent or Worklist.pending(study):
            return
        self.send(study)

    def shutdown(self) -> None:
        if self.controller is not None:
            self.controller.shutdown()
