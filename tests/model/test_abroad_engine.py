"""The bundled engine carries the abroad check into its gate result, the JSON contract and the DICOM SR."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import pytest

from cxrviewer.imaging import Image, load_image
from cxrviewer.model.abroad import LINES
from cxrviewer.model.inference import Engine, Prediction
from cxrviewer.report.dicom_sr import ABROAD
from cxrviewer.report.export import export_study
from cxrviewer.report.json_report import result_entry
from cxrviewer.train.shift import shift_image


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.bundled(threads=1)


@pytest.fixture(scope="module")
def film(shared_data: Path) -> Image:
    """An NIH film in a DICOM wrapper (1024 px), plain."""
    return load_image(shared_data / "dicom" / "udacity_nih_test1.dcm")


@pytest.fixture(scope="module")
def drained(film: Image) -> Image:
    return shift_image(film, "chest_drain", seed=1)


@pytest.fixture(scope="module")
def predictions(engine: Engine, film: Image, drained: Image) -> tuple[Prediction, Prediction]:
    return engine.predict(film), engine.predict(drained)


def test_a_drain_makes_the_film_abroad_and_findings_stay(predictions: tuple[Prediction, Prediction],
                                                          engine: Engine) -> None:
    plain, drained = predictions
    assert plain.gate.abroad is not None and not plain.gate.abroad.warns
    assert not any("unlike the training films" in w for w in plain.gate.warnings)
    abroad = drained.gate.abroad
    assert abroad is not None and abroad.warns and LINES in abroad.reasons
    assert abroad.message in drained.gate.warnings and drained.gate.ok
    assert "Pneumothorax" in abroad.labels and "less reliable" in (drained.gate.message or "")
    assert {f.label for f in drained.findings} == set(engine.labels)  # nothing withheld


def test_json_carries_the_verdict_beside_the_old_keys(predictions: tuple[Prediction, Prediction]) -> None:
    plain, drained = (result_entry("film.dcm", p) for p in predictions)
    for entry in (plain, drained):
        assert {"path", "status", "message", "image_size", "view", "findings", "abroad"} <= entry.keys()
        assert entry["status"] == "ok" and entry["findings"]
    assert plain["abroad"]["warn"] is False and plain["message"] is None
    assert drained["abroad"]["warn"] is True and drained["abroad"]["lines"] > 1
    assert "Pneumothorax" in drained["abroad"]["less_reliable"]
    assert [r["kind"] for r in drained["abroad"]["reasons"]] == ["lines"]
    assert "unlike the training films" in drained["message"]


def test_torch_gives_the_same_verdict(drained: Image, predictions: tuple[Prediction, Prediction]) -> None:
    torch_engine = Engine.bundled(threads=1, backend="torch")
    assert torch_engine.predict(drained).gate.abroad == predictions[1].gate.abroad


def test_sr_marks_every_finding_of_a_film_abroad(tmp_path: Path, film: Image, drained: Image, engine: Engine,
                                                  predictions: tuple[Prediction, Prediction]) -> None:
    flagged = []
    for name, image, prediction in (("plain", film, predictions[0]), ("drained", drained, predictions[1])):
        (sr_path,) = export_study(image, prediction, engine.card, tmp_path / name, formats="sr")
        groups = hd.sr.srread(sr_path).content.get_image_measurement_groups()
        flagged.append([any(e.name.value == ABROAD.value and e.value.meaning == "Yes"
                            for e in g.get_qualitative_evaluations()) for g in groups])
    assert not any(flagged[0]) and flagged[1] and all(flagged[1])
