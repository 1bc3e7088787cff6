"""The typed model card: parsed and validated once, written back unchanged, strict about what it holds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cxrviewer.model.card import CARD_FORMAT, LabelMetrics, ModelCard, ModelError
from cxrviewer.model.weights import load_bundle, save_bundle

#: The card of the model bundled with cxrviewer 0.1.0 (models/cxr-resnet18os16-160.json, written before cards
#: were typed): every later version must read it unchanged.
V1_CARD = Path(__file__).parent / "data" / "card-0.1.0-resnet18os16-160.json"


@pytest.fixture(scope="module")
def bundled() -> tuple[Path, dict]:
    return V1_CARD, json.loads(V1_CARD.read_text(encoding="utf-8"))


def test_first_bundled_card_round_trips_byte_for_byte(bundled: tuple[Path, dict]) -> None:
    path, doc = bundled
    card = ModelCard.read(path)
    assert card.to_json() == doc
    assert card.dumps() == path.read_text(encoding="utf-8")
    assert card.labels == tuple(doc["labels"]) and card.weights.sha256 == doc["weights"]["sha256"]
    assert card.preprocessing.size == card.input_size


def test_typed_answers(bundled: tuple[Path, dict]) -> None:
    path, doc = bundled
    card = ModelCard.read(path)
    metrics = card.label_metrics("Cardiomegaly")
    assert isinstance(metrics, LabelMetrics)
    assert metrics.auroc == doc["validation"]["per_label"]["Cardiomegaly"]["auroc"]
    spread = doc["validation"]["cross_validation"]["per_label"]["Cardiomegaly"]["auroc"]["std"]
    assert card.auroc_fold_std("Cardiomegaly") == spread
    assert card.display_name == f"{doc['name']} {doc['version']}"
    assert all(ds.name for ds in card.datasets)


def test_card_is_immutable_and_changes_are_validated(bundled: tuple[Path, dict]) -> None:
    card = ModelCard.read(bundled[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        card.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        card.thresholds["Cardiomegaly"] = 0.9  # type: ignore[index]
    with pytest.raises(ModelError, match="unknown labels"):
        card.replace(labels=("Covid Detector",), thresholds={"Covid Detector": 0.5})
    assert card.replace(name="renamed").name == "renamed"


def _minimal() -> dict:
    return {"format": CARD_FORMAT, "name": "m", "version": "1", "architecture": "resnet18", "input_size": 128,
            "preprocessing": {"method": "letterbox"}, "labels": ["Edema"], "thresholds": {"Edema": 0.5},
            "weights": {"file": "m.safetensors", "sha256": "0" * 64}}


@pytest.mark.parametrize(("edit", "words"), [
    (lambda d: d.pop("labels"), "lacks labels"),
    (lambda d: d.update(future_key=1), "unknown keys future_key"),
    (lambda d: d["weights"].update(url="http://x"), "weights has unknown keys url"),
    (lambda d: d["preprocessing"].update(clahe=True), "preprocessing has unknown keys clahe"),
    (lambda d: d.update(input_size="128"), "input_size must be an integer"),
    (lambda d: d.update(input_size=16), "input_size must be an integer between 32 and 2048"),
    (lambda d: d.update(thresholds={"Edema": 1.5}), "probabilities in [0, 1]"),
    (lambda d: d.update(thresholds={"Edema": 0.5, "Fracture": 0.5}), "one operating point per label"),
    (lambda d: d.update(labels=["Edema", "Edema"]), "without repeats"),
    (lambda d: d.update(validation={"per_label": {"Edema": {"auroc": "high"}}}), "auroc must be a number"),
    (lambda d: d.update(datasets={"name": "x"}), "datasets must be a list"),
    (lambda d: d.update(format="other/2"), "not a cxrviewer model card"),
])
def test_malformed_cards_are_refused_naming_file_and_problem(edit, words: str) -> None:  # noqa: ANN001
    doc = _minimal()
    ModelCard.from_json(doc, "card.json")  # the minimal card is fine
    edit(doc)
    with pytest.raises(ModelError) as info:
        ModelCard.from_json(doc, "card.json")
    assert str(info.value).startswith("card.json: ") and words in str(info.value), str(info.value)


def test_optional_null_entries_and_old_spellings_still_load() -> None:
    doc = _minimal() | {"description": None, "datasets": ["NIH ChestX-ray14"], "limitations": "small data"}
    card = ModelCard.from_json(doc, "card.json")
    assert card.description is None and card.datasets[0].name == "NIH ChestX-ray14"
    assert card.limitations == ("small data",)
    written = card.to_json()
    assert written["description"] is None and "created" not in written  # null stays null, absent stays absent


def test_save_bundle_accepts_a_typed_card(tmp_path: Path, bundled: tuple[Path, dict]) -> None:
    from cxrviewer.model.network import build_network

    card = ModelCard.read(bundled[0])
    net = build_network("resnet18", len(card.labels))
    path = save_bundle(net, card.replace(name="copy", gate=None), tmp_path / "copy.json", fp16=False)
    loaded = load_bundle(path).card
    assert loaded.name == "copy" and loaded.architecture == "resnet18" and loaded.gate is None
    assert loaded.validation == card.validation and loaded.weights.dtype == "float32"
