"""Engine: verified loading, deterministic probabilities on real films, ranking, thread safety."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrviewer.imaging import load_image, model_input
from cxrviewer.model.inference import Engine, Prediction
from cxrviewer.model.preprocess import preprocess
from cxrviewer.model.weights import ModelError, load_bundle

REAL_FILES = ["nih/images/00000001_000.png", "dicom/udacity_nih_test1.dcm", "dicom/pydicom-data_RG1_J2KI.dcm",
              "kermany/images/train_IM-0115-0001.jpeg"]


def _copy_bundle(card: Path, dest: Path) -> Path:
    shutil.copy(card, dest / card.name)
    weights = json.loads(card.read_text())["weights"]["file"]
    shutil.copy(card.parent / weights, dest / weights)
    return dest / card.name


def _probabilities(pred: Prediction) -> dict[str, float]:
    return {f.label: f.probability for f in pred.findings}


@pytest.fixture(scope="module")
def engine(random_card: Path) -> Engine:
    return Engine.from_card(random_card)


def test_probabilities_deterministic_on_real_files(engine: Engine, random_card: Path, shared_data: Path) -> None:
    other = Engine.from_card(random_card)  # a second, independent load
    for rel in REAL_FILES:
        image = load_image(shared_data / rel)
        first = engine.predict(image)
        assert first.gate.status == "ok", (rel, first.gate)
        again = engine.predict(load_image(shared_data / rel))
        assert _probabilities(first) == _probabilities(again)  # bit-identical
        assert _probabilities(other.predict(image)) == _probabilities(first)
        np.testing.assert_array_equal(first.cams_logit, again.cams_logit)


def test_findings_ranked_and_consistent_with_network(engine: Engine, shared_data: Path) -> None:
    image = load_image(shared_data / "dicom" / "pydicom-data_RG1_J2KI.dcm")
    pred = engine.predict(image)
    assert pred.image_size == (image.width, image.height) == (1841, 1955)
    assert pred.view == "frontal"
    assert sorted(f.label for f in pred.findings) == sorted(engine.labels)
    probs = [f.probability for f in pred.findings]
    assert probs == sorted(probs, reverse=True)
    for f in pred.findings:
        assert f.threshold == engine.thresholds[f.label]
        assert f.positive == (f.probability >= f.threshold)
        assert (f.cam_peak is None) == (not f.positive)
        if f.cam_peak is not None:
            assert 0 <= f.cam_peak[0] <= image.width - 1 and 0 <= f.cam_peak[1] <= image.height - 1
    # Same numbers as the network on the one shared preprocessing.
    x, _ = preprocess(model_input(image), engine.input_size)
    with torch.inference_mode():
        direct = torch.sigmoid(engine.network(torch.from_numpy(x)[None]))[0].numpy()
    for i, label in enumerate(engine.labels):
        assert pred.finding(label).probability == pytest.approx(float(direct[i]), abs=1e-6)
    assert pred.cams_logit.shape[0] == len(engine.labels)


def test_operating_points(random_card: Path, shared_data: Path) -> None:
    image = load_image(shared_data / "nih" / "images" / "00000001_000.png")
    default = Engine.from_card(random_card).predict(image)
    sensitive = Engine.from_card(random_card, operating_point="high_sensitivity").predict(image)
    assert _probabilities(default) == _probabilities(sensitive)
    assert all(f.threshold == 0.1 for f in sensitive.findings)
    assert sum(f.positive for f in sensitive.findings) >= sum(f.positive for f in default.findings)


def test_thread_safe_single_engine(engine: Engine, shared_data: Path) -> None:
    images = [load_image(shared_data / rel) for rel in REAL_FILES[:3]]
    expected = [_probabilities(engine.predict(im)) for im in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda i: _probabilities(engine.predict(images[i % 3])), range(12)))
    assert got == [expected[i % 3] for i in range(12)]


def test_tampered_weights_refused(random_card: Path, tmp_path: Path) -> None:
    card = _copy_bundle(random_card, tmp_path)
    weights = tmp_path / json.loads(card.read_text())["weights"]["file"]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit inside the tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256 does not match"):
        Engine.from_card(card)


def test_missing_weights_and_unknown_architecture_refused(random_card: Path, tmp_path: Path) -> None:
    card = _copy_bundle(random_card, tmp_path)
    doc = json.loads(card.read_text())
    (tmp_path / doc["weights"]["file"]).unlink()
    with pytest.raises(ModelError, match="missing"):
        Engine.from_card(card)
    card = _copy_bundle(random_card, tmp_path)
    doc["architecture"] = "vgg11"
    card.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="unknown architecture"):
        Engine.from_card(card)


def test_card_with_other_preprocessing_refused(random_card: Path, tmp_path: Path) -> None:
    card = _copy_bundle(random_card, tmp_path)
    doc = json.loads(card.read_text())
    doc["preprocessing"]["std"] = 0.229
    card.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="preprocessing"):  # even when a modified card is allowed
        Engine.from_card(card, allow_modified_card=True)


def test_card_with_broken_gate_refused(random_card: Path, tmp_path: Path) -> None:
    card = _copy_bundle(random_card, tmp_path)
    doc = json.loads(card.read_text())
    doc["gate"] = {"method": "ppca-mahalanobis/1", "mean": [1, 2, 3]}
    card.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="gate"):  # even when a modified card is allowed
        Engine.from_card(card, allow_modified_card=True)


def test_bundled_model_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import cxrviewer.model.inference as inference

    def no_model() -> Path:
        raise ModelError("no bundled model found in the installation (models/*.json)")

    monkeypatch.setattr(inference, "bundled_card_path", no_model)
    with pytest.raises(ModelError, match="no bundled model"):
        Engine.bundled()


def test_engine_attributes(engine: Engine, random_card: Path) -> None:
    bundle = load_bundle(random_card)
    assert engine.labels == bundle.labels and engine.sha256 == bundle.sha256 and engine.name == bundle.name
    assert "No Finding" in engine.not_covered and "Cardiomegaly" not in engine.not_covered
    assert not engine.has_feature_gate


def test_predict_array_rejects_non_2d(engine: Engine) -> None:
    with pytest.raises(ValueError, match="2-D"):
        engine.predict_array(np.zeros((8, 8, 3), np.float32))
