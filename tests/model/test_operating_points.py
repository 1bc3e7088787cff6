"""What a reader sees from the bundled model: calibrated probabilities, budgeted operating points, a consistent
"No Finding" and Pneumothorax triage shown as triage, on the real demo films."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrviewer.imaging import load_image
from cxrviewer.imaging.display import model_input
from cxrviewer.model.inference import NO_FINDING_NOTE, Engine, Finding, consistent_findings
from cxrviewer.model.preprocess import preprocess


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.bundled()


@pytest.fixture(scope="module")
def demo(engine: Engine, shared_data: Path) -> list[tuple[str, dict, list[Finding]]]:
    with open(shared_data / "nih" / "demo_labels.csv", newline="") as fh:
        rows = {Path(r["image"]).name: r for r in csv.DictReader(fh)}
    out = []
    for path in sorted((shared_data / "nih" / "demo").glob("*.png")):
        out.append((path.name, rows[path.name], engine.predict(load_image(path)).findings))
    return out


def test_no_finding_is_never_positive_beside_a_finding(demo) -> None:
    assert len(demo) == 33
    for name, _, findings in demo:
        others = [f for f in findings if f.positive and f.label != "No Finding"]
        nf = next(f for f in findings if f.label == "No Finding")
        assert not (nf.positive and others), name
        if nf.probability >= nf.threshold and others:
            assert nf.note == NO_FINDING_NOTE


def test_few_flags_on_normal_demo_films_and_triage_is_not_a_finding(demo) -> None:
    flags = {name: sum(f.positive and f.label != "No Finding" for f in findings) for name, _, findings in demo}
    normal = [flags[name] for name, row, _ in demo if row["No Finding"] == "1"]
    assert normal and np.mean(normal) <= 1.5  # the bar for normal films
    assert np.median(list(flags.values())) <= 3
    for _, _, findings in demo:
        for f in findings:
            if f.triage:
                assert not f.positive and f.label == "Pneumothorax" and f.cam_peak is not None


def test_probabilities_are_the_cards_calibration_of_the_network_logit(engine: Engine, shared_data: Path) -> None:
    image = load_image(shared_data / "nih" / "demo" / "00000032_001.png")
    pred = engine.predict(image)
    x, _ = preprocess(model_input(image), engine.input_size)
    with torch.inference_mode():
        logits = engine.network(torch.from_numpy(x)[None]).float().numpy()[0]
    cal = engine.card.calibration
    assert cal is not None and set(cal) == set(engine.labels)
    for j, lab in enumerate(engine.labels):
        c = cal[lab]
        expected = 1 / (1 + np.exp(-(c.scale * logits[j] + c.bias)))
        assert pred.finding(lab).probability == pytest.approx(expected, abs=1e-4)


def test_card_states_the_policy_and_ece_before_and_after(engine: Engine) -> None:
    policy = engine.card.operating_policy
    assert policy is not None and policy["flags_per_normal_film"] <= policy["false_alarm_budget_per_normal_film"]
    assert engine.card.triage_thresholds and "Pneumothorax" in engine.card.triage_thresholds
    per_label = engine.card.validation.per_label
    for lab in engine.labels:
        assert per_label[lab].ece is not None and per_label[lab].ece_uncalibrated is not None
    assert np.mean([per_label[lab].ece for lab in engine.labels]) < np.mean(
        [per_label[lab].ece_uncalibrated for lab in engine.labels])


def test_consistency_rule_alone() -> None:
    findings = [Finding("No Finding", 0.9, 0.5, True, (1.0, 1.0)), Finding("Edema", 0.4, 0.3, True, (2.0, 2.0))]
    consistent_findings(findings)
    assert not findings[0].positive and findings[0].note == NO_FINDING_NOTE and findings[0].cam_peak is None
    alone = [Finding("No Finding", 0.9, 0.5, True, None), Finding("Edema", 0.1, 0.3, False, None)]
    assert consistent_findings(alone)[0].positive


def test_trainer_evaluation_scores_what_the_viewer_shows(engine: Engine, shared_data: Path) -> None:
    """`cxrviewer-train evaluate` computes the same calibrated probabilities as the viewer's engine."""
    from cxrviewer.train.evaluate import predict_samples
    from cxrviewer.train.samples import Sample

    paths = sorted((shared_data / "nih" / "demo").glob("*.png"))[:3]
    samples = [Sample(p, "p", "frontal", np.zeros(1, np.float32), np.zeros(1, np.float32), "nih") for p in paths]
    probs, ok = predict_samples(engine.bundle, samples, progress=False)
    assert ok.all()
    for row, path in zip(probs, paths, strict=True):
        pred = engine.predict(load_image(path))
        expected = [pred.finding(lab).probability for lab in engine.labels]
        assert np.allclose(row, expected, atol=1e-4)


def test_lung_outline_only_when_asked(engine: Engine) -> None:
    """The lung fields are found for the viewer only (cxrviewer-predict and the PACS node skip the work)."""
    image = load_image(Path(__file__).parents[2] / "resources" / "demo" / "udacity_nih_test1.dcm")
    assert engine.predict(image).lung_outline == []
    viewer = Engine(engine.bundle, lung_outline=True)
    assert len(viewer.predict(image).lung_outline) == 2
