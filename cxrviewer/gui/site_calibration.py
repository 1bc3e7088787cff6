"""Site operating points in the viewer (`cxrviewer.model.site`): the active profile, the reader's feedback.

`SiteCalibration` belongs to the main window. When the model loads it applies the site profile marked active
(``sites/active.json``) if it was fitted for this model, and says which operating points are in use on the
findings panel's model line (never silently: "site operating points 'NAME'" or nothing, the card's). The model
card dialog (`cxrviewer.gui.dialogs.ModelCardDialog`) shows the site's points beside the card's, fits a profile
from the feedback collected and reverts to the card; after a change every analysed film is re-decided at the new
points (`site.rethreshold`: no network pass). Analysis ▸ Reader feedback opens `FeedbackDialog`: agree /
disagree per label of the displayed film, saved to ``feedback.jsonl`` in the user's data folder (no path or
name; the film is known by the SHA-256 of its bytes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxrviewer.gui.caches import OverlayCache
from cxrviewer.gui.film_display import FilmDisplay
from cxrviewer.gui.findings_panel import FindingsPanel
from cxrviewer.gui.worklist import Worklist
from cxrviewer.model import feedback, site
from cxrviewer.report.reading import percent, status_word

if TYPE_CHECKING:
    from cxrviewer.gui.dialogs import ModelCardDialog
    from cxrviewer.gui.records import ImageRecord
    from cxrviewer.model.inference import Engine
    from cxrviewer.report.findings import FindingLike

log = logging.getLogger(__name__)

NO_VERDICT = "—"
VERDICT_CHOICES = (NO_VERDICT, feedback.AGREE, feedback.DISAGREE)


def panel_detail(engine: Engine) -> str:
    """What the findings panel's model line adds: the site profile in use ("" for the card's points)."""
    profile = site.applied(engine)
    return f"site operating points '{profile.name}'" if profile is not None else ""


class FeedbackDialog(QDialog):
    """The reader's verdict on each label of one analysed film: agree, disagree or none."""

    def __init__(self, findings: Sequence[FindingLike], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("feedbackDialog")
        self.setWindowTitle("Reader feedback on this film")
        self.resize(520, 460)
        layout = QVBoxLayout(self)
        intro = QLabel("Do you agree with the model's call on each label of this film? The verdicts fit this "
                       "site's operating points (Model card ▸ Fit from feedback). Kept on this computer, without the "
                       "file's name or path.")
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.labels = [str(f.label) for f in findings]
        self.table = QTableWidget(len(findings), 3)
        self.table.setObjectName("feedbackTable")
        self.table.setHorizontalHeaderLabels(["Label", "Model", "Your verdict"])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.combos: dict[str, QComboBox] = {}
        for row, f in enumerate(findings):
            self.table.setItem(row, 0, QTableWidgetItem(str(f.label)))
            self.table.setItem(row, 1, QTableWidgetItem(f"{status_word(f)} ({percent(f.probability)})"))
            combo = QComboBox()
            combo.addItems(VERDICT_CHOICES)
            self.table.setCellWidget(row, 2, combo)
            self.combos[str(f.label)] = combo
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 1)
        self.complete = QCheckBox("I reviewed every label: those left at — agree with the model")
        self.complete.setObjectName("feedbackComplete")
        layout.addWidget(self.complete)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def set_verdict(self, label: str, verdict: str | None) -> None:
        self.combos[label].setCurrentText(verdict or NO_VERDICT)

    def verdicts(self) -> dict[str, str | None]:
        return {lab: (None if c.currentText() == NO_VERDICT else c.currentText()) for lab, c in self.combos.items()}


