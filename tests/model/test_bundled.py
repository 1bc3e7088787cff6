"""The bundled model is found without configuration, and a stale older card never wins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrviewer.model import weights
from cxrviewer.model.inference import Engine


def test_bundled_model_loads_and_covers_the_nih_labels() -> None:
    engine = Engine.bundled()
    assert engine.card.to_json()["format"] == weights.CARD_FORMAT
    assert {"Cardiomegaly", "Pleural Effusion", "Pneumothorax", "No Finding"} <= set(engine.labels)
    assert {"Fracture", "Support Devices", "Enlarged Cardiomediastinum"} <= set(engine.not_covered)
    assert engine.card.validation is not None
    assert engine.card.validation.per_label["Cardiomegaly"].auroc is not None


def test_newest_card_wins_over_a_stale_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-old.json").write_text(json.dumps({"created": "2026-01-01T00:00:00+00:00"}))
    (tmp_path / "b-new.json").write_text(json.dumps({"created": "2026-11-27T00:00:00+00:00"}))
    (tmp_path / "c-broken.json").write_text("{not json")
    monkeypatch.setattr(weights.resources, "files", lambda _pkg: tmp_path)
    assert weights.bundled_card_path().name == "b-new.json"
    for p in tmp_path.iterdir():
        p.unlink()
    with pytest.raises(weights.ModelError, match="no bundled model"):
        weights.bundled_card_path()
