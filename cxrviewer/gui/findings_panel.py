"""The second reader's panel: a summary line, every label in reading order with its bar and operating point,
and the gate's verdict.

The order, the summary line ("No Finding" is not a row), the "near cutoff" tag and the probability format are
those of `cxrviewer.report.reading`, which the exports use too. Observations the model does not cover are
listed greyed as "not assessed by this model" and are never drawn as negative. Clicking a finding asks the
main window to show its heat map (flagged findings and "check" rows have one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QEnterEvent,
    QFont,
    QFontMetricsF,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPolygonF,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from cxrviewer.report import reading
from cxrviewer.report.reading import percent

if TYPE_CHECKING:
    from cxrviewer.model.inference import Prediction
    from cxrviewer.report.findings import FindingLike

POSITIVE = QColor(255, 138, 61)  # above the operating point
NEGATIVE = QColor(92, 132, 170)
TRIAGE = QColor(232, 196, 64)  # above a high-sensitivity triage point, below the finding point
TRACK = QColor(43, 48, 56)
TEXT = QColor(226, 229, 234)
MUTED = QColor(120, 126, 136)
SELECTED = QColor(48, 62, 80)
HOVER = QColor(36, 42, 52)

LEGEND = ("Bar: probability", "▼ tick: operating point", "bold: flagged",
          f"{reading.NEAR_CUTOFF}: too close to call")


class FindingRow(QWidget):
    """One label: name, probability, bar with the operating point as a tick."""

    clicked = Signal(str)

    def __init__(
        self, label: str, finding: FindingLike | None = None, auroc: float | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.label = label
        self.finding: FindingLike | None = None  # None: not assessed by this model
        self.selected = False
        self._hover = False
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.set_finding(finding, auroc)

    def set_finding(self, finding: FindingLike | None, auroc: float | None = None) -> None:
        """Show another film's result for this label (the panel reuses its rows from film to film)."""
        label = self.label
        self.finding = finding
        self.selected = self._hover = False
        self.setAccessibleName(self.text())
        self.updateGeometry()  # an assessed row is taller
        self.update()
        if finding is None:
            self.unsetCursor()
            self.setToolTip(
                f"{label}: not assessed by this model (it was not trained on this observation); "
                "this is not a negative result."
            )
        else:
            side = "above" if finding.positive else "below"
            tip = (
                f"{label}: probability {finding.probability:.3f}, {side} the operating point "
                f"{finding.threshold:.3f} ({'flagged' if finding.positive else 'not flagged: not the same as absent'})."
            )
            if reading.near_cutoff(finding):
                tip += (f"\nNear cutoff: within {reading.NEAR_CUTOFF_LOGIT} logit of the operating point; another "
                        "copy of the same film (other size or compression) can fall on the other side.")
            if auroc is not None:
                tip += f"\nValidation AUROC {auroc:.3f}."
            if getattr(finding, "triage", False):
                tip += (f"\nTriage: above the high-sensitivity triage point for {label} (it catches most cases "
                        "and raises many false alarms): check the film. Not a finding.")
            note = getattr(finding, "note", None)
            if note:
                tip += f"\n{str(note).capitalize()}."
            if finding.positive or getattr(finding, "triage", False):
                tip += "\nClick to show where the model looked."
            else:
                tip += "\nBelow the operating point: no heat map is drawn."
            self.setToolTip(tip)
            self.setCursor(Qt.CursorShape.PointingHandCursor)

    @property
    def assessed(self) -> bool:
        return self.finding is not None

    @property
    def positive(self) -> bool:
        return bool(self.finding is not None and self.finding.positive)

    @property
    def probability(self) -> float | None:
        return None if self.finding is None else float(self.finding.probability)

    def text(self) -> str:
        if self.finding is None:
            return f"{self.label}: not assessed by this model"
        words = (["flagged"] if self.positive else []) + reading.tags(self.finding)
        suffix = f" ({', '.join(words)})" if words else ""
        return f"{self.label}: {percent(self.finding.probability)}{suffix}"

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(240, 42 if self.assessed else 26)

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return self.sizeHint()

    def set_selected(self, selected: bool) -> None:
        self.selected = selected
        self.update()

    def enterEvent(self, event: QEnterEvent) -> None:  # noqa: N802
        self._hover = True
        self.update()

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802
        self._hover = False
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self.assessed:
            self.clicked.emit(self.label)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = self.rect().adjusted(2, 1, -2, -1)
        if self.selected:
            p.fillRect(r, SELECTED)
        elif self._hover and self.assessed:
            p.fillRect(r, HOVER)
        font = QFont(self.font())
        if self.finding is None:
            font.setItalic(True)
            p.setFont(font)
            p.setPen(MUTED)
            p.drawText(
                r.adjusted(10, 0, -10, 0),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                self.label,
            )
            p.drawText(
                r.adjusted(10, 0, -10, 0),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                "not assessed",
            )
            p.end()
            return
        f = self.finding
        triage = reading.is_check(f)
        colour = TRIAGE if triage else (POSITIVE if f.positive else NEGATIVE)
        font.setBold(f.positive)
        p.setFont(font)
        fm = p.fontMetrics()
        text_rect = QRectF(r.left() + 10, r.top() + 3, r.width() - 20, fm.height())
        tags = reading.tags(f)
        tag_font = QFont(font)  # the tags a point smaller: a narrow panel keeps the finding's name whole
        tag_font.setPointSizeF(max(6.5, font.pointSizeF() - 1))
        tag_text = "".join(f" · {t}" for t in tags)
        tag_width = QFontMetricsF(tag_font).horizontalAdvance(tag_text) if tags else 0.0
        value = percent(f.probability)
        p.setPen(TEXT if f.positive else QColor(196, 200, 207))
        p.drawText(
            text_rect,
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            fm.elidedText(self.label, Qt.TextElideMode.ElideRight,
                          int(text_rect.width() - fm.horizontalAdvance(value) - tag_width - 8)),
        )
        p.setPen(colour if f.positive or triage else QColor(196, 200, 207))
        p.drawText(text_rect.adjusted(0, 0, -tag_width, 0), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                   value)
        if tags:
            p.setFont(tag_font)
            p.drawText(text_rect, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, tag_text)
            p.setFont(font)
        bar = QRectF(r.left() + 10, text_rect.bottom() + 5, r.width() - 20, 7)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(TRACK)
        p.drawRoundedRect(bar, 3, 3)
        fill = QRectF(bar.left(), bar.top(), max(2.0, bar.width() * f.probability), bar.height())
        p.setBrush(colour)
        p.drawRoundedRect(fill, 3, 3)
        x = bar.left() + bar.width() * f.threshold  # the operating point
        p.setPen(QPen(QColor(245, 245, 245), 2))
        p.drawLine(QPointF(x, bar.top() - 3), QPointF(x, bar.bottom() + 3))
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(245, 245, 245))
        p.drawPolygon(
            QPolygonF(
                [QPointF(x - 3, bar.top() - 5), QPointF(x + 3, bar.top() - 5), QPointF(x, bar.top() - 2)]
            )
        )
        p.end()


