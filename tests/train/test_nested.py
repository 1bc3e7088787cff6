"""Nested selection (issue 19 item 3): an inner patient-disjoint split of the training fold chooses the epoch;
the outer fold only measures, and both the honest and the single-level figure are reported."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from cxrviewer.train.datasets import write_rows
from cxrviewer.train.loop import TrainConfig, selection_summary, train


def test_inner_folds_choose_the_epoch_and_the_outer_fold_only_measures(shared_data: Path, tmp_path: Path) -> None:
    with open(shared_data / "kermany" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    subset = [r for r in rows if r["NORMAL"] == "1"][:90] + [r for r in rows if r["PNEUMONIA"] == "1"][:90]
    spec = (f"plain,csv={write_rows(tmp_path / 'k.csv', subset)},root={shared_data},"
            f"mapping={shared_data / 'label_map_to_chexpert.csv'},name=kermany")
    cfg = TrainConfig(datasets=[spec], out_dir=str(tmp_path / "run"), arch="resnet18", input_size=48, epochs=3,
                      batch_size=16, folds=3, fold=1, workers=0, cache_dir=str(tmp_path / "cache"),
                      labels=["No Finding", "Pneumonia"], progress=False, inner_folds=3, lr=2e-3, patience=10)
    result = train(cfg)
    run = tmp_path / "run"
    split = json.loads((run / "split.json").read_text())
    patient = {r["image"]: r["patient_id"] for r in subset}

    def patients(key: str) -> set[str]:
        return {patient[str(Path(p).relative_to(shared_data))] for p in split[key]}

    assert split["inner"] and not (patients("inner") & patients("train")) and not (patients("inner") & patients("val"))
    assert len(np.load(run / "inner_probs.npy")) == len(split["inner"])
    assert len(np.load(run / "val_probs.npy")) == len(split["val"])
    history = result["history"]
    assert all("inner_score" in h and "val_score" in h for h in history)
    chosen = max(history, key=lambda h: h["inner_score"])["epoch"]
    assert result["best_epoch"] == chosen  # chosen by the inner set, whatever the outer fold says
    assert result["outer_score_at_chosen_epoch"] == next(h["val_score"] for h in history if h["epoch"] == chosen)
    assert result["outer_score_best_epoch"] == max(h["val_score"] for h in history)
    assert json.loads((run / "val_eval.json").read_text())["score"] == result["outer_score_at_chosen_epoch"]


def test_selection_summary_without_scores() -> None:
    assert selection_summary([{"epoch": 1, "train_loss": 0.5}], 1) == {}
    history = [{"epoch": 1, "val_score": 0.7}, {"epoch": 2, "val_score": 0.8}]
    assert selection_summary(history, 1) == {"outer_score_at_chosen_epoch": 0.7, "outer_score_best_epoch": 0.8}


def test_nested_cv_bundle_chooses_operating_points_on_inner_films(shared_data: Path, tmp_path: Path) -> None:
    """`cv --inner-folds` then `bundle`: the summary gives the nested and the single-level figure, and the card's
    calibration and operating points are fitted on the inner films and measured on the outer folds."""
    from cxrviewer.model.weights import load_bundle
    from cxrviewer.train.cli import main as train_main

    with open(shared_data / "kermany" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    subset = [r for r in rows if r["NORMAL"] == "1"][:80] + [r for r in rows if r["PNEUMONIA"] == "1"][:80]
    spec = (f"plain,csv={write_rows(tmp_path / 'k.csv', subset)},root={shared_data},"
            f"mapping={shared_data / 'label_map_to_chexpert.csv'},name=kermany")
    cv = tmp_path / "cv"
    assert train_main(["cv", "--dataset", spec, "--out", str(cv), "--cache-dir", str(tmp_path / "cache"),
                       "--input-size", "48", "--batch-size", "16", "--workers", "0", "--folds", "2", "--epochs", "2",
                       "--quiet", "--labels", "No Finding,Pneumonia", "--inner-folds", "3"]) == 0
    selection = json.loads((cv / "cv_summary.json").read_text())["selection"]
    assert selection["nested"] is True and selection["folds"] == 2
    assert selection["outer_score_at_chosen_epoch"] <= selection["outer_score_best_epoch"]
    assert train_main(["bundle", "--cv", str(cv), "--fold", "0", "--out", str(tmp_path / "b" / "m.json")]) == 0
    card = load_bundle(tmp_path / "b" / "m.json").card
    assert card.validation is not None and "inner validation films (nested)" in str(card.validation.split)
    policy = card.operating_policy
    assert policy is not None and "inner validation films" in policy["chosen_on"]
    assert "flags_per_normal_film" in policy["measured_on_outer_folds"]
