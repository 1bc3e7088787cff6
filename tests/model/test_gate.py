"""Input gate on real files: tags, image statistics and the feature-space check.

What each test shows: tag rejections (tibia, CT, lateral) and image-statistics rejections (real colour
photographs, noise, blank images) need no trained model. The feature-space check is exercised with an
*untrained* ResNet-18 fitted on 155 NIH films (`gated_card`): it shows the statistics are fitted, stored
in the card and scored so that held-out NIH films, the chest DICOMs and Kermany films pass, and that the
tibia with its tags rewritten to CHEST is still caught from its pixels. How strongly a trained network
separates chest from non-chest images is measured with the real model (tests/bench/bench_predict.py
--gate), not asserted here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
import sklearn.datasets

from cxrviewer.imaging import load_image
from cxrviewer.model import gate as gating
from cxrviewer.model.inference import FEATURE_REJECT, FEATURE_WARNING, Engine

TIBIA = "dicom/edge_cases/pydicom-data_RG3_J2KI_tibia.dcm"
PHOTOS = Path(sklearn.datasets.__file__).parent / "images"  # china.jpg, flower.jpg: real photographs


@pytest.fixture(scope="module")
def engine(random_card: Path) -> Engine:
    return Engine.from_card(random_card)


@pytest.fixture(scope="module")
def gated(gated_card: Path) -> Engine:
    return Engine.from_card(gated_card)


def _retag(src: Path, dest: Path, **tags: str) -> Path:
    ds = pydicom.dcmread(src)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(dest)
    return dest


def test_tibia_rejected_and_force_overrides(engine: Engine, shared_data: Path) -> None:
    image = load_image(shared_data / TIBIA)
    result = engine.check_gate(image)
    assert result.status is gating.GateStatus.REJECTED and not result.ok
    assert any(r.startswith("not a chest radiograph") and "EXTREMITY" in r for r in result.reasons)
    pred = engine.predict(image)
    assert pred.status == "rejected" and pred.findings == []
    forced = engine.predict(image, force=True)
    assert forced.status is gating.GateStatus.OK and forced.gate.overridden
    assert len(forced.findings) == len(engine.labels)
    assert forced.gate.message.startswith("gate overridden: not a chest radiograph")


def test_lateral_tagged_file_rejected(engine: Engine, shared_data: Path, tmp_path: Path) -> None:
    path = _retag(shared_data / "dicom" / "udacity_nih_test1.dcm", tmp_path / "lateral.dcm", ViewPosition="LL")
    image = load_image(path)
    assert image.view == "lateral"
    result = engine.check_gate(image)
    assert result.status == "rejected" and gating.LATERAL_REASON in result.reasons


@pytest.mark.parametrize("name", ["udacity_nih_test5.dcm", "udacity_nih_test4.dcm"])
def test_wrong_modality_or_body_part_rejected(engine: Engine, shared_data: Path, name: str) -> None:
    result = engine.check_gate(load_image(shared_data / "dicom" / "edge_cases" / name))
    assert result.status == "rejected"
    assert result.reasons[0].startswith("not a chest radiograph: ")


def test_contradictory_tags_only_warn(engine: Engine, shared_data: Path) -> None:
    pred = engine.predict(load_image(shared_data / "dicom" / "edge_cases" / "udacity_nih_test6.dcm"))
    assert pred.status == "ok" and pred.findings
    assert any("XX" in w for w in pred.gate.warnings) and pred.gate.message


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
def test_colour_photograph_rejected(engine: Engine, tmp_path: Path, name: str) -> None:
    path = shutil.copy(PHOTOS / name, tmp_path / name)
    result = engine.check_gate(load_image(path))
    assert result.status == "rejected"
    assert "not a chest radiograph: colour image (photograph or colour rendering)" in result.reasons


def test_colour_ultrasound_dicom_rejected(engine: Engine, pydicom_data: Path) -> None:
    result = engine.check_gate(load_image(pydicom_data / "US1_UNCI.dcm"))
    assert result.status == "rejected" and "US" in result.reasons[0]


def test_noise_blank_and_odd_shapes_rejected(engine: Engine, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cases = {
        "noise.png": (rng.random((600, 500)) * 255).astype(np.uint8),
        "blank.png": np.full((512, 512), 90, np.uint8),
        "strip.png": (rng.random((100, 900)) * 40 + 100).astype(np.uint8),
        "tiny.png": (rng.random((40, 40)) * 255).astype(np.uint8),
    }
    expected = {"noise.png": "looks like noise", "blank.png": "almost uniform", "strip.png": "aspect ratio",
                "tiny.png": "too small"}
    for name, pixels in cases.items():
        cv2.imwrite(str(tmp_path / name), pixels)
        result = engine.check_gate(load_image(tmp_path / name))
        assert result.status == "rejected", name
        assert any(expected[name] in r for r in result.reasons), (name, result.reasons)


def test_grey_rgb_jpegs_are_not_colour(engine: Engine, shared_data: Path) -> None:
    """Kermany films are RGB JPEGs with grey content: not photographs."""
    for path in sorted((shared_data / "kermany" / "images").glob("*.jpeg"))[:20]:
        assert engine.check_gate(load_image(path)).status == "ok", path.name


def test_feature_gate_accepts_chest_films(gated: Engine, shared_data: Path) -> None:
    assert gated.has_feature_gate
    held_out = sorted((shared_data / "nih" / "images").glob("*.png"))[7::56]  # none used for fitting
    others = sorted((shared_data / "dicom").glob("*.dcm"))
    others += sorted((shared_data / "nih" / "demo").glob("*.png"))[::4]
    others += sorted((shared_data / "kermany" / "images").glob("*.jpeg"))[::240]
    scores = []
    for path in held_out + others:
        result = gated.check_gate(load_image(path))
        assert result.status == "ok", (path.name, result)
        scores.append(result.feature_score)
    assert all(s is not None and 0 < s < 1 for s in scores)


def test_feature_gate_flags_tibia_without_tags(gated: Engine, shared_data: Path, tmp_path: Path) -> None:
    path = _retag(shared_data / TIBIA, tmp_path / "tibia_as_chest.dcm", BodyPartExamined="CHEST")
    image = load_image(path)
    assert image.flags == []  # nothing in the tags gives it away any more
    result = gated.check_gate(image)
    nih = [gated.check_gate(load_image(p)).feature_score
           for p in sorted((shared_data / "nih" / "images").glob("*.png"))[7::112]]
    assert result.feature_score > 3 * max(nih)
    assert result.feature_score > 1  # at least the warning tier
    reject_level = gated.feature_gate.reject_score
    if result.feature_score > reject_level:
        assert result.status == "rejected" and result.reasons == [FEATURE_REJECT]
    else:
        assert result.status == "ok" and FEATURE_WARNING in result.warnings


def test_fit_gate_record_round_trip(gated_card: Path, gated: Engine) -> None:
    import json

    rec = json.loads(gated_card.read_text())["gate"]
    assert rec["method"] == gating.GATE_METHOD and rec["n_images"] == 155 and rec["input_size"] == 128
    assert rec["threshold"] == pytest.approx(1.5 * rec["held_out_distance"]["q99"]) and rec["reject_score"] == 2
    g = gating.FeatureGate.from_record(rec, gated.network.classifier.in_features)
    assert g.threshold == pytest.approx(rec["threshold"])
    assert g.distance(g.mean) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="features"):
        gating.FeatureGate.from_record(rec, 256)


def test_fit_gate_needs_enough_images(engine: Engine) -> None:
    with pytest.raises(ValueError, match="at least 20"):
        gating.fit_gate(engine.network, [np.zeros((64, 64), np.float32)] * 5, 128)


def test_gate_status_is_an_enum_that_reads_as_the_contract_strings() -> None:
    import json

    from cxrviewer.report.json_report import STATUSES

    rejected = gating.combine(["lateral view"], [], None, force=False)
    assert rejected.status is gating.GateStatus.REJECTED
    assert json.dumps({"status": rejected.status}) == '{"status": "rejected"}'
    assert f"{gating.combine([], [], None, force=False).status}" == "ok"
    assert gating.GateResult("ok").status is gating.GateStatus.OK  # plain strings are converted
    with pytest.raises(ValueError):
        gating.GateResult("maybe")  # type: ignore[arg-type]
    assert {s.value for s in gating.GateStatus} | {"error"} == set(STATUSES)
