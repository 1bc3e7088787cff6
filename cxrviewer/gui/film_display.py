"""What the centre and right panes show: the displayed study and image, its findings and heat map, the
image picker, titles and corner texts, and the hidden-identifiers mode (`MainWindow.display`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxrviewer.gui import backend
from cxrviewer.gui.records import ImageRecord, State, StudyRecord, percent, scrub
from cxrviewer.gui.viewer_state import ModelPhase
from cxrviewer.gui.welcome import NOTICE
from cxrviewer.gui.worklist import CANCELLED
from cxrviewer.model import colormap

if TYPE_CHECKING:
    from cxrviewer.gui.main_window import MainWindow

NO_STUDY = "Open a study to see the model's findings."


class FilmDisplay:
    """The displayed study and image of a `MainWindow`, and everything drawn from them."""

    def __init__(self, window: MainWindow) -> None:
        self.w = window
        self.state = window.state  # what is shown, and whether identifiers are hidden
        self.outline_asked: dict[str, int] = {}  # image key -> id of the prediction whose outline was asked for

    # the shown study, image and finding live in the window's Qt-free `ViewerState` (`self.state`)

    @property
    def displayed_study(self) -> str:
        return self.state.displayed_study

    @displayed_study.setter
    def displayed_study(self, key: str) -> None:
        self.state.update(displayed_study=key)

    @property
    def displayed_image(self) -> str:
        return self.state.displayed_image

    @displayed_image.setter
    def displayed_image(self, key: str) -> None:
        self.state.update(displayed_image=key)

    @property
    def selected_label(self) -> str | None:
        return self.state.selected_label

    @selected_label.setter
    def selected_label(self, label: str | None) -> None:
        self.state.update(selected_label=label)

    # --- display ---

    def show_study(self, key: str, image_key: str = "") -> None:
        """Display a study, on `image_key` when given (one of its images), else on its opening image."""
        study = self.w.worklist.study(key)
        if study is None:
            self.displayed_study = self.displayed_image = ""
            self.w.canvas.clear()
            self.w.findings.clear(NO_STUDY)
            self.w.stack.setCurrentIndex(0 if not self.w.studies else 1)
            self.update_title()
            self.w.update_enabled()
            return
        self.w.stack.setCurrentIndex(1)
        self.displayed_study = key
        asked = next((img for img in study.images if img.key == image_key), None)
        image = asked or self.w.worklist.opening_image(study)
        self.fill_image_combo(study, image)
        self.show_image(image.key)
        self.status_for_study(study)

    def fill_image_combo(self, study: StudyRecord, current: ImageRecord) -> None:
        self.w.image_combo.blockSignals(True)
        self.w.image_combo.clear()
        hide = self.state.hide_identifiers
        for i, img in enumerate(study.images, 1):
            parts = [f"Image {i} of {len(study.images)}", img.label, "" if hide else img.path.name]
            self.w.image_combo.addItem(" · ".join(p for p in parts if p), img.key)
        self.w.image_combo.setCurrentIndex(study.images.index(current))
        self.w.image_combo.blockSignals(False)
        self.w.viewer_bar.setVisible(len(study.images) > 1)

    def on_image_combo(self, index: int) -> None:
        key = self.w.image_combo.itemData(index)
        if key:
            self.show_image(key)

    def step_image(self, delta: int) -> None:
        count = self.w.image_combo.count()
        if count > 1:
            self.w.image_combo.setCurrentIndex(max(0, min(count - 1, self.w.image_combo.currentIndex() + delta)))

    def show_image(self, key: str) -> None:
        entry = self.w.worklist.entry(key)
        if entry is None:
            return
        study, image = entry.study, entry.image
        previous = self.displayed_image
        self.displayed_image = key
        self.selected_label = None
        if previous and previous != key:
            self.w.pipeline.prioritise(key)  # drops stale display-only work of the previous image
        decoded = self.w.images.get(key)
        if decoded is not None:
            self.put_on_canvas(image, decoded)
        else:
            self.w.canvas.clear()
            if image.state == State.ERROR:
                self.w.canvas.show_message(
                    f"This file could not be opened.\n{scrub(image.message, study, self.state.hide_identifiers)}"
                )
            else:
                self.w.canvas.show_message("Loading…")
                if not self.w.pipeline.prioritise(key) and not self.w.pipeline.is_pending(key):
                    self.w.pipeline.enqueue(key, image.path, analyse=False, front=True)
        self.refresh_findings(auto_select=True)
        self.update_title()
        self.w.displayed_changed.emit(key)

    def put_on_canvas(self, image: ImageRecord, decoded: backend.Decoded) -> None:
        self.w.canvas.set_image(decoded.image, decoded.display, decoded.window, rgb32=decoded.rgb32)
        self.w.canvas.hide_message()  # the film is here: no "Loading…" over it
        decoded.rgb32 = None  # handed over: the cache keeps only the 8-bit display
        self.w.presets.fill(decoded)
        self.update_annotations()
        self.w.update_enabled()
        if image.prediction is not None:
            self.refresh_findings(auto_select=True)

    def refresh_findings(self, auto_select: bool = False) -> None:
        """Fill the findings panel for the displayed image from its state."""
        entry = self.w.worklist.entry(self.displayed_image)
        self.w.update_enabled()
        if entry is None:
            self.w.findings.clear(NO_STUDY)
            return
        study, image = entry.study, entry.image
        prediction, findings = image.prediction, self.w.findings
        if image.state == State.ERROR:
            findings.clear(f"This file could not be opened: {scrub(image.message, study, self.state.hide_identifiers)}")
        elif image.state == State.NOT_ANALYSED and image.message == CANCELLED:
            self.w.findings.clear("Not analysed: the analysis was cancelled. Analysis ▸ Re-analyse study runs it.")
        elif image.state == State.NOT_ANALYSED:
            findings.clear(f"Not analysed — no model is available.\n{self.w.model_error}\n"
                           f"{backend.no_model_hint(self.w.model_error)}")
        elif image.state == State.ANALYSING:
            self.w.findings.clear("Loading the model…" if self.state.model.phase is ModelPhase.LOADING
                                  else "Analysing…")
        elif image.state == State.QUEUED or prediction is None:
            self.w.findings.clear("Loading the model… the findings follow when it is ready."
                                  if self.state.model.phase is ModelPhase.LOADING else "Queued for analysis…")
        elif image.state == State.REJECTED:
            self.w.findings.show_rejection(list(prediction.gate.reasons) or ["rejected by the input check"])
        else:
            not_covered = list(getattr(self.w.engine, "not_covered", []) or [])
            self.w.findings.show_prediction(prediction, not_covered, self.auroc_by_label())
        if prediction is None or image.state != State.DONE:
            self.w.canvas.clear_overlay()
            self.w.canvas.set_analysed_region(None)
            self.w.canvas.set_lung_outline(None)
            return
        self.show_analysed_region(prediction)
        self.w.canvas.set_lung_outline(getattr(prediction, "lung_outline", None))
        self.ask_outline(image)
        label = self.selected_label
        if label is None and auto_select:
            top = image.top_finding()
            label = top.label if top is not None and top.positive else None
        if label is not None:
            self.show_finding(label)
        else:
            self.w.canvas.clear_overlay()
        self.w.findings_shown.emit(image.key)

    def auroc_by_label(self) -> dict[str, float]:
        out = {}
        for label, entry in backend.validation_table(self.w.model_card()).items():
            value = backend.metric(entry, "auroc", "AUROC", "auc")
            if isinstance(value, int | float):
                out[label] = float(value)
        return out

    def show_analysed_region(self, prediction: Any) -> None:
        shown = analysed_region(prediction.letterbox) if self.w.canvas.has_image() else None
        if shown is None:
            self.w.canvas.set_analysed_region(None)
        else:
            self.w.canvas.set_analysed_region(*shown)

    def show_finding(self, label: str) -> None:
        """Show a finding's heat map, or say why there is none."""
        image = self.w.current_image()
        if image is None or image.prediction is None:
            return
        finding = image.prediction.finding(label) if hasattr(image.prediction, "finding") else None
        if finding is None:
            return
        self.selected_label = label
        self.w.findings.set_selected(label)
        overlay = self.w.overlays.get(image.key, label)
        if overlay is None:
            heat = backend.heat_map(image.prediction, label, colormap.OVERLAY_SIDE)
            overlay = None if heat is None else self.w.overlays.put(image.key, label, colormap.overlay_bgra(heat))
        if overlay is None:
            self.w.canvas.clear_overlay()
            self.w.canvas.show_message(
                f"{label}: {percent(finding.probability)}, below its operating point "
                f"({percent(finding.threshold)}), not flagged — maps are drawn for flagged findings and "
                "“check” items only."
            )
        else:
            self.w.canvas.set_overlay(overlay, label, finding.cam_peak)
            self.w.canvas.set_overlay_visible(self.w.table["heatmap"].isChecked())
        self.w.message(
            f"{label}: probability {finding.probability:.3f}, operating point {finding.threshold:.3f}"
            + (" — above it" if finding.positive else " — below it")
        )

    def ask_outline(self, image: ImageRecord) -> None:
        """Find the displayed film's lung fields in the background when its analysis did not (it was not on
        screen then), once per prediction."""
        prediction, decoded = image.prediction, self.w.images.peek(image.key)
        if prediction is None or prediction.lung_outline or decoded is None:
            return
        if self.outline_asked.get(image.key) != id(prediction):
            self.outline_asked[image.key] = id(prediction)
            self.w.pipeline.find_outline(image.key, decoded.image)

    def on_outline(self, key: str, contours: list[Any]) -> None:
        entry = self.w.worklist.entry(key)
        if entry is None or entry.image.prediction is None or entry.image.state != State.DONE:
            return
        entry.image.prediction.lung_outline = contours
        if key == self.displayed_image:
            self.w.canvas.set_lung_outline(contours)

    def set_lung_outline_visible(self, visible: bool) -> None:
        self.w.canvas.set_lung_outline_visible(visible)

    def set_heatmap_visible(self, visible: bool) -> None:
        if self.w.table["heatmap"].isChecked() != visible:
            self.w.table["heatmap"].setChecked(visible)
            return
        self.w.findings.heatmap_check.blockSignals(True)
        self.w.findings.heatmap_check.setChecked(visible)
        self.w.findings.heatmap_check.blockSignals(False)
        self.w.canvas.set_overlay_visible(visible)

    # --- identifiers ---

    def apply_identifier_mode(self) -> None:
        """Redraw every displayed text after the state's hide-identifiers flag changed."""
        hide = self.state.hide_identifiers
        self.update_title()
        self.update_annotations()
        study, image = self.w.current_study(), self.w.current_image()
        if study is not None:
            self.status_for_study(study)
        else:
            self.w.statusBar().clearMessage()
        if self.w.canvas.message() and image is not None and image.state == State.ERROR and study is not None:
            self.w.canvas.show_message(f"This file could not be opened.\n{scrub(image.message, study, hide)}")
        if study is not None and image is not None:
            self.fill_image_combo(study, image)
        if self.displayed_image:
            self.refresh_findings()
        if self.w.info_dialog is not None and self.w.info_dialog.isVisible():
            self.w.info_dialog.close()
            self.w.show_study_info()

    def update_title(self) -> None:
        study = self.w.current_study()
        if study is None:
            self.w.setWindowTitle(f"cxrviewer — {NOTICE.lower()}")
            return
        hide = self.state.hide_identifiers
        parts = [study.title(hide, self.w.current_image())]
        if study.date_text(hide):
            parts.append(study.date_text(hide))
        self.w.setWindowTitle(f"{' · '.join(parts)} — cxrviewer")

    def update_annotations(self) -> None:
        study, image = self.w.current_study(), self.w.current_image()
        if study is None or image is None or not self.w.canvas.has_image():
            return
        hide = self.state.hide_identifiers
        shown = self.w.canvas.image
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
        self.w.canvas.set_annotations(left, right)

    def status_for_study(self, study: StudyRecord) -> None:
        hide = self.state.hide_identifiers
        top = study.top_finding()
        text = f"{study.title(hide)}: {study.state.value}"
        if top is not None and top[0].positive:
            text += f" — top finding {top[0].label} {percent(top[0].probability)}"
        elif study.message:
            text += f" — {scrub(study.message, study, hide)}"
        self.w.message(text)


def analysed_region(box: Any) -> tuple[tuple[float, float, float, float], str] | None:
    """The outline worth drawing over the film for a prediction's letterbox, in original pixels, and its note:
    the crop region a thorax-crop model read, or the whole film when letterboxing padded it; None when the
    model read the whole film without padding (nothing to point out)."""
    cropped = bool(getattr(box, "cropped", False))
    if not (cropped or box.pad_x or box.pad_y):
        return None
    x, y, w, h = box.region
    what = "analysed region (thorax crop)" if cropped else "analysed region"
    return (float(x), float(y), float(w), float(h)), f"{what} · letterboxed to {box.size}×{box.size} px"
