"""Calibration and operating points a reader can live with, chosen on patient-disjoint validation predictions.

1. Calibration: per label, Platt scaling of the network's logit (p = sigmoid(a * logit + b), a > 0, so the
   ranking and AUROC are unchanged), fitted on the primary (adult) validation films; ECE before and after.
2. Finding operating points: one specificity target for every label, the lowest in [min_specificity, 0.99]
   at which the validation films labelled "No Finding" carry on average at most `budget` flagged findings
   (a false-alarm budget per normal film) — not Youden's J, which swings with a handful of positives.
3. Triage: labels in `TRIAGE` keep a high-sensitivity point; a film above it but below the finding point is
   shown as "check for ..." (triage), never as a finding. High-sensitivity points for every label serve the
   viewer's rule-out mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from cxrviewer.train.metrics import expected_calibration_error, sensitivity_threshold

#: Labels with a triage point: label -> target sensitivity on validation films.
TRIAGE = {"Pneumothorax": 0.95}
#: Sensitivity of the rule-out ("high sensitivity") operating point offered for every label.
RULE_OUT_SENSITIVITY = 0.90
NO_FINDING = "No Finding"


@dataclass
class OperatingPoints:
    """What a bundle's card needs: calibration, thresholds (calibrated space) and how they were chosen."""

    calibration: dict[str, dict[str, float]]
    probabilities: np.ndarray  # calibrated validation probabilities (N, L)
    thresholds: dict[str, float]
    high_sensitivity: dict[str, float]
    triage: dict[str, float]
    policy: dict[str, Any]
    ece_before: dict[str, float | None]


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p clipped to [1e-6, 1 - 1e-6]."""
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def fit_platt(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(scale, bias) of logistic regression on the logit; identity when it cannot be fitted sensibly."""
    if y.size < 10 or y.min() == y.max():
        return 1.0, 0.0
    model = LogisticRegression(C=100.0).fit(logit(p)[:, None], y)
    scale, bias = float(model.coef_[0, 0]), float(model.intercept_[0])
    return (scale, bias) if scale > 0.05 else (1.0, 0.0)


def apply_platt(p: np.ndarray, scale: float, bias: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(scale * logit(p) + bias)))


def _known(m: np.ndarray, rows: np.ndarray, j: int) -> np.ndarray:
    return rows & (m[:, j] > 0)


def specificity_thresholds(y: np.ndarray, p: np.ndarray, m: np.ndarray, rows: np.ndarray, target: float
                           ) -> np.ndarray:
    """Per label, the lowest threshold at which `target` of its known negatives stay below it."""
    thr = np.full(p.shape[1], 0.5)
    for j in range(p.shape[1]):
        keep = _known(m, rows, j)
        neg = np.sort(p[keep & (y[:, j] < 0.5), j])
        if neg.size:
            k = min(neg.size - 1, int(np.ceil(target * neg.size)) - 1)
            thr[j] = float(np.nextafter(neg[max(k, 0)], 1.0))
    return thr


def flags_per_film(p: np.ndarray, thr: np.ndarray, films: np.ndarray, findings: np.ndarray) -> float:
    """Mean number of flagged findings (labels in `findings`) per film in `films`."""
    if not films.any():
        return 0.0
    return float((p[films][:, findings] >= thr[findings]).sum(1).mean())


def choose_operating_points(y: np.ndarray, p: np.ndarray, m: np.ndarray, labels: list[str], primary: np.ndarray,
                            min_specificity: float = 0.80, budget: float = 1.0) -> OperatingPoints:
    """Calibrate, then pick thresholds under the false-alarm budget (see the module docstring)."""
    calibration: dict[str, dict[str, float]] = {}
    ece_before: dict[str, float | None] = {}
    pc = p.copy()
    for j, lab in enumerate(labels):
        keep = _known(m, primary, j)
        if not keep.any():
            keep = m[:, j] > 0
        yy = (y[keep, j] >= 0.5).astype(int)
        ece_before[lab] = expected_calibration_error(yy, p[keep, j]) if yy.size else None
        scale, bias = fit_platt(yy, p[keep, j])
        calibration[lab] = {"scale": round(scale, 6), "bias": round(bias, 6)}
        pc[:, j] = apply_platt(p[:, j], scale, bias)
    findings = np.array([lab != NO_FINDING for lab in labels])
    nf = labels.index(NO_FINDING) if NO_FINDING in labels else None
    normal = primary & (y[:, nf] >= 0.5) & (m[:, nf] > 0) if nf is not None else np.zeros(len(y), bool)
    abnormal = primary & (y[:, nf] < 0.5) & (m[:, nf] > 0) if nf is not None else primary
    target, thr = min_specificity, specificity_thresholds(y, pc, m, primary, min_specificity)
    for t in np.arange(min_specificity, 0.991, 0.005):
        thr = specificity_thresholds(y, pc, m, primary, float(t))
        target = float(t)
        if flags_per_film(pc, thr, normal, findings) <= budget:
            break
    thresholds = {lab: float(thr[j]) for j, lab in enumerate(labels)}
    high, triage = {}, {}
    for j, lab in enumerate(labels):
        keep = _known(m, primary, j)
        yy = (y[keep, j] >= 0.5).astype(int)
        if yy.size and yy.min() != yy.max():
            high[lab] = sensitivity_threshold(yy, pc[keep, j], RULE_OUT_SENSITIVITY)
            if lab in TRIAGE:
                triage[lab] = min(thresholds[lab], sensitivity_threshold(yy, pc[keep, j], TRIAGE[lab]))
        else:
            high[lab] = thresholds[lab]
    policy = {
        "rule": (f"one specificity target for every label, the lowest >= {min_specificity:.2f} at which validation "
                 f"films labelled No Finding carry at most {budget:g} flagged finding(s) on average"),
        "specificity_target": round(target, 3),
        "false_alarm_budget_per_normal_film": budget,
        "flags_per_normal_film": round(flags_per_film(pc, thr, normal, findings), 3),
        "flags_per_abnormal_film": round(flags_per_film(pc, thr, abnormal, findings), 3),
        "normal_films": int(normal.sum()),
        "abnormal_films": int(abnormal.sum()),
        "triage": {lab: f"sensitivity >= {TRIAGE[lab]:.2f}: shown as 'check for {lab}', not as a finding"
                   for lab in triage},
        "rule_out_sensitivity": RULE_OUT_SENSITIVITY,
        "calibration": "Platt scaling per label on the same validation predictions",
    }
    return OperatingPoints(calibration, pc, thresholds, high, triage, policy, ece_before)
