"""The cxrviewer-predict JSON contract built from real predictions."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cxrviewer.imaging import load_image
from cxrviewer.report import json_report

RESULT_KEYS = {"path", "status", "message", "image_size", "view", "findings"}
FINDING_KEYS = {"label", "probability", "threshold", "positive", "cam_peak"}


def test_result_entry_follows_the_contract(udacity, udacity_prediction, engine) -> None:
    entry = json_report.result_entry(udacity.path, udacity_prediction)
    assert set(entry) == RESULT_KEYS
    assert entry["status"] == "ok" and entry["path"] == str(udacity.path)
    assert entry["image_size"] == [udacity.width, udacity.height]
    assert entry["view"] == "frontal"
    assert [f["label"] for f in entry["findings"]] == sorted(
        engine.labels, key=lambda lab: -udacity_prediction.finding(lab).probability)
    probs = [f["probability"] for f in entry["findings"]]
    assert probs == sorted(probs, reverse=True)
    for f in entry["findings"]:
        assert set(f) == FINDING_KEYS
        source = udacity_prediction.finding(f["label"])
        assert f["probability"] == pytest.approx(source.probability, abs=1e-6)
        assert f["threshold"] == pytest.approx(engine.thresholds[f["label"]])
        assert f["positive"] == (f["probability"] >= f["threshold"])
        if f["positive"]:
            x, y = f["cam_peak"]
            assert 0 <= x < udacity.width and 0 <= y < udacity.height
        else:
            assert f["cam_peak"] is None


def test_a_rejected_image_has_its_reasons_and_no_findings(engine, dicom_dir) -> None:
    ct = load_image(dicom_dir / "edge_cases" / "udacity_nih_test5.dcm")
    entry = json_report.result_entry("ct.dcm", engine.predict(ct))
    assert entry["status"] == "rejected"
    assert "CT" in entry["message"]
    assert entry["findings"] == []


def test_gate_warnings_go_into_the_message(udacity_prediction) -> None:
    warned = replace(udacity_prediction, gate=replace(udacity_prediction.gate, warnings=["view unknown"]))
    assert json_report.result_entry("x", warned)["message"] == "view unknown"
    assert json_report.result_entry("x", udacity_prediction)["message"] is None


def test_error_entry_and_statuses() -> None:
    entry = json_report.error_entry("bad.dcm", "not a DICOM file")
    assert entry == {"path": "bad.dcm", "status": "error", "message": "not a DICOM file", "image_size": None,
                     "view": "unknown", "findings": []}
    with pytest.raises(ValueError):
        json_report.error_entry("x", "m", status="maybe")


def test_contract_document_round_trips(engine, udacity, udacity_prediction) -> None:
    doc = json_report.contract(engine.card, [json_report.result_entry(udacity.path, udacity_prediction),
                                             json_report.error_entry("b.png", "unreadable")])
    assert doc["model"] == {"name": engine.name, "sha256": engine.sha256, "labels": engine.labels,
                            "card_sha256": engine.card_sha256, "card": "sealed"}
    assert json.loads(json_report.dumps(doc)) == doc


def test_non_finite_probabilities_are_refused(udacity_prediction) -> None:
    bad = replace(udacity_prediction, findings=[replace(udacity_prediction.findings[0],
                                                        probability=float("nan"))])
    with pytest.raises(ValueError, match="finite"):
        json_report.result_entry("x", bad)
