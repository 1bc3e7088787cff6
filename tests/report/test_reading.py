"""How findings are read, the same in every export: reading order, summary line, near cutoff, wording, one
probability format, and the reader's measurements and lung outline (bundled card's cutoffs, real films)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pytest
from pypdf import PdfReader

from cxrviewer.report import reading
from cxrviewer.report.dicom_sr import label_of
from cxrviewer.report.export import export_study
from cxrviewer.report.marks import COLOURS, MeasureLine, ReaderMarks
from cxrviewer.report.render import _finding_rows


@pytest.fixture
def case(udacity_prediction, reading_findings):  # noqa: ANN001, ANN201
    """The engine's real prediction of a real film with the findings of `READING_CASE`."""
    return dataclasses.replace(udacity_prediction, findings=reading_findings, _cache={})


def _text(path: Path) -> str:
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(path).pages)


def test_reading_order_puts_flagged_first_by_margin_then_checks_then_the_rest(reading_findings) -> None:
    order = [f.label for f in reading.reading_order(reading_findings)]
    # Lung Opacity 46 % (unflagged) comes after Atelectasis 24 % (flagged); No Finding is not a row
    assert order == ["Cardiomegaly", "Atelectasis", "Pneumothorax", "Lung Opacity", "Pleural Effusion", "Edema"]
    assert [reading.tier(f) for f in reading.reading_order(reading_findings)] == [
        reading.Tier.FLAGGED, reading.Tier.FLAGGED, reading.Tier.CHECK] + [reading.Tier.NOT_FLAGGED] * 3


def test_a_probability_that_is_not_a_number_reads_last_in_its_group_everywhere(reading_findings) -> None:
    """The worklist's top finding and the panel's first row come from the same order, whatever the numbers."""
    unflagged = [f for f in reading.reading_order(reading_findings) if reading.tier(f) is reading.Tier.NOT_FLAGGED]
    broken = dataclasses.replace(unflagged[0], probability=float("nan"))
    for findings in ([broken, *unflagged[1:]], [*unflagged[1:], broken], [unflagged[1], broken, *unflagged[2:]]):
        order = reading.reading_order(findings)
        assert order[-1] is broken and reading.top_finding(findings) is order[0]


def test_near_cutoff_is_a_band_in_logit_units_around_each_operating_point(reading_findings) -> None:
    near = {f.label for f in reading_findings if reading.near_cutoff(f)}
    assert near == {"Atelectasis", "Lung Opacity"}  # 24 % vs 23.5 %, 46 % vs 50 %; 40 % vs 15 % is not
    by_label = {f.label: f for f in reading_findings}
    assert "near cutoff" in reading.tags(by_label["Lung Opacity"])
    assert reading.tags(by_label["Pneumothorax"]) == ["check"]


def test_summary_line_states_no_finding_honestly(reading_findings) -> None:
    assert reading.summary_line(reading_findings) == (
        "2 findings flagged, 1 to check · No Finding 30% (below its 58% cutoff)")


def test_one_probability_format() -> None:
    assert [reading.percent(p) for p in (0.0, 0.003, 0.005, 0.46, 0.2351, 0.994, 0.995, 0.9999)] == [
        "<1%", "<1%", "1%", "46%", "24%", "99%", ">99%", ">99%"]


def test_unflagged_finding_is_not_called_absent_in_the_pdf(tmp_path, udacity, case, bundled_card) -> None:
    (path,) = export_study(udacity, case, bundled_card, tmp_path, formats="pdf")
    text = _text(path)
    table = text[text.index("Findings"):text.index("In reading order")]
    assert "absent" not in table.replace("not absent", "")
    sens = bundled_card.label_metrics("Lung Opacity").sensitivity
    assert f"Lung Opacity 46% 50% not flagged not flagged at this operating point (sensitivity {sens:.2f}); " \
           "near cutoff" in table
    assert "Atelectasis 24% 24% flagged near cutoff" in table
    assert "Edema <1% 5% not flagged" in table
    labels = [lab for lab in ("Cardiomegaly", "Atelectasis", "Pneumothorax", "Lung Opacity", "Pleural Effusion",
                              "Edema")]
    assert [table.index(lab) for lab in labels] == sorted(table.index(lab) for lab in labels)  # reading order
    assert "2 findings flagged, 1 to check · No Finding 30% (below its 58% cutoff)" in table
    assert "No Finding 30% 58%" not in table  # the summary line, not a row