class FindingsPanel(QWidget):
    """Ranked findings of the displayed image, gate verdict, heat-map controls and the disclaimer."""

    finding_selected = Signal(str)
    analyse_anyway = Signal()
    model_card_requested = Signal()
    heatmap_toggled = Signal(bool)
    opacity_changed = Signal(float)
    findings_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("findingsPanel")
        self.setMinimumWidth(self._row_room())
        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 10, 10, 8)
        outer.setSpacing(8)

        header = QHBoxLayout()
        title = QLabel("Second reader")
        title.setObjectName("panelTitle")
        header.addWidget(title)
        header.addStretch(1)
        self.model_button = QToolButton()
        self.model_button.setObjectName("modelCardButton")
        self.model_button.setText("Model card")
        self.model_button.setToolTip("The model's name, data and validation AUROC per label")
        self.model_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.model_button.clicked.connect(self.model_card_requested)
        header.addWidget(self.model_button)
        outer.addLayout(header)
        self.model_label = QLabel("Model: loading…")
        self.model_label.setObjectName("modelLabel")
        self.model_label.setWordWrap(True)
        outer.addWidget(self.model_label)
        self.card_label = QLabel()  # "Modified model card: ..." while such a card is loaded
        self.card_label.setObjectName("modifiedCardLabel")
        self.card_label.setWordWrap(True)
        self.card_label.hide()
        outer.addWidget(self.card_label)

        self.gate_frame = QFrame()
        self.gate_frame.setObjectName("gateFrame")
        gate_layout = QVBoxLayout(self.gate_frame)
        gate_layout.setContentsMargins(10, 8, 10, 8)
        self.gate_label = QLabel()
        self.gate_label.setObjectName("gateLabel")
        self.gate_label.setWordWrap(True)
        gate_layout.addWidget(self.gate_label)
        self.anyway_button = QPushButton("Analyse anyway")
        self.anyway_button.setObjectName("analyseAnyway")
        self.anyway_button.setToolTip(
            "Run the model despite the input check; results are marked as overridden"
        )
        self.anyway_button.clicked.connect(self.analyse_anyway)
        gate_layout.addWidget(self.anyway_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.gate_frame.hide()
        outer.addWidget(self.gate_frame)

        self.warning_label = QLabel()
        self.warning_label.setObjectName("warningLabel")
        self.warning_label.setWordWrap(True)
        self.warning_label.hide()
        outer.addWidget(self.warning_label)

        self.status_label = QLabel("Open a study to see the model's findings.")
        self.status_label.setObjectName("statusLabel")
        self.status_label.setWordWrap(True)
        outer.addWidget(self.status_label)

        self.summary_label = QLabel()  # "No finding flagged · No Finding 62% (...)": `reading.summary_line`
        self.summary_label.setObjectName("findingsSummary")
        self.summary_label.setWordWrap(True)
        self.summary_label.setToolTip(
            "How many findings are above their operating points, and the model's own \"No Finding\" "
            "probability (not listed as a finding)."
        )
        self.summary_label.hide()
        outer.addWidget(self.summary_label)

        self.findings_scroll = QScrollArea()
        self.findings_scroll.setObjectName("findingsScroll")
        self.findings_scroll.setWidgetResizable(True)
        self.findings_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.findings_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._list = QWidget()
        self._list.setObjectName("findingsList")
        self._list_layout = QVBoxLayout(self._list)
        self._list_layout.setContentsMargins(0, 0, 0, 0)
        self._list_layout.setSpacing(1)
        self._list_layout.addStretch(1)
        self.findings_scroll.setWidget(self._list)
        outer.addWidget(self.findings_scroll, 1)

        overlay = QHBoxLayout()
        self.heatmap_check = QCheckBox("Heat map")
        self.heatmap_check.setChecked(True)
        self.heatmap_check.setToolTip("Show the selected finding's heat map (H)")
        self.heatmap_check.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.heatmap_check.toggled.connect(self.heatmap_toggled)
        overlay.addWidget(self.heatmap_check)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setObjectName("opacitySlider")
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setToolTip("Heat-map opacity")
        self.opacity_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        overlay.addWidget(self.opacity_slider, 1)
        self.opacity_value = QLabel("50%")
        self.opacity_value.setMinimumWidth(34)
        overlay.addWidget(self.opacity_value)
        outer.addLayout(overlay)

        # Non-breaking spaces inside each item: the legend wraps between items, never leaves a word alone.
        legend = QLabel("  ·  ".join(item.replace(" ", "\u00a0") for item in LEGEND))
        legend.setToolTip("Order: flagged findings (furthest above their operating point first), then triage "
                          "checks, then the rest; not-assessed observations last.")
        legend.setObjectName("legendLabel")
        legend.setWordWrap(True)
        outer.addWidget(legend)

        self.rows: list[FindingRow] = []  # the rows shown, in order
        self._rows: dict[str, FindingRow] = {}  # every row made so far, by label (reused from film to film)
        self._not_assessed: QLabel | None = None
        self.selected_label: str | None = None

    def _row_room(self) -> int:
        """The panel's least width: room for "Pleural Effusion 33% · near cutoff" in a row (260-300 px)."""
        bold = QFont(self.font())
        bold.setBold(True)
        small = QFont(bold)
        small.setPointSizeF(max(6.5, bold.pointSizeF() - 1))
        text = (QFontMetricsF(bold).horizontalAdvance("Pleural Effusion 100%")
                + QFontMetricsF(small).horizontalAdvance(f" · {reading.NEAR_CUTOFF}"))
        chrome = 20 + 4 + 20 + 14 + 8  # row text margins, row inset, panel margins, scroll bar, gap
        return int(min(300, max(260, text + chrome)))

    # --- content ------------------------------------------------------------------------------------------

    def set_model(self, name: str | None, detail: str = "", card_warning: str = "") -> None:
        """Model line: its name, or why there is none; `card_warning` ("modified model card") stays shown
        under it while that model is loaded."""
        self.card_label.setText(f"⚠ {card_warning}" if card_warning and name else "")
        self.card_label.setVisible(bool(card_warning and name))
        if name:
            self.model_label.setText(f"Model: {name}" + (f" — {detail}" if detail else ""))
            self.model_button.setEnabled(True)
        else:
            self.model_label.setText(detail or "No model loaded")
            self.model_button.setEnabled(False)

    def clear(self, status: str = "") -> None:
        header = [self._not_assessed] if self._not_assessed is not None else []
        for widget in (*self.rows, *header):  # kept for the next film (`_place`): making rows anew cost 3-4 ms a film
            self._list_layout.removeWidget(widget)  # (a widget not in the layout is left as it is)
            widget.hide()
        self.rows = []
        self.selected_label = None
        self.gate_frame.hide()
        self.warning_label.hide()
        self.summary_label.clear()
        self.summary_label.hide()
        self.status_label.setText(status)
        self.status_label.setVisible(bool(status))
        self.findings_changed.emit()

    def show_rejection(self, reasons: list[str], can_override: bool = True) -> None:
        self.clear()
        text = "<b>Not analysed by the model.</b><br>" + "<br>".join(_escape(r) for r in reasons)
        self.gate_label.setText(text)
        self.anyway_button.setVisible(can_override)
        self.gate_frame.show()
        self.findings_changed.emit()

    def show_prediction(
        self, prediction: Prediction, not_covered: list[str], auroc: dict[str, float] | None = None, note: str = ""
    ) -> None:
        """The summary line, the findings in reading order (`report.reading`) and the uncovered observations
        greyed."""
        self.clear()
        auroc = auroc or {}
        warnings = list(getattr(prediction.gate, "warnings", []) or [])
        if getattr(prediction.gate, "overridden", False):
            reasons = list(getattr(prediction.gate, "reasons", []) or [])
            warnings = [f"Input check overridden: {r}" for r in reasons] + [
                w for w in warnings if w not in reasons
            ]
        if note:
            warnings.insert(0, note)
        if warnings:
            self.warning_label.setText("\n".join(f"⚠ {w}" for w in warnings))
            self.warning_label.show()
        self.summary_label.setText(reading.summary_line(prediction.findings))
        self.summary_label.setVisible(bool(self.summary_label.text()))
        for f in reading.reading_order(prediction.findings):
            self._place(f.label, f, auroc.get(f.label))
        if not_covered:
            header = self._header()
            self._list_layout.insertWidget(self._list_layout.count() - 1, header)
            header.show()
            for label in not_covered:
                self._place(label, None)
        self.status_label.hide()
        self.findings_changed.emit()

    def _place(self, label: str, finding: FindingLike | None, auroc: float | None = None) -> None:
        """The label's row (made once, then reused with this film's result) at the end of the list."""
        row = self._rows.get(label)
        if row is None:
            row = self._rows[label] = FindingRow(label, finding, auroc, self._list)
            row.clicked.connect(self._on_row_clicked)
        else:
            row.set_finding(finding, auroc)
        self._list_layout.insertWidget(self._list_layout.count() - 1, row)
        row.show()
        self.rows.append(row)

    def _header(self) -> QLabel:
        if self._not_assessed is None:
            self._not_assessed = QLabel("Not assessed by this model", self._list)
            self._not_assessed.setObjectName("notAssessedHeader")
            self._not_assessed.setToolTip(
                "The model was not trained on these observations; no result is not a negative result."
            )
        return self._not_assessed

    def set_selected(self, label: str | None) -> None:
        self.selected_label = label
        for row in self.rows:
            row.set_selected(row.label == label)

    def row(self, label: str) -> FindingRow | None:
        return next((r for r in self.rows if r.label == label), None)

    def ranked(self) -> list[tuple[str, float]]:
        """(label, probability) of the assessed rows, in display order."""
        return [(r.label, r.probability) for r in self.rows if r.probability is not None]

    def not_assessed(self) -> list[str]:
        return [r.label for r in self.rows if not r.assessed]

    def set_opacity(self, opacity: float) -> None:
        self.opacity_slider.setValue(round(opacity * 100))

    # --- slots --------------------------------------------------------------------------------------------

    def _on_row_clicked(self, label: str) -> None:
        self.set_selected(label)
        self.finding_selected.emit(label)

    def _on_opacity(self, value: int) -> None:
        self.opacity_value.setText(f"{value}%")
        self.opacity_changed.emit(value / 100.0)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
