"""PDF report: pages, text content, anonymisation (text extracted with pypdf)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pypdf import PdfReader

from cxrviewer.labels import not_covered
from cxrviewer.report.export import export_study
from cxrviewer.report.findings import NO_FINDING
from cxrviewer.report.reading import percent


def _pages(path: Path) -> list[str]:
    return [" ".join(page.extract_text().split()) for page in PdfReader(path).pages]


@pytest.fixture(scope="module")
def two_page(tmp_path_factory, udacity, rg1, udacity_prediction, rg1_prediction, engine) -> Path:
    out = tmp_path_factory.mktemp("pdf")
    (path,) = export_study([udacity, rg1], [udacity_prediction, rg1_prediction], engine.card, out,
                           formats={"pdf"})
    return path


def test_one_page_per_image_with_header_findings_and_model(two_page, udacity_prediction, rg1_prediction,
                                                           engine) -> None:
    pages = _pages(two_page)
    assert len(pages) == 2
    for text, pred, name in ((pages[0], udacity_prediction, "udacity_nih_test1.dcm"),
                             (pages[1], rg1_prediction, "pydicom-data_RG1_J2KI.dcm")):
        assert "NOT FOR DIAGNOSTIC USE" in text
        assert name in text
        for f in pred.findings:  # every finding with probability and operating point ("No Finding": the summary)
            if f.label == NO_FINDING:
                assert f"No Finding {percent(f.probability)} (" in text
                continue
            result = "flagged" if f.positive else "not flagged"
            assert f"{f.label} {percent(f.probability)} {percent(f.threshold)} {result}" in text
        assert "absent" not in text.replace("not absent", "")
        for label in not_covered(engine.labels):
            assert label in text
        assert "report-test-model 0.0.1" in text
        assert "Cardiomegaly 0.550" in text  # validation AUROC from the card
        assert "NIH ChestX-ray14" in text
    assert "Image 1 of 2" in pages[0] and "Image 2 of 2" in pages[1]
    assert "9RG1" in pages[1] and "CompressedSamples, RG1" in pages[1] and "1940-03-05" in pages[1]
    assert "exam Number" in pages[1]


def test_anonymised_pdf_shows_no_identifier(tmp_path, rg1, rg1_prediction, engine, rg1_identifiers) -> None:
    (path,) = export_study(rg1, rg1_prediction, engine.card, tmp_path, formats="pdf", anonymise=True,
                           pseudonym="ANON-0123456789AB")
    (text,) = _pages(path)
    leaks = [k for k, v in rg1_identifiers.items() if v in text]
    assert leaks == []
    for shown in ("1940-03-05", "2004-08-26", "THORAX", "pydicom-data_RG1", "RG1"):
        assert shown not in text
    assert "ANON-0123456789AB" in text and "anonymised" in text
    assert "Pneumothorax" in text  # the findings are still there
    metadata = " ".join(str(v) for v in (PdfReader(path).metadata or {}).values())
    assert "RG1" not in metadata and "CompressedSamples" not in metadata
    assert path.name.startswith("ANON-0123456789AB")


def test_rejected_image_page_says_why(tmp_path, engine, dicom_dir) -> None:
    from cxrviewer.imaging import load_image

    ct = load_image(dicom_dir / "edge_cases" / "udacity_nih_test5.dcm")
    (path,) = export_study(ct, engine.predict(ct), engine.card, tmp_path, formats="pdf")
    (text,) = _pages(path)
    assert "the input check refused this image" in text and "Modality is CT" in text
    assert "present" not in text


def test_pdf_is_written_headless_without_qt(tmp_path) -> None:
    """The PDF writer needs neither a display nor Qt: it never imports PySide6."""
    script = (
        "import sys; from cxrviewer.report.pdf_writer import write_pdf\n"
        "from cxrviewer.report.pdf_content import build_page\n"
        "page = build_page(header=[('Image', 'x.png')], figure=None, map_label=None, map_shown=False,\n"
        "                  prediction=None, card=None, not_assessed=[],\n"
        "                  page_label='Image 1 of 1')\n"
        "write_pdf([page], sys.argv[1])\n"
        "assert not [m for m in sys.modules if m.startswith(('PySide6', 'shiboken6'))]\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    out = tmp_path / "r.pdf"
    subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True, timeout=120)
    (text,) = _pages(out)
    assert "No model result for this image." in text


def test_non_latin_text_survives(tmp_path) -> None:
    from cxrviewer.report.pdf_content import build_page
    from cxrviewer.report.pdf_writer import write_pdf

    page = build_page(header=[("Patient", "Müller, Zoë Øberg"), ("Image", "ß.dcm")], figure=None, map_label=None,
                      map_shown=False, prediction=None, card=None, not_assessed=[], page_label="Image 1 of 1")
    (text,) = _pages(write_pdf([page], tmp_path / "u.pdf"))
    assert "Müller, Zoë Øberg" in text