def test_sr_says_not_flagged_with_the_sensitivity_never_absent(tmp_path, udacity, case, bundled_card) -> None:
    paths = export_study(udacity, case, bundled_card, tmp_path, formats="sr")
    sr = hd.sr.srread(paths[0])
    groups = sr.content.get_image_measurement_groups()
    labels = [label_of(g.finding_type.scheme_designator, g.finding_type.value) for g in groups]
    assert labels == ["No Finding", "Cardiomegaly", "Atelectasis", "Pneumothorax", "Lung Opacity",
                      "Pleural Effusion", "Edema"]
    for group, label in zip(groups, labels, strict=True):
        finding = case.finding(label)
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        assert float(values["Sensitivity at operating point"]) == pytest.approx(
            bundled_card.label_metrics(label).sensitivity, abs=1e-6)
        evaluations = {e.name.meaning: e.value.meaning for e in group.get_qualitative_evaluations()}
        result = evaluations[group.finding_type.meaning]
        assert result != "Absent"
        expected = {"flagged": "Present", "check": "Check: triage point, not a finding"}.get(
            reading.status_word(finding), "Not flagged at this operating point")
        assert result == expected, label
        assert ("Near operating point" in evaluations) == reading.near_cutoff(finding), label


def test_png_rows_use_the_viewers_format_order_and_tags(case) -> None:
    rows = {r[0]: r for r in _finding_rows(case)}
    assert [r for r in rows] == [f.label for f in reading.reading_order(case.findings)]
    assert rows["Edema"][1] == "<1%" == reading.percent(case.finding("Edema").probability)
    assert rows["Lung Opacity"][4] == "near cutoff" and rows["Pneumothorax"][4] == "check"
    assert "No Finding" not in rows


def test_measurements_and_lung_outline_reach_png_and_pdf(tmp_path, udacity, case, bundled_card) -> None:
    start, end = (200.0, 300.0), (800.0, 300.0)
    outline = np.array([[300, 200], [450, 200], [450, 800], [300, 800]], dtype=np.int32)
    marks = ReaderMarks(lines=(MeasureLine("distance", start, end, "600.0 px, no spacing"),),
                        lung_outline=(outline,))
    paths = export_study(udacity, case, bundled_card, tmp_path, formats="png,pdf", annotations=[marks])
    png = next(p for p in paths if p.suffix == ".png")
    rgb = cv2.imread(str(png), cv2.IMREAD_COLOR)[..., ::-1]
    row = rgb[300, 300:700].astype(int)  # the image is 1024 px: drawn at scale 1
    assert (np.abs(row - np.array(COLOURS["distance"])).sum(axis=1) < 40).mean() > 0.9
    column = rgb[300:700, 450].astype(int)
    assert (np.abs(column - np.array(COLOURS["lungs"])).sum(axis=1) < 60).mean() > 0.8
    text = _text(next(p for p in paths if p.suffix == ".pdf"))
    assert "Reader's measurement: 600.0 px, no spacing" in text and "Lung outline" in text

    plain = export_study(udacity, case, bundled_card, tmp_path / "plain", formats="png")
    before = cv2.imread(str(plain[0]), cv2.IMREAD_COLOR)[..., ::-1]
    assert not (np.abs(before[300, 300:700].astype(int) - np.array(COLOURS["distance"])).sum(axis=1) < 40).any()
