"""Getting studies in: the open dialogs, the demo, scan results made into worklist rows (in chunks), and
the pipeline's per-image results applied to the worklist and shown (`MainWindow.intake`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog

from cxrviewer.gui import assets, backend
from cxrviewer.gui.records import State, StudyRecord, scrub
from cxrviewer.gui.viewer_state import ModelPhase, ModelStatus
from cxrviewer.gui.worklist import Entry

if TYPE_CHECKING:
    from cxrviewer.gui.main_window import MainWindow

#: Scanned studies put into the worklist per event-loop turn (about 10 ms on 2 slow cores).
SCAN_CHUNK = 100


class Intake:
    """Opening files and applying the pipeline's results for a `MainWindow`."""

    def __init__(self, window: MainWindow) -> None:
        self.w = window
        self.to_show: set[int] = set()  # scan tokens whose first study is displayed when the scan returns
        self.scan_generation = 0  # bumped by `forget_scans`: rows of older scans are not added any more

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
            self.w.settings.last_folder = chosen[0]
        self.w.message(f"Scanning {len(chosen)} item(s)…")
        token = self.w.pipeline.scan(chosen)
        if show or not self.w.displayed_study:
            self.to_show.add(token)
        return token

    def open_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self.w, "Open images", self.w.settings.last_folder,
            "Images (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)",
        )
        if files:
            self.open_paths([Path(f) for f in files])

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.w, "Open folder", self.w.settings.last_folder)
        if folder:
            self.open_paths([Path(folder)])

    def open_demo(self) -> None:
        folder = assets.demo_folder()
        if not folder.is_dir():
            self.w.message("The demo study is missing from this installation.")
            return
        self.open_paths([folder], remember=False)

    def on_scanned(self, token: int, outcome: backend.ScanOutcome) -> None:
        if self.w.closing:
            return
        errors = len(outcome.errors)
        if not outcome.studies and not errors:
            self.w.message("No images found in what was opened.")
        else:
            n = len(outcome.studies)
            images = sum(len(self.w.worklist.unlisted_images(s)) for s in outcome.studies)
            parts = [f"{n} stud{'y' if n == 1 else 'ies'} ({images} image{'s' if images != 1 else ''} queued)"]
            if errors:
                parts.append(f"{errors} file{'s' if errors != 1 else ''} could not be opened — see the list")
            self.w.message("Opened " + "; ".join(parts), 10000)
        work: list[tuple[Any, Any]] = [(s, None) for s in outcome.studies] + [(None, e) for e in outcome.errors]
        show = token in self.to_show
        self.to_show.discard(token)
        self.add_scanned(work, self.scan_generation, show or not self.w.displayed_study)

    def add_scanned(self, work: list[tuple[Any, Any]], generation: int, show: bool = False) -> None:
        """Put scanned studies (or scan errors) into the worklist, SCAN_CHUNK per event-loop turn: a drop of
        hundreds of files must not freeze the window while its rows are made. `show`: display the first
        readable study of `work` (a study already listed opens on the first image the scan added to it)."""
        if self.w.closing or generation != self.scan_generation:
            return
        chunk, rest = work[:SCAN_CHUNK], work[SCAN_CHUNK:]
        added: list[StudyRecord] = []
        opened: list[tuple[StudyRecord, str]] = []  # (study, first image added to it) in scan order
        for scanned, error in chunk:
            if scanned is None:
                record = self.w.worklist.add_error(*error)
                if record is not None:
                    added.append(record)
                    opened.append((record, ""))
                continue
            record, images, fresh = self.w.worklist.add_scanned(scanned)
            for image in images:
                self.w.pipeline.enqueue(image.key, image.path)
            opened.append((record, images[0].key if images and not fresh else ""))
            if fresh:
                added.append(record)
            else:
                self.w.browser.model.changed(record.key)
        self.w.browser.model.add(added)
        if show and opened:
            show = False
            self.reveal(*next((o for o in opened if o[0].state != State.ERROR), opened[0]))
        for record in added:
            self.w.study_updated.emit(record.key)
        if rest:
            QTimer.singleShot(0, lambda: self.add_scanned(rest, generation, show))

    def reveal(self, study: StudyRecord, image_key: str = "") -> None:
        """Select a study's row and display it (on `image_key` when given)."""
        if self.w.browser.current_key() != study.key:
            self.w.browser.set_current(study.key)  # displays it (the browser's current_changed)
        if self.w.displayed_study != study.key or (image_key and image_key != self.w.displayed_image):
            self.w.display.show_study(study.key, image_key)

    # --- pipeline results (see `_when_listed`) ---

    def after_change(self, entry: Entry, *args: Any) -> None:
        self.w.browser.model.changed(entry.study.key)
        if entry.key == self.w.displayed_image:
            self.w.display.refresh_findings()

    def on_loaded(self, entry: Entry, decoded: backend.Decoded) -> None:
        study, image = entry.study, entry.image
        self.w.images.put(image.key, decoded, keep=self.w.displayed_image)
        self.w.worklist.loaded(image.key, decoded.image.width, decoded.image.height, decoded.thumbnail,
                             decoded.image.meta.view_position)
        if self.w.worklist.thumbnail_image(study) is image:  # the study's first decoded image stands for it
            self.w.browser.model.set_thumbnail(study.key, decoded.thumbnail, replace=True)
        self.w.browser.model.changed(study.key)
        if image.key == self.w.displayed_image:
            self.w.display.put_on_canvas(image, decoded)
        decoded.rgb32 = None  # only the displayed image needs its screen-ready copy

    def after_result(self, entry: Entry, *args: Any) -> None:
        self.w.browser.model.changed(entry.study.key)
        if entry.key == self.w.displayed_image:
            self.w.display.refresh_findings(auto_select=True)
            self.w.display.update_title()
        self.w.study_updated.emit(entry.study.key)
        self.w.image_finished.emit(entry.key)
        if entry.image.state in (State.DONE, State.REJECTED):
            self.w.pacs_link.maybe_auto_send(entry.study)

    def after_failure(self, entry: Entry, message: str) -> None:
        study = entry.study
        self.w.browser.model.changed(study.key)
        text = scrub(message, study, self.w.state.hide_identifiers)
        self.w.message(text, 10000)
        if entry.key == self.w.displayed_image:
            self.w.canvas.clear()
            self.w.canvas.show_message(f"This file could not be opened.\n{text}")
            self.w.display.refresh_findings()
        self.w.study_updated.emit(study.key)
        self.w.image_finished.emit(entry.key)

    def cancel_if_not_pending(self, key: str) -> Entry | None:
        return None if self.w.pipeline.is_pending(key) else self.w.worklist.cancelled(key)

    def after_cancel(self, entry: Entry) -> None:
        self.after_change(entry)
        self.w.study_updated.emit(entry.study.key)

    def on_model_ready(self, engine: Any) -> None:
        self.w.state.update(model=ModelStatus(ModelPhase.READY, engine.name))
        self.w.findings.set_model(engine.name, card_warning=backend.card_warning(engine))
        self.w.status.model_ready(engine)
        self.w.welcome.model_label.setText(f"Model: {engine.name} — {len(engine.labels)} findings, ready.")
        self.w.update_enabled()
        if self.w.displayed_image:
            self.w.display.refresh_findings()

    def on_model_failed(self, message: str) -> None:
        self.w.state.update(model=ModelStatus(ModelPhase.FAILED, message=message))
        text = f"No model available: {message}"
        self.w.findings.set_model(None, f"{text}. {backend.no_model_hint(message)}")
        self.w.status.model_failed(text)
        hint = backend.no_model_hint(message)
        self.w.welcome.model_label.setText(f"{text}\nImages can still be viewed."
                                           + ("" if hint.startswith("Images") else f" {hint}"))
        self.w.message(text, 15000)
        self.w.update_enabled()
        if self.w.displayed_image:
            self.w.display.refresh_findings()
