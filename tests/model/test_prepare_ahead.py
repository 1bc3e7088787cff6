"""`Engine.prepare` (the work before the network, done ahead on another core) gives the same second opinion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrviewer.imaging import Image, load_image
from cxrviewer.model.inference import Engine, Prediction


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.bundled(threads=1)


@pytest.fixture(scope="module")
def films(shared_data: Path, pydicom_data: Path) -> list[Image]:
    """NIH PNGs, the shared DICOMs (8-bit DX, JPEG 2000 CR) and a non-chest film the gate rejects."""
    nih = sorted((shared_data / "nih" / "images").glob("*.png"))[:3]
    dicom = [shared_data / "dicom" / "udacity_nih_test1.dcm", shared_data / "dicom" / "pydicom-data_RG1_J2KI.dcm"]
    tibia = shared_data / "dicom" / "edge_cases" / "pydicom-data_RG3_J2KI_tibia.dcm"
    return [load_image(p) for p in (*nih, *dicom, tibia)]


def same(a: Prediction, b: Prediction) -> None:
    assert a.gate.status == b.gate.status and a.gate.reasons == b.gate.reasons and a.gate.warnings == b.gate.warnings
    assert [(f.label, f.probability, f.positive, f.triage, f.cam_peak) for f in a.findings] == \
        [(f.label, f.probability, f.positive, f.triage, f.cam_peak) for f in b.findings]
    assert np.array_equal(a.cams_logit, b.cams_logit) and a.letterbox == b.letterbox and a.image_size == b.image_size


def test_prepared_ahead_gives_the_same_opinion(engine: Engine, films: list[Image]) -> None:
    statuses = set()
    for image in films:
        prepared = engine.prepare(image)
        same(engine.predict(image, prepared=prepared), engine.predict(image))
        statuses.add(engine.predict(image).gate.status.value)
    assert statuses >= {"ok", "rejected"}  # both paths seen: the network's and the gate's


def test_a_rejected_film_prepared_ahead_still_runs_when_forced(engine: Engine, films: list[Image]) -> None:
    tibia = films[-1]
    prepared = engine.prepare(tibia)
    assert prepared.reasons and prepared.network is None  # nothing prepared for a network the gate refuses
    forced = engine.predict(tibia, force=True, prepared=prepared)
    assert forced.findings and forced.gate.overridden
    same(forced, engine.predict(tibia, force=True))


def test_another_engines_or_films_preparation_is_not_used(engine: Engine, films: list[Image],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    other = Engine.bundled(threads=1)
    image = films[0]
    prepared = other.prepare(image)
    calls = []
    real = engine._prepare
    monkeypatch.setattr(engine, "_prepare", lambda *a, **k: calls.append(1) or real(*a, **k))
    same(engine.predict(image, prepared=prepared), engine.predict(image))
    assert len(calls) == 2  # prepared again both times: the other engine's input is never trusted
    calls.clear()
    engine.predict(image, prepared=engine.prepare(image))
    assert len(calls) == 1  # only `prepare` itself
    calls.clear()
    same(engine.predict(films[1], prepared=engine.prepare(image)), engine.predict(films[1]))
    assert len(calls) == 3  # another film's preparation is not used either
