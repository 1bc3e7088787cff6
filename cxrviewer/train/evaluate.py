"""`cxrviewer-train evaluate`: metrics of a model bundle on a dataset, with ROC and reliability plots."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.metrics import roc_curve
from tqdm import tqdm

from cxrviewer.fileio import atomic_write_json
from cxrviewer.imaging import load_image
from cxrviewer.imaging.display import model_input
from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.model.harmonise import Harmoniser
from cxrviewer.model.preprocess import preprocess
from cxrviewer.model.tta import tta_logits, tta_views
from cxrviewer.model.weights import ModelBundle
from cxrviewer.train.metrics import fmt, mean_auroc
from cxrviewer.train.samples import LABEL_INDEX, Sample
from cxrviewer.train.validation import validation_record

log = logging.getLogger(__name__)


@torch.inference_mode()
def predict_samples(bundle: ModelBundle, samples: list[Sample], batch: int = 16,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, L) through the app's own preprocessing, test-time views and calibration (as the viewer
    computes them), and which samples could be read."""
    net, size, views = bundle.network, bundle.input_size, tta_views(bundle.card.tta)
    harmoniser = Harmoniser.of_card(bundle.card)
    probs = np.full((len(samples), len(bundle.labels)), np.nan, np.float32)
    ok = np.zeros(len(samples), bool)
    xs: list[np.ndarray] = []
    idx: list[int] = []

    def flush() -> None:
        if xs:
            logits = tta_logits(net, torch.from_numpy(np.stack(xs)), views).float().numpy()
            probs[idx] = bundle.card.calibrate(logits)
            xs.clear()
            idx.clear()

    for i, s in enumerate(tqdm(samples, desc="evaluating", disable=not progress, unit="img")):
        try:
            x, box = preprocess(model_input(load_image(s.path)), size, bundle.crop)
        except ImageLoadError as exc:
            log.warning("skipping %s", exc)
            continue
        if harmoniser is not None:
            x, _ = harmoniser.model_input(x, box)
        ok[i] = True
        xs.append(x)
        idx.append(i)
        if len(xs) == batch:
            flush()
    flush()
    return probs, ok


def _canvas(title: str, size: int = 360) -> np.ndarray:
    img = np.full((size, size, 3), 255, np.uint8)
    cv2.rectangle(img, (40, 20), (size - 20, size - 40), (0, 0, 0), 1)
    cv2.putText(img, title[:40], (42, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def _xy(v: np.ndarray, w: np.ndarray, size: int = 360) -> np.ndarray:
    return np.stack([40 + v * (size - 60), size - 40 - w * (size - 60)], 1).astype(np.int32)


def plot_roc(y: np.ndarray, p: np.ndarray, title: str, path: Path) -> None:
    img = _canvas(title)
    cv2.line(img, tuple(_xy(np.array([0.0]), np.array([0.0]))[0]), tuple(_xy(np.array([1.0]), np.array([1.0]))[0]),
             (180, 180, 180), 1)
    fpr, tpr, _ = roc_curve(y, p)
    cv2.polylines(img, [_xy(fpr, tpr)], False, (200, 60, 0), 2, cv2.LINE_AA)
    cv2.putText(img, "FPR", (170, 352), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, "TPR", (4, 180), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def plot_reliability(y: np.ndarray, p: np.ndarray, title: str, path: Path, bins: int = 10) -> None:
    img = _canvas(title)
    cv2.line(img, tuple(_xy(np.array([0.0]), np.array([0.0]))[0]), tuple(_xy(np.array([1.0]), np.array([1.0]))[0]),
             (180, 180, 180), 1)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    pts = [(p[idx == b].mean(), y[idx == b].mean()) for b in range(bins) if (idx == b).any()]
    if pts:
        arr = np.array(pts)
        cv2.polylines(img, [_xy(arr[:, 0], arr[:, 1])], False, (0, 120, 0), 2, cv2.LINE_AA)
    cv2.putText(img, "predicted", (160, 352), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.putText(img, "observed", (2, 180), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.imwrite(str(path), img)


def evaluate_bundle(bundle: ModelBundle, samples: list[Sample], out_dir: Path, progress: bool = True) -> dict:
    """Per-label and per-dataset metrics at the card's thresholds + plots + a JSON report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    labels = bundle.labels
    cols = [LABEL_INDEX[lab] for lab in labels]
    y = np.stack([s.target for s in samples])[:, cols]
    m = np.stack([s.mask for s in samples])[:, cols]
    ds = np.array([s.dataset for s in samples])
    p, ok = predict_samples(bundle, samples, progress=progress)
    y, m, ds, p = y[ok], m[ok], ds[ok], p[ok]
    rec = validation_record(y, p, m, ds, labels, dict(bundle.card.thresholds))
    rec["model"] = {"name": bundle.name, "sha256": bundle.sha256}
    rec["images"] = int(ok.sum())
    rec["unreadable"] = int((~ok).sum())
    rec["mean_auroc"] = mean_auroc(rec["per_label"])
    for j, lab in enumerate(labels):
        keep = m[:, j] > 0
        yy = (y[keep, j] >= 0.5).astype(int)
        if yy.size and yy.min() != yy.max():
            safe = lab.replace(" ", "_")
            title = f"ROC {lab} AUROC {rec['per_label'][lab]['auroc']:.3f}"
            plot_roc(yy, p[keep, j], title, out_dir / f"roc_{safe}.png")
            plot_reliability(yy, p[keep, j], f"Reliability {lab}", out_dir / f"reliability_{safe}.png")
    atomic_write_json(out_dir / "report.json", rec)
    return rec


def format_report(rec: dict) -> str:
    lines = [f"{'label':28s} {'AUROC':>6s} {'AUPRC':>6s} {'pos':>5s} {'neg':>5s} {'sens':>6s} {'spec':>6s} {'ECE':>6s}"]
    for lab, r in rec["per_label"].items():
        lines.append(f"{lab:28s} {fmt(r['auroc']):>6s} {fmt(r['auprc']):>6s} {r['n_pos']:5d} {r['n_neg']:5d} "
                     f"{fmt(r['sensitivity']):>6s} {fmt(r['specificity']):>6s} {fmt(r['ece']):>6s}")
    lines.append(f"mean AUROC: {fmt(rec.get('mean_auroc'))}")
    return "\n".join(lines)
