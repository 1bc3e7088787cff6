"""What the centre and right panes show: the displayed study and image, its findings and heat map, the
image picker, titles and corner texts, and the hidden-identifiers mode (the main window's `display`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cxrviewer.gui import backend
from cxrviewer.gui.records import ImageRecord, State, StudyRecord, percent, scrub
from cxrviewer.gui.viewer_state import ModelPhase
from cxrviewer.gui.welcome import NOTICE
from cxrviewer.gui.worklist import CANCELLED
from cxrviewer.model import colormap

if TYPE_CHECKING:
    import numpy as np
    from PySide6.QtGui import QAction
    from PySide6.QtWidgets import QComboBox, QStackedWidget, QStatusBar, QWidget

    from cxrviewer.gui.caches import ImageCache, OverlayCache
    from cxrviewer.gui.findings_panel import FindingsPanel
    from cxrviewer.gui.image_view import ImageCanvas
    from cxrviewer.gui.viewer_state import ViewerState
    from cxrviewer.gui.workers import Pipeline
    from cxrviewer.gui.worklist import Worklist
    from cxrviewer.model.card import ModelCard
    from cxrviewer.model.inference import Engine, Prediction
    from cxrviewer.model.preprocess import Letterbox

NO_STUDY = "Open a study to see the model's findings."


@dataclass(frozen=True)
class FilmWidgets:
    """The widgets a `FilmDisplay` drives."""

    canvas: ImageCanvas  # the film, its heat map, outlines, corner texts and messages
    findings: FindingsPanel
    image_combo: QComboBox  # the displayed study's images
    viewer_bar: QWidget  # holds the image picker; shown for studies of several images
    stack: QStackedWidget  # page 0 the start screen, page 1 the viewer
    status: QStatusBar  # study and finding messages


class FilmDisplay:
    """The displayed study and image, and everything drawn from them.

    Handed in: the `ViewerState` (what is shown, hidden identifiers, the model's status; written here), the
    worklist, the decoded-image and heat-map caches, the pipeline (decodes and outlines asked for the shown
    film), `engine()` (the loaded model, None without one), the `FilmWidgets` it drives, and the window's calls
    it makes: `set_title`, `refresh_actions` (after what is shown changed), `fill_presets` (the W/L presets of a
    film put on the canvas), `heatmap()` (the View ▸ Heat map action), `displayed_changed(image key)`,
    `findings_shown(image key)` and `refresh_info` (redraw an open study-info dialog).
    """

    def __init__(self, state: ViewerState, worklist: Worklist, images: ImageCache, overlays: OverlayCache,
                 pipeline: Pipeline, engine: Callable[[], Engine | None], widgets: FilmWidgets, *,
                 set_title: Callable[[str], None], refresh_actions: Callable[[], None],
                 fill_presets: Callable[[backend.Decoded], None], heatmap: Callable[[], QAction],
                 displayed_changed: Callable[[str], None], findings_shown: Callable[[str], None],
                 refresh_info: Callable[[], None]) -> None:
        self.state = state
        self.worklist = worklist
        self.images = images
        self.overlays = overlays
        self.pipeline = pipeline
        self.engine = engine
        self.canvas, self.findings = widgets.canvas, widgets.findings
        self.image_combo, self.viewer_bar = widgets.image_combo, widgets.viewer_bar
        self.stack, self.status = widgets.stack, widgets.status
        self.set_title = set_title
        self.refresh_actions = refresh_actions
        self.fill_presets = fill_presets
        self.heatmap = heatmap
        self.displayed_changed = displayed_changed
        self.findings_shown = findings_shown
        self.refresh_info = refresh_info
        self._auroc: tuple[ModelCard | None, dict[str, float]] | None = None  # (card, its AUROC per label)
        # (image key, prediction, engine) whose findings the panel lists now; None when it shows anything else.
        # Whatever changes a prediction in place (site operating points) must call `refresh_findings()` after.
        self._panel_shows: tuple[str, Prediction, Engine | None] | None = None
        self.outline_asked: dict[str, int] = {}  # image key -> id of the prediction whose outline was asked for

    # the shown study, image and finding live in the Qt-free `ViewerState` (`self.state`)

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

    def current_study(self) -> StudyRecord | None:
        return self.worklist.study(self.displayed_study)

    def current_image(self) -> ImageRecord | None:
        entry = self.worklist.entry(self.displayed_image)
        return entry.image if entry else None

    def message(self, text: str, ms: int = 8000) -> None:
        self.status.showMessage(text, ms)

    # --- display ---

    def show_study(self, key: str, image_key: str = "") -> None:
        """Display a study, on `image_key` when given (one of its images), else on its opening image."""
        study = self.worklist.study(key)
        if study is None:
            self.displayed_study = self.displayed_image = ""
            self.canvas.clear()
            self.findings.clear(NO_STUDY)
            self._panel_shows = None
            self.stack.setCurrentIndex(0 if not self.worklist.studies else 1)
            self.update_title()
            self.refresh_actions()
            return
        self.stack.setCurrentIndex(1)
        self.displayed_study = key
        asked = next((img for img in study.images if img.key == image_key), None)
        image = asked or self.worklist.opening_image(study)
        self.fill_image_combo(study, image)
        self.show_image(image.key)
        self.status_for_study(study)

    def fill_image_combo(self, study: StudyRecord, current: ImageRecord) -> None:
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        hide = self.state.hide_identifiers
        for i, img in enumerate(study.images, 1):
            parts = [f"Image {i} of {len(study.images)}", img.label, "" if hide else img.path.name]
            self.image_combo.addItem(" · ".join(p for p in parts if p), img.key)
        self.image_combo.setCurrentIndex(study.images.index(current))
        self.image_combo.blockSignals(False)
        self.viewer_bar.setVisible(len(study.images) > 1)

    def on_image_combo(self, index: int) -> None:
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
            self.put_on_canvas(image, decoded, findings=False)  # the findings follow below, once
        else:
            self.canvas.clear()
            if image.state == State.ERROR:
                self.canvas.show_message(
                    f"This file could not be opened.\n{scrub(image.message, study, self.state.hide_identifiers)}"
                )
            else:
                self.canvas.show_message("Loading…")
                if not self.pipeline.prioritise(key) and not self.pipeline.is_pending(key):
                    self.pipeline.enqueue(key, image.path, analyse=False, front=True)
        self.refresh_findings(auto_select=True)
        self.update_title()
        self.displayed_changed(key)

    def put_on_canvas(self, image: ImageRecord, decoded: backend.Decoded, findings: bool = True) -> None:
        """The decoded film on the canvas, with its presets and annotations; `findings`: and its findings (a caller
        that fills them itself passes False)."""
        self.canvas.set_image(decoded.image, decoded.display, decoded.window, rgb32=decoded.rgb32)
        self.canvas.hide_message()  # the film is here: no "Loading…" over it
        decoded.rgb32 = None  # handed over: the cache keeps only the 8-bit display
        self.fill_presets(decoded)
        self.update_annotations()
        self.refresh_actions()
        if findings and image.prediction is not None:
            # a film that arrives after its findings were listed (J onto a film not decoded yet) needs only its
            # heat map, outline and analysed region; the panel's rows stay as they are
            listed = self._panel_shows is not None and self._panel_shows[0] == image.key \
                and self._panel_shows[1] is image.prediction and self._panel_shows[2] is self.engine()
            self.refresh_findings(auto_select=True, panel=not (listed and image.state == State.DONE))

    def refresh_findings(self, auto_select: bool = False, panel: bool = True) -> None:
        """Fill the findings panel for the displayed image from its state, and put the selected (or, with
        `auto_select`, the top) finding's map, the lung outline and the analysed region on the canvas; `panel`:
        False leaves the panel's list as it is (it already shows this image's prediction)."""
        entry = self.worklist.entry(self.displayed_image)
        self.refresh_actions()
        if entry is None:
            self.findings.clear(NO_STUDY)
            self._panel_shows = None
            return
        study, image = entry.study, entry.image
        if panel:
            self._fill_panel(study, image)
        self._findings_on_canvas(image, auto_select)

    def _fill_panel(self, study: StudyRecord, image: ImageRecord) -> None:
        """The findings panel for an image's state: its findings, rejection, or why there are none."""
        prediction, findings = image.prediction, self.findings
        self._panel_shows = None
        if image.state == State.ERROR:
            findings.clear(f"This file could not be opened: {scrub(image.message, study, self.state.hide_identifiers)}")
        elif image.state == State.NOT_ANALYSED and image.message == CANCELLED:
            self.findings.clear("Not analysed: the analysis was cancelled. Analysis ▸ Re-analyse study runs it.")
        elif image.state == State.NOT_ANALYSED:
            findings.clear(f"Not analysed — no model is available.\n{self.state.model.message}\n"
                           f"{backend.no_model_hint(self.state.model.message)}")
        elif image.state == State.ANALYSING:
            self.findings.clear("Loading the model…" if self.state.model.phase is ModelPhase.LOADING
                                else "Analysing…")
        elif image.state == State.QUEUED or prediction is None:
            self.findings.clear("Loading the model… the findings follow when it is ready."
                                if self.state.model.phase is ModelPhase.LOADING else "Queued for analysis…")
        elif image.state == State.REJECTED:
            self.findings.show_rejection(list(prediction.gate.reasons) or ["rejected by the input check"])
        else:
            engine = self.engine()
            not_covered = list(getattr(engine, "not_covered", []) or [])
            self.findings.show_prediction(prediction, not_covered, self.auroc_by_label())
            self._panel_shows = (image.key, prediction, engine)

    def _findings_on_canvas(self, image: ImageRecord, auto_select: bool) -> None:
        """The image's analysed region, lung outline and selected (or top) finding's map on the canvas."""
        prediction = image.prediction
        if prediction is None or image.state != State.DONE:
            self.canvas.clear_overlay()
            self.canvas.set_analysed_region(None)
            self.canvas.set_lung_outline(None)
            return
        self.show_analysed_region(prediction)
        self.canvas.set_lung_outline(getattr(prediction, "lung_outline", None))
        self.ask_outline(image)
        label = self.selected_label
        if label is None and auto_select:
            top = image.top_finding()
            label = top.label if top is not None and top.positive else None
        if label is not None:
            self.show_finding(label)
        else:
            self.canvas.clear_overlay()
        self.findings_shown(image.key)

    def auroc_by_label(self) -> dict[str, float]:
        """The loaded card's validation AUROC per label (read from the card once per card, not per film shown)."""
        card = getattr(self.engine(), "card", None)
        if self._auroc is None or self._auroc[0] is not card:
            out = {}
            for label, entry in backend.validation_table(card).items():
                value = backend.metric(entry, "auroc", "AUROC", "auc")
                if isinstance(value, int | float):
                    out[label] = float(value)
            self._auroc = (card, out)
        return dict(self._auroc[1])

    def show_analysed_region(self, prediction: Prediction) -> None:
        shown = analysed_region(prediction.letterbox) if self.canvas.has_image() else None
        if shown is None:
            self.canvas.set_analysed_region(None)
        else:
            self.canvas.set_analysed_region(*shown)

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
                f"({percent(finding.threshold)}), not flagged — maps are drawn for flagged findings and "
                "“check” items only."
            )
        else:
            self.canvas.set_overlay(overlay, label, finding.cam_peak)
            self.canvas.set_overlay_visible(self.heatmap().isChecked())
        self.message(
            f"{label}: probability {finding.probability:.3f}, operating point {finding.threshold:.3f}"
            + (" — above it" if finding.positive else " — below it")
        )

    def ask_outline(self, image: ImageRecord) -> None:
        """Find the displayed film's lung fields in the background when its analysis did not (it was not on
        screen then), once per prediction."""
        prediction, decoded = image.prediction, self.images.peek(image.key)
        if prediction is None or prediction.lung_outline or decoded is None:
            return
        if self.outline_asked.get(image.key) != id(prediction):
            self.outline_asked[image.key] = id(prediction)
            self.pipeline.find_outline(image.key, decoded.image)

    def on_outline(self, key: str, contours: list[np.ndarray]) -> None:
        entry = self.worklist.entry(key)
        if entry is None or entry.image.prediction is None or entry.image.state != State.DONE:
            return
        entry.image.prediction.lung_outline = contours
        if key == self.displayed_image:
            self.canvas.set_lung_outline(contours)

    def set_lung_outline_visible(self, visible: bool) -> None:
        self.canvas.set_lung_outline_visible(visible)

    def set_heatmap_visible(self, visible: bool) -> None:
        if self.heatmap().isChecked() != visible:
            self.heatmap().setChecked(visible)
            return
        self.findings.heatmap_check.blockSignals(True)
        self.findings.heatmap_check.setChecked(visible)
        self.findings.heatmap_check.blockSignals(False)
        self.canvas.set_overlay_visible(visible)

    # --- identifiers ---

    def apply_identifier_mode(self) -> None:
        """Redraw every displayed text after the state's hide-identifiers flag changed."""
        hide = self.state.hide_identifiers
        self.update_title()
        self.update_annotations()
        study, image = self.current_study(), self.current_image()
        if study is not None:
            self.status_for_study(study)
        else:
            self.status.clearMessage()
        if self.canvas.message() and image is not None and image.state == State.ERROR and study is not None:
            self.canvas.show_message(f"This file could not be opened.\n{scrub(image.message, study, hide)}")
        if study is not None and image is not None:
            self.fill_image_combo(study, image)
        if self.displayed_image:
            self.refresh_findings()
        self.refresh_info()

    def update_title(self) -> None:
        study = self.current_study()
        if study is None:
            self.set_title(f"cxrviewer — {NOTICE.lower()}")
            return
        hide = self.state.hide_identifiers
        parts = [study.title(hide, self.current_image())]
        if study.date_text(hide):
            parts.append(study.date_text(hide))
        self.set_title(f"{' · '.join(parts)} — cxrviewer")

    def update_annotations(self) -> None:
        study, image, shown = self.current_study(), self.current_image(), self.canvas.image
        if study is None or image is None or shown is None:  # shown: the canvas has an image
            return
        hide = self.state.hide_identifiers
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

    def status_for_study(self, study: StudyRecord) -> None:
        hide = self.state.hide_identifiers
        top = study.top_finding()
        text = f"{study.title(hide)}: {study.state.value}"
        if top is not None and top[0].positive:
            text += f" — top finding {top[0].label} {percent(top[0].probability)}"
        elif study.message:
            text += f" — {scrub(study.message, study, hide)}"
        self.message(text)


def analysed_region(box: Letterbox) -> tuple[tuple[float, float, float, float], str] | None:
    """The outline worth drawing over the film for a prediction's letterbox, in original pixels, and its note:
    the crop region a thorax-crop model read, or the whole film when letterboxing padded it; None when the
    model read the whole film without padding (nothing to point out)."""
    cropped = bool(getattr(box, "cropped", False))
    if not (cropped or box.pad_x or box.pad_y):
        return None
    x, y, w, h = box.region
    what = "analysed region (thorax crop)" if cropped else "analysed region"
    return (float(x), float(y), float(w), float(h)), f"{what} · letterboxed to {box.size}×{box.size} px"
