"""Findings a reader reads right (issue 20, items 6 and 7): the panel's order, summary line, near-cutoff tag and
probability format are the exports'; the reader's marks reach the exports; layout leftovers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from pypdf import PdfReader
from PySide6.QtGui import QFontMetricsF

from cxrviewer.gui.canvas_overlays import ColourBar
from cxrviewer.gui.findings_panel import FindingsPanel
from cxrviewer.gui.image_view import CanvasTool
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.records import most_abnormal
from cxrviewer.report.pdf_content import finding_rows
from cxrviewer.report.render import _finding_rows

from .conftest import wait_all_finished
from .test_canvas_tools import at_scene, drag
from .test_viewer import open_and_analyse


def prediction_of(findings: list) -> SimpleNamespace:  # noqa: ANN001
    return SimpleNamespace(findings=findings, gate=SimpleNamespace(warnings=[], reasons=[], overridden=False))


@pytest.fixture
def panel(qtbot, reading_findings) -> FindingsPanel:  # noqa: ANN001
    widget = FindingsPanel()
    qtbot.addWidget(widget)
    widget.resize(320, 700)
    widget.show()
    qtbot.waitExposed(widget)
    widget.show_prediction(prediction_of(reading_findings), ["Enlarged Cardiomediastinum", "Fracture"])
    return widget


def test_flagged_finding_is_listed_above_an_unflagged_more_probable_one(panel: FindingsPanel,
                                                                        reading_findings) -> None:  # noqa: ANN001
    labels = [row.label for row in panel.rows]
    # Atelectasis 24 % (cutoff 23.5 %) is flagged, Lung Opacity 46 % (cutoff 50 %) is not
    assert labels.index("Atelectasis") < labels.index("Pneumothorax") < labels.index("Lung Opacity")
    assert labels == ["Cardiomegaly", "Atelectasis", "Pneumothorax", "Lung Opacity", "Pleural Effusion", "Edema",
                      "Enlarged Cardiomediastinum", "Fracture"]  # flagged, check, the rest, not assessed
    assert [label for label, _ in panel.ranked()] == labels[:-2]
    assert most_abnormal(reading_findings).label == labels[0]  # the study row and the default map agree


def test_no_finding_is_the_summary_line_not_a_row(panel: FindingsPanel) -> None:
    assert panel.row("No Finding") is None
    assert panel.summary_label.isVisible()
    assert panel.summary_label.text() == "2 findings flagged, 1 to check · No Finding 30% (below its 58% cutoff)"
    panel.clear("Analysing…")
    assert not panel.summary_label.isVisible()


def test_near_cutoff_is_tagged(panel: FindingsPanel) -> None:
    assert panel.row("Atelectasis").text() == "Atelectasis: 24% (flagged, near cutoff)"
    assert panel.row("Lung Opacity").text() == "Lung Opacity: 46% (near cutoff)"
    assert panel.row("Cardiomegaly").text() == "Cardiomegaly: 40% (flagged)"
    assert panel.row("Pneumothorax").text() == "Pneumothorax: 10% (check)"
    assert "Near cutoff" in panel.row("Lung Opacity").toolTip()
    assert not panel.row("Pneumothorax").grab().isNull()  # paints its tags


def test_viewer_and_exports_print_a_tiny_probability_the_same(panel: FindingsPanel, reading_findings) -> None:  # noqa: ANN001
    prediction = prediction_of(reading_findings)
    shown = panel.row("Edema").text().split(": ")[1]
    png = next(row[1] for row in _finding_rows(prediction) if row[0] == "Edema")
    pdf = next(row.probability for row in finding_rows(prediction) if row.label == "Edema")
    assert shown == png == pdf == "<1%"


def test_reader_marks_reach_png_and_pdf(qtbot, window: MainWindow, dicom_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from cxrviewer.report.marks import COLOURS

    prediction = open_and_analyse(qtbot, window, dicom_dir / "udacity_nih_test2.dcm")
    canvas = window.canvas
    qtbot.waitUntil(lambda: bool(window.findings.rows), timeout=10000)
    canvas.set_tool(CanvasTool.RULER)
    drag(canvas, at_scene(canvas, 200, 500), at_scene(canvas, 800, 500))
    (text,) = canvas.measurements()
    window.table["lungs"].trigger()
    assert canvas.lung_outline_shown() and prediction.lung_outline
    marks = canvas.reader_marks()
    assert [line.kind for line in marks.lines] == ["distance"] and len(marks.lung_outline) == 2

    written = window.export_current(tmp_path, {"png", "pdf"}, anonymise=False)
    pdf = next(p for p in written if p.suffix == ".pdf")
    page = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(pdf).pages)
    assert f"Reader's measurement: {text}" in page and "Lung outline" in page
    png = cv2.imread(str(next(p for p in written if p.suffix == ".png")), cv2.IMREAD_COLOR)[..., ::-1]
    (x0, y0), (x1, y1) = marks.lines[0].start, marks.lines[0].end  # a 1024 px film is exported at scale 1
    middle = png[round((y0 + y1) / 2), round(x0) + 20:round(x1) - 20].astype(int)
    assert (np.abs(middle - np.array(COLOURS["distance"])).sum(axis=1) < 60).mean() > 0.9
    contour = marks.lung_outline[0].reshape(-1, 2)
    on_outline = [png[y, x] for x, y in contour[:: max(1, len(contour) // 40)]]
    assert np.mean([np.abs(c.astype(int) - np.array(COLOURS["lungs"])).sum() < 90 for c in on_outline]) > 0.8


def test_colour_bar_title_is_whole(qtbot) -> None:  # noqa: ANN001
    bar = ColourBar()
    qtbot.addWidget(bar)
    for title, expected in (("Pneumothorax", ["Pneumothorax"]), ("Consolidation", ["Consolidation"]),
                            ("Pleural Effusion", ["Pleural", "Effusion"])):
        bar.set_title(title)
        lines, font = bar.title_layout()
        assert lines == expected
        assert all(QFontMetricsF(font).horizontalAdvance(line) <= bar.width() - 8 for line in lines)


def test_sort_box_and_hide_ids_do_not_overlap(qtbot, make_window, dicom_dir: Path) -> None:  # noqa: ANN001
    window = make_window(size=(1024, 700))
    browser = window.browser
    window.open_paths([dicom_dir / name for name in ("udacity_nih_test1.dcm", "udacity_nih_test2.dcm",
                                                      "udacity_nih_test3.dcm")])
    qtbot.waitUntil(lambda: browser.count_label.text() == "Studies (3)", timeout=10000)  # wider than "Studies"
    qtbot.wait(50)  # the layout settles
    label, combo, button = browser.count_label, browser.sort_combo, browser.hide_button
    assert label.geometry().right() < combo.geometry().left()
    assert combo.geometry().right() < button.geometry().left() and button.geometry().right() < browser.width()
    assert label.width() >= label.sizeHint().width()  # "Studies (3)" whole
    wait_all_finished(qtbot, window, expected_images=3, timeout=60000)


def test_model_name_is_shown_whole_in_a_usual_window(make_window) -> None:  # noqa: ANN001
    window = make_window(size=(1400, 850))
    name = "Model: cxr-lite0os16x3-256-imagenet-box-nih-kermany"
    window.status.model_status.setText(name)
    assert window.status.model_status.text() == name


def test_first_export_dialog_opens_in_documents(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert not (tmp_path / "Documents").exists()  # a fresh account: no Documents folder yet
    assert settings.export_folder == str(tmp_path / "Documents")
    assert (tmp_path / "Documents").is_dir()
    settings.export_folder = tmp_path / "last"
    (tmp_path / "last").mkdir()
    assert settings.export_folder == str(tmp_path / "last")


def test_a_check_row_draws_its_map_and_the_model_card_says_so(qtbot, window: MainWindow,  # noqa: ANN001
                                                               dicom_dir: Path) -> None:
    prediction = open_and_analyse(qtbot, window, dicom_dir / "udacity_nih_test2.dcm")
    qtbot.waitUntil(lambda: bool(window.findings.rows), timeout=10000)
    below = next(f for f in prediction.findings if not f.positive and f.label != "No Finding")
    below.triage = True  # above a triage point, below its finding cutoff: a "check" row
    window.display.refresh_findings()
    assert window.findings.row(below.label).text().endswith("(check)")
    window.display.show_finding(below.label)
    assert window.canvas.overlay_shown()  # where the model looked
    dialog = window.show_model_card()
    assert dialog is not None
    text = dialog.details.toPlainText()
    assert "for flagged findings and for “check” items" in text and "below a finding's operating point" not in text
    dialog.close()