class SiteCalibration(QObject):
    """The window's site operating points and feedback (see the module docstring).

    It drives the findings panel's model line, the analysed films' decisions (the worklist's studies, their
    cached overlays, the browser's rows: `study_changed`) and the displayed film (`display`: `FilmDisplay`);
    `engine` gives the loaded model (None while it loads); dialogs open over `parent`."""

    def __init__(self, findings: FindingsPanel, display: FilmDisplay, worklist: Worklist, overlays: OverlayCache,
                 engine: Callable[[], Engine | None], study_changed: Callable[[str], None], parent: QWidget) -> None:
        super().__init__(parent)
        self.findings = findings
        self.display = display
        self.worklist = worklist
        self.overlays = overlays
        self.engine = engine
        self.study_changed = study_changed
        self.parent_widget = parent

    def message(self, text: str, ms: int) -> None:
        self.display.message(text, ms)

    # --- the model ---------------------------------------------------------------------------------------

    def on_model_ready(self, engine: Engine) -> None:
        """Apply the active profile when it fits this model; say which operating points are used."""
        name = site.active_name()
        if name is not None:
            try:
                site.apply(engine, site.load(name))
            except site.SiteError as exc:
                log.warning("site profile not applied: %s", exc)
                self.message(f"The model card's operating points are used: {exc}", 20000)
        self._show(engine)

    def _show(self, engine: Engine) -> None:
        from cxrviewer.gui import backend

        self.findings.set_model(engine.name, panel_detail(engine), card_warning=backend.card_warning(engine))
        self.findings.model_label.setToolTip(f"Operating points: {site.describe(engine)}")

    def changed(self) -> None:
        """After the operating points changed: re-decide every analysed film and refresh what is shown."""
        engine = self.engine()
        if engine is None:
            return
        for study in self.worklist.studies.values():
            for image in study.images:
                if image.prediction is not None:
                    site.rethreshold(image.prediction, engine)
                    self.overlays.drop_image(image.key)
            self.study_changed(study.key)
        self._show(engine)
        if self.display.displayed_image:
            self.display.refresh_findings()
        self.message(f"Operating points: {site.describe(engine)}", 15000)

    def card_dialog(self) -> ModelCardDialog:
        """The model card dialog, its site controls wired to `changed`."""
        from cxrviewer.gui.dialogs import ModelCardDialog

        engine = self.engine()
        assert engine is not None  # opened only with a model loaded (`MainWindow.show_model_card` checks)
        dialog = ModelCardDialog(engine, self.parent_widget)
        dialog.operating_points_changed.connect(self.changed)
        return dialog

    # --- feedback ----------------------------------------------------------------------------------------

    def feedback_dialog(self) -> FeedbackDialog | None:
        """The feedback dialog for the displayed film (None, with a message, when it has no findings)."""
        image = self.display.current_image()
        engine = self.engine()
        findings = list(getattr(getattr(image, "prediction", None), "findings", None) or [])
        if image is None or engine is None or not findings:
            self.message("Reader feedback needs an analysed film on screen.", 8000)
            return None
        dialog = FeedbackDialog(findings, self.parent_widget)
        dialog.accepted.connect(lambda: self.save_feedback(image, dialog.verdicts(), dialog.complete.isChecked()))
        return dialog

    def record_feedback(self) -> FeedbackDialog | None:
        """Analysis ▸ Reader feedback on this film…"""
        dialog = self.feedback_dialog()
        if dialog is not None:
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.open()
        return dialog

    def save_feedback(self, image: ImageRecord, verdicts: Mapping[str, str | None], complete: bool) -> bool:
        engine = self.engine()
        if not any(v is not None for v in verdicts.values()) and not complete:
            self.message("No verdict given: nothing saved.", 8000)
            return False
        assert engine is not None  # `feedback_dialog` opens only with a model loaded, which stays
        try:
            record = feedback.record_from_prediction(image.prediction, engine, feedback.film_id(image.path),
                                                     verdicts, complete)
            records = feedback.add_record(site.feedback_log(), record)
        except (OSError, feedback.FeedbackError) as exc:
            self.message(f"Feedback not saved: {exc}", 15000)
            return False
        n = len(feedback.for_model(records, engine.sha256, engine.card_sha256))
        self.message(f"Feedback saved ({n} film{'s' if n != 1 else ''} for this model). Model card ▸ Fit from "
                       "feedback sets this site's operating points from it.", 10000)
        return True
