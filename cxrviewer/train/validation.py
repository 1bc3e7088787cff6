"""Validation of a trained model on patient-disjoint predictions: per-label metrics, operating points and
calibration (`train/calibration.py`), headline figures on the primary (adult) dataset only."""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrviewer.train.calibration import (
    NO_FINDING,
    OperatingPoints,
    apply_platt,
    choose_operating_points,
    flags_per_film,
)
from cxrviewer.train.metrics import label_report, sensitivity_threshold, youden_threshold

#: High-sensitivity (rule-out) operating points: label -> target sensitivity.
HIGH_SENSITIVITY = {"Pneumothorax": 0.95}

#: Datasets whose validation images set the operating points and the headline per-label metrics, in order
#: of preference: adult frontal films like the ones the app sees. Other datasets are reported separately.
PRIMARY_DATASETS = ("nih", "chexpert")


def primary_rows(ds: np.ndarray) -> tuple[np.ndarray, str]:
    """Rows of the primary (adult) validation dataset, or all rows when none is present, and its name."""
    for name in PRIMARY_DATASETS:
        sel = ds == name
        if sel.any():
            return sel, name
    return np.ones(len(ds), bool), "all"


def operating_points(y: np.ndarray, p: np.ndarray, m: np.ndarray, labels: list[str], ds: np.ndarray
                     ) -> tuple[dict[str, float], dict[str, float]]:
    """Youden-J thresholds per label on the primary validation images (all images for labels only other
    datasets annotate), and high-sensitivity ones where defined (used as that label's cutoff)."""
    primary, _ = primary_rows(ds)
    thresholds, high = {}, {}
    for j, lab in enumerate(labels):
        keep = (m[:, j] > 0) & primary
        yy = (y[keep, j] >= 0.5).astype(int)
        if yy.size == 0 or yy.min() == yy.max():
            keep = m[:, j] > 0
            yy = (y[keep, j] >= 0.5).astype(int)
        pp = p[keep, j]
        if yy.size == 0 or yy.min() == yy.max():
            thresholds[lab] = 0.5
            continue
        thresholds[lab] = youden_threshold(yy, pp)
        if lab in HIGH_SENSITIVITY:
            high[lab] = sensitivity_threshold(yy, pp, HIGH_SENSITIVITY[lab])
            thresholds[lab] = high[lab]
    return thresholds, high


def validation_record(y: np.ndarray, p: np.ndarray, m: np.ndarray, ds: np.ndarray, labels: list[str],
                      thresholds: dict[str, float]) -> dict[str, Any]:
    """Headline per-label metrics on the primary (adult) validation images, plus per-dataset metrics.

    Pooling pediatric Kermany films with NIH films would inflate AUROCs (the two sets differ in ways
    unrelated to disease), so the headline numbers never mix datasets.
    """
    sel, name = primary_rows(ds)
    per_label = {lab: label_report(y[sel, j], p[sel, j], m[sel, j], thresholds[lab]) for j, lab in enumerate(labels)}
    per_dataset: dict[str, dict] = {}
    for ds_name in sorted(set(ds.tolist())):
        rows = ds == ds_name
        reps = {lab: label_report(y[rows, j], p[rows, j], m[rows, j], thresholds[lab])
                for j, lab in enumerate(labels)}
        per_dataset[ds_name] = {k: v for k, v in reps.items() if v["n_pos"] + v["n_neg"] > 0}
    return {"per_label_dataset": name, "per_label": per_label, "per_dataset": per_dataset}


def calibrated_validation(y: np.ndarray, p: np.ndarray, m: np.ndarray, ds: np.ndarray, labels: list[str],
                          fit: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
                          ) -> tuple[OperatingPoints, dict[str, Any]]:
    """Calibration + budgeted operating points (train/calibration.py) and the validation record they give:
    metrics at the chosen points on calibrated probabilities, with each label's ECE before calibration.

    `fit` (targets, masks, datasets and probabilities of other films, as `RunFolder.inner_arrays` gives them:
    the inner validation sets of nested cross-validation): calibration and operating points are chosen on
    those and only measured on (y, p), so the figures predict a new patient-disjoint set instead of
    describing the films they were tuned on.
    """
    if fit is None:
        ops = choose_operating_points(y, p, m, labels, primary_rows(ds)[0])
    else:
        fy, fm, fds, fp = fit
        ops = choose_operating_points(fy, fp, fm, labels, primary_rows(fds)[0])
        ops.probabilities = apply_calibration(ops.calibration, p, labels)
        ops.policy["calibration"] = "Platt scaling per label on the inner validation films (nested)"
        ops.policy["chosen_on"] = f"{len(fy)} inner validation films; measured on {len(y)} outer-fold films"
        ops.policy["measured_on_outer_folds"] = outer_flags(ops, y, m, ds, labels)
    validation = validation_record(y, ops.probabilities, m, ds, labels, ops.thresholds)
    for lab, rep in validation["per_label"].items():
        rep["ece_uncalibrated"] = ops.ece_before.get(lab)
    return ops, validation


def apply_calibration(calibration: dict[str, dict[str, float]], p: np.ndarray, labels: list[str]) -> np.ndarray:
    """Probabilities through each label's Platt scaling."""
    out = p.copy()
    for j, lab in enumerate(labels):
        c = calibration[lab]
        out[:, j] = apply_platt(p[:, j], c["scale"], c["bias"])
    return out


def outer_flags(ops: OperatingPoints, y: np.ndarray, m: np.ndarray, ds: np.ndarray, labels: list[str]
                ) -> dict[str, float]:
    """Flags per normal / abnormal primary film of operating points applied to other (outer-fold) films."""
    primary = primary_rows(ds)[0]
    findings = np.array([lab != NO_FINDING for lab in labels])
    thr = np.array([ops.thresholds[lab] for lab in labels])
    if NO_FINDING not in labels:
        return {}
    nf = labels.index(NO_FINDING)
    known = primary & (m[:, nf] > 0)
    return {"flags_per_normal_film": round(flags_per_film(ops.probabilities, thr, known & (y[:, nf] >= 0.5),
                                                          findings), 3),
            "flags_per_abnormal_film": round(flags_per_film(ops.probabilities, thr, known & (y[:, nf] < 0.5),
                                                            findings), 3)}


def operating_fields(ops: OperatingPoints | None) -> dict[str, Any]:
    """The card entries that come from `calibrated_validation` (empty without validation)."""
    if ops is None:
        return {}
    return {"triage_thresholds": {k: round(float(v), 6) for k, v in ops.triage.items()},
            "calibration": ops.calibration, "operating_policy": ops.policy}
