"""Calibration and operating points under a false-alarm budget (train/calibration.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrviewer.train.calibration import apply_platt, choose_operating_points, fit_platt, flags_per_film
from cxrviewer.train.metrics import expected_calibration_error

LABELS = ["No Finding", "Cardiomegaly", "Pneumothorax", "Edema"]


def _synthetic(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Films with independent findings; the 'network' is over-confident (logits x 3, shifted by +1)."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, len(LABELS)))
    y[:, 1:] = rng.random((n, 3)) < [0.12, 0.08, 0.05]
    y[:, 0] = y[:, 1:].sum(1) == 0
    true_logit = np.where(y > 0, 1.0, -1.0) * 1.2 + rng.normal(0, 1.0, y.shape) - 1.5
    p = 1 / (1 + np.exp(-(3 * true_logit + 1)))
    return y, p, np.ones_like(y)


def test_platt_scaling_repairs_overconfidence_and_keeps_the_ranking() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(-2.0, 1.5, 20000)  # the true log-odds
    y = (rng.random(z.size) < 1 / (1 + np.exp(-z))).astype(float)
    p = 1 / (1 + np.exp(-(3 * z + 1)))  # an over-confident network: logit = 3 z + 1
    scale, bias = fit_platt(y, p)
    assert abs(scale - 1 / 3) < 0.03 and abs(bias + 1 / 3) < 0.1
    cal = apply_platt(p, scale, bias)
    assert expected_calibration_error(y, cal) < 0.3 * expected_calibration_error(y, p)
    from sklearn.metrics import roc_auc_score  # monotone: same ranking (ties only where p saturates)
    assert roc_auc_score(y, cal) == pytest.approx(roc_auc_score(y, p), abs=1e-4)


def test_single_class_or_tiny_labels_are_left_uncalibrated() -> None:
    assert fit_platt(np.zeros(50), np.linspace(0.1, 0.9, 50)) == (1.0, 0.0)
    assert fit_platt(np.array([0, 1, 0]), np.array([0.2, 0.8, 0.3])) == (1.0, 0.0)


def test_operating_points_respect_the_false_alarm_budget_per_normal_film() -> None:
    y, p, m = _synthetic()
    primary = np.ones(len(y), bool)
    for budget in (0.3, 0.6):
        ops = choose_operating_points(y, p, m, LABELS, primary, min_specificity=0.8, budget=budget)
        thr = np.array([ops.thresholds[lab] for lab in LABELS])
        normal = y[:, 0] > 0
        findings = np.array([lab != "No Finding" for lab in LABELS])
        assert flags_per_film(ops.probabilities, thr, normal, findings) <= budget + 1e-9
        assert ops.policy["flags_per_normal_film"] <= budget
        assert ops.policy["specificity_target"] >= 0.8
        for j, lab in enumerate(LABELS[1:], start=1):  # every label reaches the common specificity target
            neg = ops.probabilities[y[:, j] == 0, j]
            assert (neg < ops.thresholds[lab]).mean() >= ops.policy["specificity_target"] - 1e-9
    tight = choose_operating_points(y, p, m, LABELS, primary, budget=0.3).policy["specificity_target"]
    loose = choose_operating_points(y, p, m, LABELS, primary, budget=0.6).policy["specificity_target"]
    assert tight > loose


def test_triage_point_is_high_sensitivity_and_below_the_finding_point() -> None:
    y, p, m = _synthetic()
    ops = choose_operating_points(y, p, m, LABELS, np.ones(len(y), bool))
    j = LABELS.index("Pneumothorax")
    assert set(ops.triage) == {"Pneumothorax"}
    assert ops.triage["Pneumothorax"] <= ops.thresholds["Pneumothorax"]
    sens = (ops.probabilities[y[:, j] > 0, j] >= ops.triage["Pneumothorax"]).mean()
    assert sens >= 0.95
    assert set(ops.high_sensitivity) == set(LABELS)
