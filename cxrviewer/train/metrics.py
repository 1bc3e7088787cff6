"""Per-label metrics, operating points and calibration for multi-label predictions with masks."""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def _known(y: np.ndarray, p: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = m > 0
    return (y[keep] >= 0.5).astype(np.int64), p[keep]


def auroc(y: np.ndarray, p: np.ndarray, m: np.ndarray | None = None) -> float | None:
    """AUROC over known samples, or None ("n/a") when only one class is present."""
    yy, pp = _known(y, p, np.ones_like(y) if m is None else m)
    if yy.size == 0 or yy.min() == yy.max():
        return None
    return float(roc_auc_score(yy, pp))


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Operating point maximising sensitivity + specificity - 1."""
    fpr, tpr, thr = roc_curve(y, p)
    i = int(np.argmax(tpr - fpr))
    return float(np.clip(thr[i], 0.0, 1.0))


def sensitivity_threshold(y: np.ndarray, p: np.ndarray, target: float = 0.95) -> float:
    """Highest threshold whose sensitivity reaches `target` (a rule-out operating point)."""
    pos = np.sort(p[y == 1])
    if pos.size == 0:
        return 0.5
    k = int(math.floor((1.0 - target) * pos.size))
    return float(np.clip(pos[k] - 1e-6, 0.0, 1.0))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(y[sel].mean() - p[sel].mean())
    return float(ece)


def label_report(y: np.ndarray, p: np.ndarray, m: np.ndarray, threshold: float | None = None) -> dict:
    """AUROC, AUPRC, counts, sensitivity/specificity at the operating point and ECE for one label."""
    yy, pp = _known(y, p, m)
    n_pos, n_neg = int(yy.sum()), int(yy.size - yy.sum())
    out: dict = {"n_pos": n_pos, "n_neg": n_neg, "auroc": None, "auprc": None, "threshold": threshold,
                 "sensitivity": None, "specificity": None, "misclassification": None, "ece": None}
    if yy.size == 0:
        return out
    out["ece"] = expected_calibration_error(yy, pp)
    if n_pos and n_neg:
        out["auroc"] = float(roc_auc_score(yy, pp))
        out["auprc"] = float(average_precision_score(yy, pp))
        if threshold is None:
            threshold = youden_threshold(yy, pp)
            out["threshold"] = threshold
    if threshold is not None:
        pred = pp >= threshold
        out["sensitivity"] = float(pred[yy == 1].mean()) if n_pos else None
        out["specificity"] = float((~pred[yy == 0]).mean()) if n_neg else None
        out["misclassification"] = float((pred != (yy == 1)).mean())
    return out


def mean_auroc(reports: dict[str, dict], labels: list[str] | None = None) -> float | None:
    vals = [r["auroc"] for lab, r in reports.items() if r["auroc"] is not None and (labels is None or lab in labels)]
    return float(np.mean(vals)) if vals else None


def fmt(v: float | None, digits: int = 3) -> str:
    """Format a metric, with "n/a" for undefined values."""
    return "n/a" if v is None else f"{v:.{digits}f}"
