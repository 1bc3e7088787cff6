"""Reports name the model card's SHA-256 beside the weights'; a card edited after sealing (loaded on explicit
request) is called a "modified model card" in the PDF, the DICOM SR and the JSON export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pypdf import PdfReader

from cxrviewer.model.card import MODIFIED_CARD
from cxrviewer.model.inference import Engine
from cxrviewer.report.export import export_study


@pytest.fixture(scope="module")
def modified(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """The report engine's bundle copied with two operating points edited, loaded with allow_modified_card."""
    folder = tmp_path_factory.mktemp("modified")
    source = engine.bundle.card_path
    shutil.copy2(source.parent / engine.card.weights.file, folder / engine.card.weights.file)
    doc = json.loads(source.read_text(encoding="utf-8"))
    doc["thresholds"].update({"Pneumothorax": 0.999, "Cardiomegaly": 0.0})
    (folder / source.name).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return Engine.from_card(folder / source.name, allow_modified_card=True)


def _export(engine: Engine, image: Any, folder: Path) -> dict[str, Path]:
    prediction = engine.predict(image)
    paths = export_study(image, prediction, engine.card, folder, formats="pdf,sr,json")
    return {"".join(p.suffixes[-2:]): p for p in paths}


def _pdf_text(path: Path) -> str:
    return " ".join(" ".join(page.extract_text().split()) for page in PdfReader(path).pages)


def _sr_text(path: Path) -> str:
    ds = pydicom.dcmread(path)
    return " ".join([str(ds.SeriesDescription)] + [str(e.value) for e in ds.iterall() if e.keyword == "TextValue"])


def test_sealed_card_hash_is_reported_beside_the_weights(engine: Engine, udacity: Any, tmp_path: Path) -> None:
    files = _export(engine, udacity, tmp_path)
    pdf = _pdf_text(files[".cxr.pdf"])
    assert f"weights SHA-256 {engine.sha256[:16]}" in pdf and f"card SHA-256 {engine.card_sha256[:16]}" in pdf
    assert MODIFIED_CARD not in pdf.lower()
    sr = _sr_text(files[".sr.dcm"])
    assert f"model card SHA-256 {engine.card_sha256} (sealed)" in sr and engine.sha256 in sr
    assert MODIFIED_CARD not in sr.lower()
    model = json.loads(files[".cxr.json"].read_text())["model"]
    assert model["card"] == "sealed" and model["card_sha256"] == engine.card_sha256


def test_modified_card_is_named_in_pdf_sr_and_json(modified: Engine, engine: Engine, udacity: Any,
                                                   tmp_path: Path) -> None:
    assert modified.card_sha256 != engine.card_sha256
    files = _export(modified, udacity, tmp_path)
    pdf = _pdf_text(files[".cxr.pdf"])
    assert MODIFIED_CARD in pdf.lower() and f"card SHA-256 {modified.card_sha256[:16]}" in pdf
    ds = pydicom.dcmread(files[".sr.dcm"])
    assert MODIFIED_CARD in str(ds.SeriesDescription) and len(str(ds.SeriesDescription)) <= 64
    sr = _sr_text(files[".sr.dcm"])
    assert f"model card SHA-256 {modified.card_sha256} (modified)" in sr and MODIFIED_CARD in sr.lower()
    model = json.loads(files[".cxr.json"].read_text())["model"]
    assert model["card"] == "modified" and MODIFIED_CARD in model["card_note"].lower()
