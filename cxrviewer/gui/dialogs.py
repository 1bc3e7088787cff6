"""Dialogs: the model card, About (licences and data attributions) and study information."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QTextDocumentFragment
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cxrviewer import __version__
from cxrviewer.gui import backend
from cxrviewer.gui.records import StudyRecord, format_person_name
from cxrviewer.model import feedback, site

if TYPE_CHECKING:
    from cxrviewer.imaging.image import Image
    from cxrviewer.model.card import ModelCard
    from cxrviewer.model.inference import Engine

DISCLAIMER = (
    "Not for diagnostic use. cxrviewer is a research and education tool: its output is a second "
    "opinion to be weighed by a qualified reader, never a diagnosis."
)

NETWORK_USE = (
    "Images and results stay on this computer unless you connect it to a PACS. The app opens network "
    "connections only when you turn on the DICOM receiver (File ▸ PACS connection…, off by default; it "
    "then listens on the address and port you chose and accepts only the AE titles you allowed), press "
    "Test connection there, or send results to a PACS (File ▸ Send results to PACS, or automatically "
    "after each analysis if you enabled that). Nothing is downloaded and nothing is sent anywhere else."
)

LICENCES = [
    ("cxrviewer", "Apache-2.0"),
    ("Qt 6 / PySide6", "LGPL-3.0 (The Qt Company)"),
    ("PyTorch, torchvision", "BSD-3-Clause"),
    ("NumPy", "BSD-3-Clause"),
    ("OpenCV (opencv-python-headless)", "Apache-2.0"),
    ("pydicom", "MIT"),
    ("highdicom", "MIT"),
    ("pynetdicom", "MIT"),
    ("Pillow", "MIT-CMU (HPND)"),
    ("tqdm", "MPL-2.0 / MIT"),
    ("pylibjpeg, pylibjpeg-openjpeg (OpenJPEG: BSD-2-Clause)", "MIT"),
    ("python-gdcm (GDCM)", "BSD-3-Clause"),
    ("safetensors", "Apache-2.0"),
    ("scikit-learn", "BSD-3-Clause"),
    ("Turbo colour map (Google LLC, polynomial approximation)", "Apache-2.0"),
]

DATA_ATTRIBUTIONS = [
    (
        "NIH ChestX-ray14 (training data and the bundled demo images)",
        "Released by the NIH Clinical Center with no restrictions on use. "
        "Data provider: NIH Clinical Center, "
        "https://nihcc.app.box.com/v/ChestXray-NIHCC. Please cite: Wang X, Peng Y, Lu L, Lu Z, Bagheri M, "
        "Summers RM. ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks on Weakly-Supervised "
        "Classification and Localization of Common Thorax Diseases. IEEE CVPR 2017, pp. 3462-3471.",
    ),
    (
        "Kermany pediatric pneumonia chest X-rays (training data)",
        "Kermany DS, Zhang K, Goldbaum M. Labeled Optical Coherence Tomography (OCT) and "
        "Chest X-Ray Images for "
        "Classification. Mendeley Data v2, doi:10.17632/rscbjbr9sj.2, licensed CC BY 4.0 "
        "(https://creativecommons.org/licenses/by/4.0/). Kermany DS et al., Cell 2018;172(5):1122-1131.",
    ),
]


def _dialog_layout(dialog: QDialog, title: str) -> QVBoxLayout:
    dialog.setWindowTitle(title)
    layout = QVBoxLayout(dialog)
    layout.setContentsMargins(16, 14, 16, 12)
    return layout


def _close_buttons(dialog: QDialog, layout: QVBoxLayout) -> None:
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)
    buttons.accepted.connect(dialog.accept)
    layout.addWidget(buttons)


def _dicom_date(value: str) -> str:
    """YYYYMMDD -> YYYY-MM-DD (anything else unchanged)."""
    v = (value or "").strip()
    return f"{v[:4]}-{v[4:6]}-{v[6:8]}" if len(v) == 8 and v.isdigit() else v


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


class ModelCardDialog(QDialog):
    """Name, data and per-label validation metrics of the loaded model, and the operating points in use: the
    card's, or a site profile's beside them (`cxrviewer.model.site`), which it can fit from the reader's feedback,
    switch and revert. `operating_points_changed` fires after any such change."""

    operating_points_changed = Signal()

    def __init__(self, engine: Engine, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelCardDialog")
        self.engine = engine
        card: ModelCard | None = getattr(engine, "card", None)
        layout = _dialog_layout(self, f"Model card — {engine.name}")
        self.resize(780, 680)
        head = QLabel(
            f"<h3 style='margin:0'>{html.escape(str(engine.name))}</h3>"
            f"<div>{html.escape(card.description or '' if card else '')}</div>"
            f"<div style='color:#9aa3ad'>version {html.escape(card.version if card else '?')} · "
            f"{html.escape(card.architecture if card else '?')} · input "
            f"{card.input_size if card else '?'} px · weights SHA-256 "
            f"{html.escape(str(getattr(engine, 'sha256', ''))[:12])}… · card SHA-256 "
            f"{html.escape(card.card_sha256[:12] if card else '?')}… "
            f"({html.escape(card.card_status if card else '?')})</div>"
            + (f"<div style='color:#ff8a70'><b>⚠ {html.escape(note)}</b></div>"
               if card and (note := card.integrity_note()) else "")
        )
        head.setWordWrap(True)
        head.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(head)

        table_rows = backend.validation_table(card)
        in_use = dict(getattr(engine, "thresholds", None) or (card.thresholds if card else {}))
        thresholds = dict(card.thresholds) if card and site.applied(engine) is not None else in_use
        labels = list(getattr(engine, "labels", card.labels if card else ()))
        self.labels = labels
        not_covered = list(getattr(engine, "not_covered", card.not_covered if card else ()))
        self.table = QTableWidget(len(labels) + len(not_covered), 7)
        self.table.setObjectName("validationTable")
        self.table.setHorizontalHeaderLabels(
            ["Label", "AUROC", "Fold ±", "Pos / neg", "Operating point", "Site point", "Sens / spec"]
        )
        tips = [
            "",
            "Validation AUROC (patient-disjoint validation)",
            "Spread of AUROC across folds",
            "Positive / negative validation images",
            "The model card's probability above which a finding is called positive",
            "This site's operating point, when a site profile is in use (AUROC does not change with it)",
            "Sensitivity / specificity at the card's operating point (validation films)",
        ]
        for col, tip in enumerate(tips):
            header_item = self.table.horizontalHeaderItem(col)
            if tip and header_item is not None:
                header_item.setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        for row, label in enumerate(labels):
            entry = table_rows.get(label, {})
            auroc = backend.metric(entry, "auroc", "AUROC", "auc")
            spread = backend.metric(entry, "auroc_std", "auroc_fold_std", "fold_std", "std")
            n_pos = backend.metric(entry, "n_pos", "positives")
            n_neg = backend.metric(entry, "n_neg", "negatives")
            sens = backend.metric(entry, "sensitivity")
            spec = backend.metric(entry, "specificity")
            values = [
                label,
                _fmt(auroc),
                "± " + _fmt(spread) if spread is not None else "",
                f"{_fmt(n_pos)} / {_fmt(n_neg)}" if n_pos is not None else "",
                _fmt(thresholds.get(label)),
                "",
                f"{_fmt(sens, 2)} / {_fmt(spec, 2)}" if sens is not None else "",
            ]
            for col, text in enumerate(values):
                cell = QTableWidgetItem(text)
                if col:
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(row, col, cell)
        for i, label in enumerate(not_covered):
            row = len(labels) + i
            name = QTableWidgetItem(label)
            name.setForeground(Qt.GlobalColor.gray)
            self.table.setItem(row, 0, name)
            not_assessed = QTableWidgetItem("not assessed by this model (no training labels)")
            not_assessed.setForeground(Qt.GlobalColor.gray)
            self.table.setItem(row, 1, not_assessed)
            self.table.setSpan(row, 1, 1, 6)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(24)
        layout.addWidget(self.table, 1)
        self._site_controls(layout)

        details = []
        validation = card.validation.to_json() if card and card.validation else {}
        summary = {k: v for k, v in validation.items() if not isinstance(v, dict | list)}
        if summary:
            details.append("<b>Validation:</b> " + html.escape(", ".join(f"{k} {_fmt(v)}" for k, v in summary.items())))
        for ds in card.datasets if card else ():
            details.append(
                f"<b>Data:</b> {html.escape(ds.name)} — {html.escape(ds.license)}. {html.escape(ds.attribution)}"
            )
        for value, title in ((card.intended_use if card else None, "Intended use"),
                             ("; ".join(card.limitations) if card else None, "Limitations")):
            if value:
                details.append(f"<b>{title}:</b> {html.escape(value)}")
        harmoniser = getattr(engine, "harmoniser", None)
        if harmoniser is not None:
            details.append(f"<b>Input harmonisation:</b> {html.escape(harmoniser.summary())}")
        details.append(
            "<b>Heat maps:</b> class-activation maps of the final layer, shown as a local probability "
            "(the sigmoid of the map) on a fixed 0–100 % scale, for flagged findings and for “check” items: "
            "above a high-sensitivity triage point, where the model looked, not a finding. None is drawn for a "
            "label below both points."
        )
        details.append(f"<b>Card:</b> {html.escape(str(getattr(getattr(engine, 'bundle', None), 'card_path', '')))}")
        self.details = QTextBrowser()
        self.details.setObjectName("modelDetails")
        self.details.setOpenLinks(False)
        self.details.setHtml("<p>" + "</p><p>".join(details) + "</p>")
        self.details.setMaximumHeight(150)
        layout.addWidget(self.details)
        _close_buttons(self, layout)

    # --- site operating points ---------------------------------------------------------------------------

    def _site_controls(self, layout: QVBoxLayout) -> None:
        self.site_label = QLabel()
        self.site_label.setObjectName("siteProfile")
        self.site_label.setWordWrap(True)
        self.site_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.site_label)
        row = QHBoxLayout()
        row.addWidget(QLabel("Operating points:"))
        self.site_combo = QComboBox()
        self.site_combo.setObjectName("siteChoice")
        self.site_combo.setToolTip("The model card's operating points, or a site profile fitted for this model")
        row.addWidget(self.site_combo, 1)
        self.revert_button = QPushButton("Revert to the model's operating points")
        self.revert_button.setObjectName("revertSite")
        self.revert_button.clicked.connect(self.revert_to_card)
        row.addWidget(self.revert_button)
        self.fit_button = QPushButton("Fit from feedback…")
        self.fit_button.setObjectName("fitSite")
        self.fit_button.clicked.connect(self._ask_and_fit)
        row.addWidget(self.fit_button)
        layout.addLayout(row)
        self._refresh_site()
        self.site_combo.activated.connect(self._choose)

    def _refresh_site(self, error: str = "") -> None:
        """Show the operating points in use, the site column and what the buttons can do."""
        engine = self.engine
        profile = site.applied(engine)
        for row, label in enumerate(self.labels):
            text = _fmt(profile.labels[label].threshold) if profile is not None and label in profile.labels else ""
            item = QTableWidgetItem(text)
            item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
            if profile is not None and label in profile.labels and profile.labels[label].note:
                item.setToolTip(profile.labels[label].note)
            self.table.setItem(row, 5, item)
        self.table.setColumnHidden(5, profile is None)
        if profile is not None:
            text = (f"<b>In use: {html.escape(profile.describe())}</b>, method: {html.escape(_METHODS[profile.method])}"
                    ". Probabilities, AUROC and the card's validation figures are unchanged; only where each label "
                    "is called positive moved.")
        else:
            text = "<b>In use: the model card's operating points.</b>"
        films = feedback_films(engine)
        text += f" Reader feedback collected for this model: {films} film{'s' if films != 1 else ''}."
        if error:
            text += f"<div style='color:#ff8a70'><b>{html.escape(error)}</b></div>"
        self.site_label.setText(text)
        self.revert_button.setEnabled(profile is not None)
        self.fit_button.setEnabled(films >= site.MIN_FILMS)
        self.fit_button.setToolTip(f"Fit this site's operating points from the reader's feedback (at least "
                                   f"{site.MIN_FILMS} films; Analysis ▸ Reader feedback on this film)")
        self.site_combo.clear()
        self.site_combo.addItem("Model card", None)
        for stored in site.list_profiles():
            if stored.model_sha256 == str(getattr(engine, "sha256", "")) and \
                    stored.card_sha256 == str(getattr(engine, "card_sha256", "")):
                self.site_combo.addItem(f"Site: {stored.name} ({stored.fitted_from})", stored.name)
        current = self.site_combo.findData(profile.name) if profile is not None else 0
        self.site_combo.setCurrentIndex(max(0, current))

    def _changed(self, error: str = "") -> None:
        self._refresh_site(error)
        self.operating_points_changed.emit()

    def use_profile(self, name: str | None) -> bool:
        """Use a stored site profile (None: the card's points) here and from now on; False (shown) on failure."""
        try:
            site.apply(self.engine, site.load(name) if name is not None else None)
            site.set_active(name)
        except site.SiteError as exc:
            self._refresh_site(str(exc))
            return False
        self._changed()
        return True

    def revert_to_card(self) -> None:
        self.use_profile(None)

    def _choose(self, index: int) -> None:
        name = self.site_combo.itemData(index)
        if name != (getattr(site.applied(self.engine), "name", None)):
            self.use_profile(name)

    def fit_from_feedback(self, name: str) -> site.SiteProfile | None:
        """Fit a profile NAME from the feedback collected for this model, store it and use it."""
        try:
            records = feedback.read_log(site.feedback_log())
            profile = site.fit_feedback(name, self.engine, records, source="feedback collected in the viewer")
            site.save(profile)
        except (site.SiteError, feedback.FeedbackError) as exc:
            self._refresh_site(str(exc))
            return None
        return profile if self.use_profile(profile.name) else None

    def _ask_and_fit(self) -> None:
        name, ok = QInputDialog.getText(self, "Fit site operating points", "Name of this site (e.g. the ward):")
        if ok and name.strip():
            self.fit_from_feedback(name.strip())

    def site_text(self) -> str:
        """What the site line says, as plain text."""
        return QTextDocumentFragment.fromHtml(self.site_label.text()).toPlainText()

    def auroc_text(self, label: str) -> str:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.text() == label:
                cell = self.table.item(row, 1)
                return cell.text() if cell is not None else ""
        return ""


_METHODS = {site.METHOD_FEEDBACK: "each label's point flags the films the reader said lack the finding as often "
                                  "as the card's validation negatives were flagged",
            site.METHOD_UNLABELLED: "each label's point flags as many of the site's films as the card's point "
                                    "flagged validation films (assumes a similar case mix)"}


def feedback_films(engine: Engine) -> int:
    """Films with the reader's feedback for this model (0 when the log cannot be read)."""
    try:
        records = feedback.read_log(site.feedback_log())
    except feedback.FeedbackError:
        return 0
    return len(feedback.for_model(records, str(getattr(engine, "sha256", "")), str(getattr(engine, "card_sha256", ""))))


class AboutDialog(QDialog):
    """What the tool is, the permanent disclaimer, licences and data attributions."""

    def __init__(self, model_card: ModelCard | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("aboutDialog")
        layout = _dialog_layout(self, "About cxrviewer")
        self.resize(640, 600)
        parts = [
            f"<h2 style='margin-bottom:2px'>cxrviewer {html.escape(__version__)}</h2>",
            "<p>An offline second-opinion viewer for chest radiographs: the film, and beside it what a "
            "multi-label neural network sees in it, with where it looked.</p>",
            f"<p style='color:#ff9a5a'><b>{html.escape(DISCLAIMER)}</b></p>",
            f"<p>{html.escape(NETWORK_USE)}</p>",
            "<h3>Data attributions</h3>",
        ]
        for title, text in DATA_ATTRIBUTIONS:
            parts.append(f"<p><b>{html.escape(title)}.</b> {html.escape(text)}</p>")
        for ds in model_card.datasets if model_card else ():
            if "NIH" not in ds.name and "Kermany" not in ds.name:
                parts.append(
                    f"<p><b>{html.escape(ds.name)}.</b> {html.escape(ds.license)} {html.escape(ds.attribution)}</p>"
                )
        parts.append("<h3>Software licences</h3><table cellspacing='0' cellpadding='2'>")
        for name, lic in LICENCES:
            parts.append(
                f"<tr><td>{html.escape(name)}</td><td style='padding-left:14px;color:#9aa3ad'>"
                f"{html.escape(lic)}</td></tr>"
            )
        parts.append("</table>")
        self.text = QTextBrowser()
        self.text.setObjectName("aboutText")
        self.text.setOpenLinks(False)
        self.text.setHtml("".join(parts))
        layout.addWidget(self.text, 1)
        _close_buttons(self, layout)


class StudyInfoDialog(QDialog):
    """Header details of the displayed image; identifiers are masked in "hide identifiers" mode."""

    def __init__(self, record: StudyRecord, image: Image | None, hide_identifiers: bool,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("studyInfoDialog")
        layout = _dialog_layout(self, "Study information")
        self.resize(560, 480)
        hidden = "hidden"
        meta = getattr(image, "meta", None)
        rows: list[tuple[str, str]] = [
            ("Patient name", hidden if hide_identifiers else format_person_name(record.patient_name)),
            ("Patient ID", hidden if hide_identifiers else record.patient_id),
            ("Birth date", hidden if hide_identifiers else _dicom_date(record.birth_date)),
            ("Accession number", hidden if hide_identifiers else record.accession),
            ("Study date", record.date_text(hide_identifiers)),
            ("Study description", record.description),
        ]
        if image is not None and meta is not None:
            spacing = meta.pixel_spacing
            rows += [
                ("Modality", meta.modality),
                ("Body part", meta.body_part),
                ("View position", meta.view_position),
                ("Laterality", meta.laterality),
                ("Photometric", meta.photometric),
                ("Size", f"{image.width} × {image.height} px"),
                ("Pixel spacing", f"{spacing[0]:.3f} × {spacing[1]:.3f} mm" if spacing else ""),
                ("Bits stored", str(meta.bits_stored)),
                ("Format", meta.source_format),
            ]
            rows += [("Note", n) for n in meta.notes]
            rows += [("Flag", f.message) for f in getattr(image, "flags", [])]
            rows.append(("File", hidden if hide_identifiers else str(image.path)))
        self.table = QTableWidget(len(rows), 2)
        self.table.setObjectName("studyInfoTable")
        self.table.setHorizontalHeaderLabels(["Field", "Value"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for i, (k, v) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(k))
            self.table.setItem(i, 1, QTableWidgetItem(v or ""))
        self.table.resizeColumnToContents(0)
        layout.addWidget(self.table, 1)
        _close_buttons(self, layout)

    def texts(self) -> list[str]:
        items = (self.table.item(r, c) for r in range(self.table.rowCount()) for c in range(2))
        return [item.text() for item in items if item is not None]


def shortcuts_box(rows: list[tuple[str, str]], parent: QWidget | None = None) -> QMessageBox:
    """Help ▸ Keyboard shortcuts: (what, keys) rows in a two-column table."""
    cell = "<tr><td>{}</td><td style='padding-left:18px'><b>{}</b></td></tr>"
    cells = "".join(cell.format(html.escape(what), html.escape(keys)) for what, keys in rows)
    box = QMessageBox(parent)
    box.setWindowTitle("Keyboard shortcuts")
    box.setText(f"<table>{cells}</table>")
    return box
