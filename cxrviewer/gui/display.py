"""What the centre and right panes show: the displayed study and image, its findings and heat map, the
image picker, titles and corner texts, and the hidden-identifiers mode (a mixin of `MainWindow`)."""

from __future__ import annotations

from typing import Any

from cxrviewer.gui import backend
from cxrviewer.gui.records import ImageRecord, State, StudyRecord, percent
from cxrviewer.gui.study_browser import scrub
from cxrviewer.gui.welcome import NOTICE
from cxrviewer.gui.worklist import CANCELLED
from cxrviewer.model import colormap

NO_STUDY = "Open a study to see the model's findings."


class DisplayMixin:
    """Needs the `MainWindow` attributes it uses (worklist, canvas, findings, image_combo, presets ...)."""

    worklist: Any
    pipeline: Any
    browser: Any
    canvas: Any
    findings: Any
    image_combo: Any
    viewer_bar: Any
    stack: Any
    presets: Any
    images: Any
    overlays: Any
    settings: Any
    act_heatmap: Any
    act_hide_ids: Any
    displayed_changed: Any
    findings_shown: Any
    displayed_study: str
    displayed_image: str
    selected_label: str | None
    _model_error: str
    _info_dialog: Any

    # --- display ---

    def show_study(self, key: str) -> None:
        """Display a study, on its first analysed image (else its first image)."""
        study = self.worklist.study(key)
        if study is None:
            self.displayed_study = self.displayed_image = ""
            self.canvas.clear()
            self.findings.clear(NO_STUDY)
            self.stack.setCurrentIndex(0 if not self.studies else 1)
            self._update_title()
            self.update_enabled()
            return
        self.stack.setCurrentIndex(1)
        self.displayed_study = key
        image = self.worklist.opening_image(study)
        self._fill_image_combo(study, image)
        self.show_image(image.key)
        self._status_for_study(study)

    def _fill_image_combo(self, study: StudyRecord, current: ImageRecord) -> None:
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        for i, img in enumerate(study.images, 1):
            parts = [f"Image {i} of {len(study.images)}", img.label, "" if self.hide_identifiers else img.path.name]
            self.image_combo.addItem(" · ".join(p for p in parts if p), img.key)
        self.image_combo.setCurrentIndex(study.images.index(current))
        self.image_combo.blockSignals(False)
        self.viewer_bar.setVisible(len(study.images) > 1)

    def _on_image_combo(self, index: int) -> None:
        key = self.image_combo.itemData(index)
        if key:
            self.show_image(key)

    def step_image(self, delta: int) -> None:
        count = self.image_combo.count()
        if count > 1:
            self.image_combo.setCurrentIndex(max(0, min(count - 1, self.image_combo.currentIndex() + delta)))

    def show_image(self, key: str) -> None:
        entry = self.worklist.entry(key)
        if entry is None:
            return
        study, image = entry.study, entry.image
        previous = self.displayed_image
        self.displayed_image = key
        self.selected_label = None
        if previous and previous != key:
            self.pipeline.prioritise(key)  # drops stale display-only work of the previous image
        decoded = self.images.get(key)
        if decoded is not None:
            self._put_on_canvas(image, decoded)
        else:
            self.canvas.clear()
            if image.state == State.ERROR:
                self.canvas.show_message(
                    f"This file could not be opened.\n{scrub(image.message, study, self.hide_identifiers)}"
                )
            else:
                self.canvas.show_message("Loading…")
                if not self.pipeline.prioritise(key) and not self.pipeline.is_pending(key):
                    self.pipeline.enqueue(key, image.path, analyse=False, front=True)
        self._refresh_findings(auto_select=True)
        self._update_title()
        self.displayed_changed.emit(key)

    def _put_on_canvas(self, image: ImageRecord, decoded: backend.Decoded) -> None:
        self.canvas.set_image(decoded.image, decoded.display, decoded.window, rgb32=decoded.rgb32)
        self.canvas.hide_message()  # the film is here: no "Loading…" over it
        decoded.rgb32 = None  # handed over: the cache keeps only the 8-bit display
        self.presets.fill(decoded)
        self._update_annotations()
        self.update_enabled()
        if image.prediction is not None:
            self._refresh_findings(auto_select=True)

    def _refresh_findings(self, auto_select: bool = False) -> None:
        """Fill the findings panel for the displayed image from its state."""
        entry = self.worklist.entry(self.displayed_image)
        self.update_enabled()
        if entry is None:
            self.findings.clear(NO_STUDY)
            return
        study, image = entry.study, entry.image
        prediction = image.prediction
        if image.state == State.ERROR:
            self.findings.clear(f"This file could not be opened: {scrub(image.message, study, self.hide_identifiers)}")
        elif image.state == State.NOT_ANALYSED and image.message == CANCELLED:
            self.findings.clear("Not analysed: the analysis was cancelled. Analysis ▸ Re-analyse study runs it.")
        elif image.state == State.NOT_ANALYSED:
            self.findings.clear(f"Not analysed — no model is available.\n{self._model_error}\n{backend.NO_MODEL_HINT}")
        elif image.state == State.ANALYSING:
            self.findings.clear("Analysing…" if self.pipeline.model_loaded else "Loading the model…")
        elif image.state == State.QUEUED or prediction is None:
            self.findings.clear("Queued for analysis…")
        elif image.state == State.REJECTED:
            self.findings.show_rejection(list(prediction.gate.reasons) or ["rejected by the input check"])
        else:
            not_covered = list(getattr(self.engine, "not_covered", []) or [])
            self.findings.show_prediction(prediction, not_covered, self._auroc_by_label())
        if prediction is None or image.state != State.DONE:
            self.canvas.clear_overlay()
            self.canvas.set_analysed_region(None)
            return
        self._show_analysed_region(prediction)
        label = self.selected_label
        if label is None and auto_select:
            top = image.top_finding()
            label = top.label if top is not None and top.positive else None
        if label is not None:
            self.show_finding(label)
        else:
            self.canvas.clear_overlay()
        self.findings_shown.emit(image.key)

    def _auroc_by_label(self) -> dict[str, float]:
        out = {}
        for label, entry in backend.validation_table(getattr(self.engine, "card", None)).items():
            value = backend.metric(entry, "auroc", "AUROC", "auc")
            if isinstance(value, int | float):
                out[label] = float(value)
        return out

    def _show_analysed_region(self, prediction: Any) -> None:
        box = prediction.letterbox
        if not (box.pad_x or box.pad_y) or not self.canvas.has_image():
            self.canvas.set_analysed_region(None)
            return
        x0, y0, cw, ch = box.content
        rect = ((x0 - box.pad_x) / box.scale, (y0 - box.pad_y) / box.scale, cw / box.scale, ch / box.scale)
        self.canvas.set_analysed_region(rect, f"analysed region · letterboxed to {box.size}×{box.size} px")

    def show_finding(self, label: str) -> None:
        """Show a finding's heat map, or say why there is none."""
        image = self.current_image()
        if image is None or image.prediction is None:
            return
        finding = image.prediction.finding(label) if hasattr(image.prediction, "finding") else None
        if finding is None:
            return
        self.selected_label = label
        self.findings.set_selected(label)
        overlay = self.overlays.get(image.key, label)
        if overlay is None:
            heat = backend.heat_map(image.prediction, label, colormap.OVERLAY_SIDE)
            overlay = None if heat is None else self.overlays.put(image.key, label, colormap.overlay_bgra(heat))
        if overlay is None:
            self.canvas.clear_overlay()
            self.canvas.show_message(
                f"{label}: {percent(finding.probability)}, below its operating point "
                f"({percent(finding.threshold)}) — no map is drawn for findings below their cutoff."
            )
        else:
            self.canvas.set_overlay(overlay, label, finding.cam_peak)
            self.canvas.set_overlay_visible(self.act_heatmap.isChecked())
        self.message(
            f"{label}: probability {finding.probability:.3f}, operating point {finding.threshold:.3f}"
            + (" — above it" if finding.positive else " — below it")
        )

    def set_heatmap_visible(self, visible: bool) -> None:
        if self.act_heatmap.isChecked() != visible:
            self.act_heatmap.setChecked(visible)
            return
        self.findings.heatmap_check.blockSignals(True)
        self.findings.heatmap_check.setChecked(visible)
        self.findings.heatmap_check.blockSignals(False)
        self.canvas.set_overlay_visible(visible)

    def _on_opacity(self, opacity: float) -> None:
        self.canvas.set_overlay_opacity(opacity)
        self.settings.opacity = opacity

    def reset_view(self) -> None:
        self.canvas.reset_view()

    def apply_preset(self, index: int) -> None:
        self.presets.apply(index)

    # --- identifiers ---

    def set_hide_identifiers(self, hide: bool) -> None:
        if self.act_hide_ids.isChecked() != hide:
            self.act_hide_ids.setChecked(hide)  # re-enters through toggled
            return
        self.browser.set_hide_identifiers(hide)
        self._apply_identifier_mode()

    def _on_hide_toggled_in_browser(self, hide: bool) -> None:
        if self.act_hide_ids.isChecked() != hide:
            self.act_hide_ids.setChecked(hide)
        self._apply_identifier_mode()

    def _apply_identifier_mode(self) -> None:
        hide = self.hide_identifiers
        self.settings.hide_identifiers = hide
        self._update_title()
        self._update_annotations()
        study, image = self.current_study(), self.current_image()
        if study is not None:
            self._status_for_study(study)
        else:
            self.statusBar().clearMessage()
        if self.canvas.message() and image is not None and image.state == State.ERROR and study is not None:
            self.canvas.show_message(f"This file could not be opened.\n{scrub(image.message, study, hide)}")
        if study is not None and image is not None:
            self._fill_image_combo(study, image)
        if self.displayed_image:
            self._refresh_findings()
        if self._info_dialog is not None and self._info_dialog.isVisible():
            self._info_dialog.close()
            self.show_study_info()

    def _update_title(self) -> None:
        study = self.current_study()
        if study is None:
            self.setWindowTitle(f"cxrviewer — {NOTICE.lower()}")
            return
        hide = self.hide_identifiers
        parts = [study.title(hide, self.current_image())]
        if study.date_text(hide):
            parts.append(study.date_text(hide))
        self.setWindowTitle(f"{' · '.join(parts)} — cxrviewer")

    def _update_annotations(self) -> None:
        study, image = self.current_study(), self.current_image()
        if study is None or image is None or not self.canvas.has_image():
            return
        hide = self.hide_identifiers
        shown = self.canvas.image
        meta = shown.meta
        left = [study.title(hide, image)]
        if not hide and study.patient_id:
            left.append(f"ID {study.patient_id}")
        if study.date_text(hide):
            left.append(study.date_text(hide))
        if study.description:
            left.append(study.description)
        right = [
            " ".join(x for x in (meta.modality, meta.view_position) if x) or meta.source_format.upper(),
            f"{shown.width} × {shown.height}",
        ]
        if meta.pixel_spacing:
            right.append(f"{meta.pixel_spacing[1]:.3f} mm/px")
        right += list(meta.notes)
        self.canvas.set_annotations(left, right)

    def _status_for_study(self, study: StudyRecord) -> None:
        hide = self.hide_identifiers
        top = study.top_finding()
        text = f"{study.title(hide)}: {study.state.value}"
        if top is not None and top[0].positive:
            text += f" — top finding {top[0].label} {percent(top[0].probability)}"
        elif study.message:
            text += f" — {scrub(study.message, study, hide)}"
        self.message(text)
