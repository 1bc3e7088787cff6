"""Getting studies in: the open dialogs, the demo, scan results made into worklist rows (in chunks), and
the pipeline's per-image results applied to the worklist and shown (the main window's `intake`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog

from cxrviewer.gui import assets, backend
from cxrviewer.gui.records import State, StudyRecord, scrub
from cxrviewer.gui.viewer_state import ModelPhase, ModelStatus
from cxrviewer.gui.worklist import Entry

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from cxrviewer.gui.caches import ImageCache
    from cxrviewer.gui.film_display import FilmDisplay
    from cxrviewer.gui.findings_panel import FindingsPanel
    from cxrviewer.gui.image_view import ImageCanvas
    from cxrviewer.gui.settings import AppSettings
    from cxrviewer.gui.status_bar import StatusBar
    from cxrviewer.gui.study_browser import StudyBrowser
    from cxrviewer.gui.viewer_state import ViewerState
    from cxrviewer.gui.welcome import WelcomePage
    from cxrviewer.gui.workers import Pipeline
    from cxrviewer.gui.worklist import Worklist
    from cxrviewer.model.inference import Engine

#: A scanned study, or a file the scan could not read: (its path, why).
ScanWork = tuple[backend.ScannedStudy, None] | tuple[None, tuple[Path, str]]

#: Scanned studies put into the worklist per event-loop turn (about 10 ms on 2 slow cores).
SCAN_CHUNK = 100


@dataclass(frozen=True)
class IntakeWidgets:
    """The widgets an `Intake` drives."""

    browser: StudyBrowser  # the worklist's rows: added, changed, thumbnails, the current row
    canvas: ImageCanvas  # says when the displayed file could not be opened
    findings: FindingsPanel  # the model's name, or why there is none
    welcome: WelcomePage  # the start screen's model line
    status: StatusBar  # messages and the model indicator
    parent: QWidget  # of the open dialogs


class Intake:
    """Opening files and applying the pipeline's results.

    Handed in: the `ViewerState` (what is shown, hidden identifiers; the model's status is written here), the
    worklist, the pipeline (scans, decodes and analyses), the decoded-image cache, the settings (the open dialogs'
    folder), the `FilmDisplay` (shows what was opened and what changed on the shown film), the `IntakeWidgets` it
    drives, and the window's calls it makes: `refresh_actions` (once the model is ready or failed),
    `study_updated(study key)`, `image_finished(image key)`, `auto_send(study)` (PACS, after an image's result)
    and `closing()` (results arriving then are dropped).
    """

    def __init__(self, state: ViewerState, worklist: Worklist, pipeline: Pipeline, images: ImageCache,
                 settings: AppSettings, display: FilmDisplay, widgets: IntakeWidgets, *,
                 refresh_actions: Callable[[], None], study_updated: Callable[[str], None],
                 image_finished: Callable[[str], None], auto_send: Callable[[StudyRecord], None],
                 closing: Callable[[], bool]) -> None:
        self.state = state
        self.worklist = worklist
        self.pipeline = pipeline
        self.images = images
        self.settings = settings
        self.display = display
        self.browser, self.canvas, self.findings = widgets.browser, widgets.canvas, widgets.findings
        self.welcome, self.status, self.parent = widgets.welcome, widgets.status, widgets.parent
        self.refresh_actions = refresh_actions
        self.study_updated = study_updated
        self.image_finished = image_finished
        self.auto_send = auto_send
        self.closing = closing
        self.to_show: set[int] = set()  # scan tokens whose first study is displayed when the scan returns
        self.scan_generation = 0  # bumped by `forget_scans`: rows of older scans are not added any more

    def message(self, text: str, ms: int = 8000) -> None:
        self.status.bar.showMessage(text, ms)

    def forget_scans(self) -> None:
        """Rows of a drop still being added are not wanted any more (the list was cleared)."""
        self.scan_generation += 1

    # --- opening ---

    def open_paths(self, paths: Sequence[Path | str], remember: bool = True, show: bool = True) -> int:
        """Scan files/folders in the background; rows appear when the scan returns. `remember`: the open
        dialogs start from here next time (not for the demo or the PACS inbox). `show`: display what was
        opened (its first study, on the first image this added) — not for studies arriving on their own."""
        chosen = [Path(p) for p in paths]
        if not chosen:
            return -1
        if remember:
            self.settings.last_folder = chosen[0]
        self.message(f"Scanning {len(chosen)} item(s)…")
        token = self.pipeline.scan(chosen)
        if show or not self.state.displayed_study:
            self.to_show.add(token)
        return token

    def open_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self.parent, "Open images", self.settings.last_folder,
            "Images (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)",
        )
        if files:
            self.open_paths([Path(f) for f in files])

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.parent, "Open folder", self.settings.last_folder)
        if folder:
            self.open_paths([Path(folder)])

    def open_demo(self) -> None:
        folder = assets.demo_folder()
        if not folder.is_dir():
            self.message("The demo study is missing from this installation.")
            return
        self.open_paths([folder], remember=False)

    def on_scanned(self, token: int, outcome: backend.ScanOutcome) -> None:
        if self.closing():
            return
        errors = len(outcome.errors)
        if not outcome.studies and not errors:
            self.message("No images found in what was opened.")
        else:
            n = len(outcome.studies)
            images = sum(len(self.worklist.unlisted_images(s)) for s in outcome.studies)
            parts = [f"{n} stud{'y' if n == 1 else 'ies'} ({images} image{'s' if images != 1 else ''} queued)"]
            if errors:
                parts.append(f"{errors} file{'s' if errors != 1 else ''} could not be opened — see the list")
            self.message("Opened " + "; ".join(parts), 10000)
        work: list[ScanWork] = [(s, None) for s in outcome.studies] + [(None, e) for e in outcome.errors]
        show = token in self.to_show
        self.to_show.discard(token)
        self.add_scanned(work, self.scan_generation, show or not self.state.displayed_study)

    def add_scanned(self, work: list[ScanWork], generation: int, show: bool = False) -> None:
        """Put scanned studies (or scan errors) into the worklist, SCAN_CHUNK per event-loop turn: a drop of
        hundreds of files must not freeze the window while its rows are made. `show`: display the first
        readable study of `work` (a study already listed opens on the first image the scan added to it)."""
        if self.closing() or generation != self.scan_generation:
            return
        chunk, rest = work[:SCAN_CHUNK], work[SCAN_CHUNK:]
        added: list[StudyRecord] = []
        opened: list[tuple[StudyRecord, str]] = []  # (study, first image added to it) in scan order
        for scanned, error in chunk:
            if scanned is None:
                assert error is not None  # (None, error): see `ScanWork`
                record = self.worklist.add_error(*error)
                if record is not None:
                    added.append(record)
                    opened.append((record, ""))
                continue
            record, images, fresh = self.worklist.add_scanned(scanned)
            for image in images:
                self.pipeline.enqueue(image.key, image.path)
            opened.append((record, images[0].key if images and not fresh else ""))
            if fresh:
                added.append(record)
            else:
                self.browser.model.changed(record.key)
        self.browser.model.add(added)
        if show and opened:
            show = False
            self.reveal(*next((o for o in opened if o[0].state != State.ERROR), opened[0]))
        for record in added:
            self.study_updated(record.key)
        if rest:
            QTimer.singleShot(0, lambda: self.add_scanned(rest, generation, show))

    def reveal(self, study: StudyRecord, image_key: str = "") -> None:
        """Select a study's row and display it (on `image_key` when given)."""
        if self.browser.current_key() != study.key:
            self.browser.set_current(study.key)  # displays it (the browser's current_changed)
        if self.state.displayed_study != study.key or (image_key and image_key != self.state.displayed_image):
            self.display.show_study(study.key, image_key)

    # --- pipeline results (see `_when_listed`) ---

    def after_change(self, entry: Entry, *args: Any) -> None:
        self.browser.model.changed(entry.study.key)
        if entry.key == self.state.displayed_image:
            self.display.refresh_findings()

    def on_loaded(self, entry: Entry, decoded: backend.Decoded) -> None:
        study, image = entry.study, entry.image
        self.images.put(image.key, decoded, keep=self.state.displayed_image)
        self.worklist.loaded(image.key, decoded.image.width, decoded.image.height, decoded.thumbnail,
                           decoded.image.meta.view_position)
        if self.worklist.thumbnail_image(study) is image:  # the study's first decoded image stands for it
            self.browser.model.set_thumbnail(study.key, decoded.thumbnail, replace=True)
        self.browser.model.changed(study.key)
        if image.key == self.state.displayed_image:
            self.display.put_on_canvas(image, decoded)
        decoded.rgb32 = None  # only the displayed image needs its screen-ready copy

    def after_result(self, entry: Entry, *args: Any) -> None:
        self.browser.model.changed(entry.study.key)
        if entry.key == self.state.displayed_image:
            self.display.refresh_findings(auto_select=True)
            self.display.update_title()
        self.study_updated(entry.study.key)
        self.image_finished(entry.key)
        if entry.image.state in (State.DONE, State.REJECTED):
            self.auto_send(entry.study)

    def after_failure(self, entry: Entry, message: str) -> None:
        study = entry.study
        self.browser.model.changed(study.key)
        text = scrub(message, study, self.state.hide_identifiers)
        self.message(text, 10000)
        if entry.key == self.state.displayed_image:
            self.canvas.clear()
            self.canvas.show_message(f"This file could not be opened.\n{text}")
            self.display.refresh_findings()
        self.study_updated(study.key)
        self.image_finished(entry.key)

    def cancel_if_not_pending(self, key: str) -> Entry | None:
        return None if self.pipeline.is_pending(key) else self.worklist.cancelled(key)

    def after_cancel(self, entry: Entry) -> None:
        self.after_change(entry)
        self.study_updated(entry.study.key)

    def on_model_ready(self, engine: Engine) -> None:
        self.state.update(model=ModelStatus(ModelPhase.READY, engine.name))
        self.findings.set_model(engine.name, card_warning=backend.card_warning(engine))
        self.status.model_ready(engine)
        self.welcome.model_label.setText(f"Model: {engine.name} — {len(engine.labels)} findings, ready.")
        self.refresh_actions()
        if self.state.displayed_image:
            self.display.refresh_findings()

    def on_model_failed(self, message: str) -> None:
        self.state.update(model=ModelStatus(ModelPhase.FAILED, message=message))
        text = f"No model available: {message}"
        self.findings.set_model(None, f"{text}. {backend.no_model_hint(message)}")
        self.status.model_failed(text)
        hint = backend.no_model_hint(message)
        self.welcome.model_label.setText(f"{text}\nImages can still be viewed."
                                           + ("" if hint.startswith("Images") else f" {hint}"))
        self.message(text, 15000)
        self.refresh_actions()
        if self.state.displayed_image:
            self.display.refresh_findings()
