"""Getting studies in: the open dialogs, the demo, scan results made into worklist rows (in chunks), and
the pipeline's per-image results applied to the worklist and shown (a mixin of `MainWindow`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QFileDialog

from cxrviewer.gui import assets, backend
from cxrviewer.gui.records import State, StudyRecord
from cxrviewer.gui.study_browser import scrub
from cxrviewer.gui.worklist import Entry

#: Scanned studies put into the worklist per event-loop turn (about 10 ms on 2 slow cores).
SCAN_CHUNK = 100


class IntakeMixin:
    """Needs the `MainWindow` attributes it uses (worklist, pipeline, browser, canvas, settings ...)."""

    worklist: Any
    pipeline: Any
    browser: Any
    canvas: Any
    settings: Any
    findings: Any
    welcome: Any
    status: Any
    images: Any
    study_updated: Any
    image_finished: Any
    pacs_link: Any
    displayed_study: str
    displayed_image: str
    _closing: bool
    _pending_select: bool
    _scan_generation: int
    _model_error: str

    # --- opening ---

    def open_paths(self, paths: list[Path | str], remember: bool = True) -> int:
        """Scan files/folders in the background; rows appear when the scan returns. `remember`: the open
        dialogs start from here next time (not for the demo or the PACS inbox)."""
        paths = [Path(p) for p in paths]
        if not paths:
            return -1
        if remember:
            self.settings.last_folder = paths[0]
        self.message(f"Scanning {len(paths)} item(s)…")
        self._pending_select = not self.displayed_study
        return self.pipeline.scan(paths)

    def open_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self, "Open images", self.settings.last_folder,
            "Images (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)",
        )
        if files:
            self.open_paths([Path(f) for f in files])

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self.settings.last_folder)
        if folder:
            self.open_paths([Path(folder)])

    def open_demo(self) -> None:
        folder = assets.demo_folder()
        if not folder.is_dir():
            self.message("The demo study is missing from this installation.")
            return
        self.open_paths([folder], remember=False)

    def _on_scanned(self, token: int, outcome: backend.ScanOutcome) -> None:
        if self._closing:
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
        work: list[tuple[Any, Any]] = [(s, None) for s in outcome.studies] + [(None, e) for e in outcome.errors]
        self._add_scanned(work, self._scan_generation)

    def _add_scanned(self, work: list[tuple[Any, Any]], generation: int) -> None:
        """Put scanned studies (or scan errors) into the worklist, SCAN_CHUNK per event-loop turn: a drop of
        hundreds of files must not freeze the window while its rows are made."""
        if self._closing or generation != self._scan_generation:
            return
        chunk, rest = work[:SCAN_CHUNK], work[SCAN_CHUNK:]
        added: list[StudyRecord] = []
        for scanned, error in chunk:
            if scanned is None:
                record = self.worklist.add_error(*error)
                if record is not None:
                    added.append(record)
                continue
            record, images, fresh = self.worklist.add_scanned(scanned)
            for image in images:
                self.pipeline.enqueue(image.key, image.path)
            if fresh:
                added.append(record)
            else:
                self.browser.model.changed(record.key)
        self.browser.model.add(added)
        if added and (self._pending_select or not self.displayed_study):
            self._pending_select = False
            self.browser.set_current(next((r for r in added if r.state != State.ERROR), added[0]).key)
        for record in added:
            self.study_updated.emit(record.key)
        if rest:
            QTimer.singleShot(0, lambda: self._add_scanned(rest, generation))

    # --- pipeline results (see `_when_listed`) ---

    def _after_change(self, entry: Entry, *args: Any) -> None:
        self.browser.model.changed(entry.study.key)
        if entry.key == self.displayed_image:
            self._refresh_findings()

    def _on_loaded(self, entry: Entry, decoded: backend.Decoded) -> None:
        study, image = entry.study, entry.image
        self.images.put(image.key, decoded, keep=self.displayed_image)
        self.worklist.loaded(image.key, decoded.image.width, decoded.image.height, decoded.thumbnail,
                             decoded.image.meta.view_position)
        if self.worklist.thumbnail_image(study) is image:  # the study's first decoded image stands for it
            self.browser.model.set_thumbnail(study.key, decoded.thumbnail, replace=True)
        self.browser.model.changed(study.key)
        if image.key == self.displayed_image:
            self._put_on_canvas(image, decoded)
        decoded.rgb32 = None  # only the displayed image needs its screen-ready copy

    def _after_result(self, entry: Entry, *args: Any) -> None:
        self.browser.model.changed(entry.study.key)
        if entry.key == self.displayed_image:
            self._refresh_findings(auto_select=True)
            self._update_title()
        self.study_updated.emit(entry.study.key)
        self.image_finished.emit(entry.key)
        if entry.image.state in (State.DONE, State.REJECTED):
            self.pacs_link.maybe_auto_send(entry.study)

    def _after_failure(self, entry: Entry, message: str) -> None:
        study = entry.study
        self.browser.model.changed(study.key)
        text = scrub(message, study, self.hide_identifiers)
        self.message(text, 10000)
        if entry.key == self.displayed_image:
            self.canvas.clear()
            self.canvas.show_message(f"This file could not be opened.\n{text}")
            self._refresh_findings()
        self.study_updated.emit(study.key)
        self.image_finished.emit(entry.key)

    def _cancel_if_not_pending(self, key: str) -> Entry | None:
        return None if self.pipeline.is_pending(key) else self.worklist.cancelled(key)

    def _after_cancel(self, entry: Entry) -> None:
        self._after_change(entry)
        self.study_updated.emit(entry.study.key)

    def _on_model_ready(self, engine: Any) -> None:
        self._model_error = ""
        self.findings.set_model(engine.name)
        self.status.model_ready(engine)
        self.welcome.model_label.setText(f"Model: {engine.name} — {len(engine.labels)} findings, ready.")
        self.update_enabled()
        if self.displayed_image:
            self._refresh_findings()

    def _on_model_failed(self, message: str) -> None:
        self._model_error = message
        text = f"No model available: {message}"
        self.findings.set_model(None, f"{text}. {backend.NO_MODEL_HINT}")
        self.status.model_failed(text)
        self.welcome.model_label.setText(f"{text}\nImages can still be viewed. {backend.NO_MODEL_HINT}")
        self.message(text, 15000)
        self.update_enabled()
        if self.displayed_image:
            self._refresh_findings()
