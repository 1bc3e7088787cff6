"""Cross-validation summaries: per-label and per-dataset spread across folds, pointing game, selection."""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrviewer.train.metrics import fmt
from cxrviewer.train.validation import PRIMARY_DATASETS


def summarise_folds(folds: list[dict]) -> dict:
    """Mean and standard deviation across folds, per label and per dataset."""
    def agg(values: list[float | None]) -> dict:
        v = [x for x in values if x is not None]
        return {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v)) if v else None, "folds": len(v)}

    primary = next((d for d in PRIMARY_DATASETS if d in folds[0]["per_dataset"]), None)

    def head(f: dict) -> dict:  # headline per-label metrics: the primary (adult) dataset only
        return f["per_dataset"][primary] if primary else f["per_label"]

    labels = list(head(folds[0]))
    per_label = {lab: {"auroc": agg([head(f)[lab]["auroc"] for f in folds]),
                       "auprc": agg([head(f)[lab]["auprc"] for f in folds]),
                       "n_pos": int(sum(head(f)[lab]["n_pos"] for f in folds)),
                       "n_neg": int(sum(head(f)[lab]["n_neg"] for f in folds))} for lab in labels}
    per_dataset: dict[str, dict] = {}
    for ds in folds[0]["per_dataset"]:
        per_dataset[ds] = {}
        for lab in folds[0]["per_dataset"][ds]:
            vals = [f["per_dataset"].get(ds, {}).get(lab, {}).get("auroc") for f in folds]
            per_dataset[ds][lab] = {"auroc": agg(vals),
                                    "n_pos": int(sum(f["per_dataset"][ds][lab]["n_pos"] for f in folds)),
                                    "n_neg": int(sum(f["per_dataset"][ds][lab]["n_neg"] for f in folds))}
    means = {ds: agg([float(np.mean([r["auroc"] for r in f["per_dataset"][ds].values() if r["auroc"] is not None]))
                      for f in folds]) for ds in per_dataset}
    pg: list[dict[str, Any]] = [f["pointing_game"] for f in folds if f.get("pointing_game")]
    pointing = None
    if pg:
        tot = {k: sum(p["total"][k] for p in pg) for k in ("n", "cam", "centre", "mean_box")}
        rates = {k: (tot[k] / tot["n"] if tot["n"] else None) for k in ("cam", "centre", "mean_box")}
        boxes: dict[str, dict[str, int]] = {}
        for p in pg:
            for lab, r in p["per_label"].items():
                acc = boxes.setdefault(lab, {k: 0 for k in r})
                for k, v in r.items():
                    acc[k] += v
        pointing = {"per_label": boxes, "total": tot, "hit_rate": rates,
                    "cam_per_fold": agg([p["hit_rate"]["cam"] for p in pg])}
    selection = [f["selection"] for f in folds if f.get("selection")]
    return {"folds": len(folds), "per_label_dataset": primary or "all", "per_label": per_label,
            "per_dataset": per_dataset,
            "mean_over_folds": {"mean_auroc_per_dataset": means,
                                "best_epochs": [f.get("best_epoch") for f in folds]},
            "pointing_game": pointing,
            **({"selection": selection_record(selection)} if selection else {})}


def selection_record(folds: list[dict[str, Any]]) -> dict[str, Any]:
    """The selection score on the outer folds at the chosen epoch (nested: the honest figure) beside the best
    outer epoch's (what choosing the epoch on the reported fold, single-level CV, gives)."""
    def mean(key: str) -> float | None:
        v = [f[key] for f in folds if f.get(key) is not None]
        return round(float(np.mean(v)), 4) if v else None

    return {"nested": all(f.get("nested") for f in folds), "folds": len(folds),
            "outer_score_at_chosen_epoch": mean("outer_score_at_chosen_epoch"),
            "outer_score_best_epoch": mean("outer_score_best_epoch")}


def fold_score(rec: dict) -> float:
    vals = [r["auroc"] for reps in rec["per_dataset"].values() for r in reps.values() if r["auroc"] is not None]
    return float(np.mean(vals)) if vals else 0.0


def print_validation(v: dict) -> None:
    for lab, r in v.get("per_label", {}).items():
        print(f"{lab:28s} AUROC {fmt(r['auroc'])}  pos {r['n_pos']:4d} neg {r['n_neg']:4d}  thr {fmt(r['threshold'])}")
    for ds, reps in v.get("per_dataset", {}).items():
        vals = [r["auroc"] for r in reps.values() if r["auroc"] is not None]
        print(f"[{ds}] mean AUROC over {len(vals)} labels: {fmt(float(np.mean(vals)) if vals else None)}")
    pg = v.get("pointing_game")
    if pg:
        print(f"pointing game: CAM {fmt(pg['hit_rate']['cam'])}, centre prior {fmt(pg['hit_rate']['centre'])}, "
              f"mean-box prior {fmt(pg['hit_rate']['mean_box'])} (n={pg['total']['n']})")
