"""`cxrviewer-train bundle`: a trained run (or an ensemble of runs) as the app's model bundle.

Validation in the card comes from cross-validation: every film is predicted by a model that never saw its
patient. With nested runs (`--inner-folds`), calibration and operating points are chosen on the pooled
inner validation sets and only measured on the outer folds, so the card's sensitivities, specificities and
flags per normal film predict a new patient-disjoint set; single-level runs choose and measure on the
same out-of-fold films (the figures are then optimistic, as the card's policy record says).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cxrviewer.fileio import atomic_write_text
from cxrviewer.model.network import CXRNet, merge_networks
from cxrviewer.train.bundle_writer import build_card, export_bundle, load_best
from cxrviewer.train.calibration import logit
from cxrviewer.train.cv_summary import fold_score, print_validation, summarise_folds
from cxrviewer.train.heldout import ensemble_pointing
from cxrviewer.train.runs import CVRun, RunFolder, dataset_names, gate_images, label_arrays, samples_by_path
from cxrviewer.train.validation import calibrated_validation, operating_fields


def cmd_bundle(a: argparse.Namespace) -> int:
    """Export a model as the app's bundle, with the cross-validation spread in its card.

    Either one fold's model (`--fold`, validated on its own held-out patients), or a model trained on all
    data (`--run`, folds=1) whose operating points and metrics come from the out-of-fold predictions of
    the cross-validation models (every image predicted by a model that never saw its patient). With several
    `--cv`/`--run` pairs (e.g. seeds of one recipe) the bundle is their ensemble (`merge_networks`: mean logits
    and CAMs in one network), validated on the mean out-of-fold logits of the cross-validation runs.
    """
    if len(a.cv) > 1 or (a.run and len(a.run) > 1):
        return _bundle_ensemble(a)
    cv = CVRun(Path(a.cv[0]))
    done = cv.finished()
    if not done:
        raise ValueError(f"{cv.root}: no finished fold (fold*/done.json) to bundle")
    summary = summarise_folds([run.done or {} for run in done.values()])  # the folds finished so far
    fit = None
    if a.run:
        run = RunFolder(Path(a.run[0]))
        net, ck = load_best(run.path)
        labels = ck["labels"]
        samples = samples_by_path(cv.first_config())  # the folds of one cv run share their datasets
        y, m, ds, p = cv.pooled(samples, labels)
        if cv.nested:
            fit = cv.pooled(samples, labels, inner=True)
        split = (f"trained on all images; metrics and operating points from out-of-fold predictions of the "
                 f"{len(done)} cross-validation models (patient-level folds {sorted(done)} of {cv.n_folds})")
        # held-out maps (where the folds saved them) are scored as the card's viewer draws them (smoothed)
        pointing = ensemble_pointing([cv.root], labels) or summary.get("pointing_game")
        origin: dict[str, bool | int] = {"all_data": True}
    else:
        fold = max(done, key=lambda k: fold_score(done[k].done or {})) if a.fold == "best" else int(a.fold)
        run = cv.fold(fold)
        net, ck = load_best(run.path)
        labels = ck["labels"]
        samples = samples_by_path(run.config)
        y, m, ds, p = run.val_arrays(samples, labels)
        if run.nested:
            fit = run.inner_arrays(samples, labels)
        split = f"patient-level fold {fold} of {run.config.folds} (this model's own held-out patients)"
        pointing = (run.done or {}).get("pointing_game")
        origin = {"fold": fold}
    if fit is not None:
        split += "; calibration and operating points chosen on the inner validation films (nested)"
    ops, validation = calibrated_validation(y, p, m, ds, labels, fit=fit)
    validation["split"] = split
    validation["pointing_game"] = pointing
    validation["cross_validation"] = summary
    cfg = run.config
    training = {"command": " ".join(sys.argv), "config": run.config_json, "best_epoch": ck["epoch"], **origin,
                **run.history(), "cv_learning_curves": cv.learning_curves()}
    if a.selection:
        training["selection"] = a.selection
    card = build_card(a.name or f"cxr-{cfg.arch}-{cfg.input_size}", cfg.arch, cfg.input_size, labels,
                      ops.thresholds, ops.high_sensitivity, validation, dataset_names(cfg), training,
                      operating_fields(ops), crop=cfg.crop)
    return _write_bundle(a, net, card, run, validation, cv.root)


def _write_bundle(a: argparse.Namespace, net: CXRNet, card: dict[str, Any], run: RunFolder,
                  validation: dict[str, Any], root: Path) -> int:
    """Fit the gate on the run's training images, write weights + card (+ README), replacing older bundles."""
    out = Path(a.out)
    for old in out.parent.glob("*.safetensors"):  # replace rather than accumulate bundles
        if old.stem != out.stem:
            old.unlink()
            old.with_suffix(".json").unlink(missing_ok=True)
    for old in out.parent.glob("*.onnx"):  # an export describes the weights being replaced (export-onnx again)
        old.unlink()
    export_bundle(net, card, out, gate_images(run.config, run.train_paths))
    if a.readme:
        from cxrviewer.train.model_readme import carry_sections, model_readme
        reproduce = a.reproduce or f"cxrviewer-train cv ... --out {root}\n{' '.join(sys.argv)}"
        readme = Path(a.readme)
        text = model_readme(json.loads(out.read_text()), reproduce)
        if readme.is_file():  # hand-measured sections of the previous README are kept, marked as such
            text = carry_sections(readme.read_text(encoding="utf-8"), text)
        atomic_write_text(readme, text)
    print_validation(validation)
    print(f"bundled {run.path} -> {out}")
    print(f"note: the input gate's 'abroad' record (films unlike the training films) is fitted on decoded training "
          f"films, not on these squares: run `python -m cxrviewer.train.shift.abroad --model {out} --write-card ...` "
          "(models/reproduce.sh, step 4) before export-onnx, or the app runs without that check", file=sys.stderr)
    return 0


def _mean_probabilities(oofs: list[dict[str, np.ndarray]]) -> tuple[list[str], np.ndarray]:
    """Images every member predicted, and the members' mean probability (mean of their logits)."""
    paths = [p for p in oofs[0] if all(p in o for o in oofs[1:])]
    mean_logit = np.mean([np.stack([logit(o[q]) for q in paths]) for o in oofs], axis=0)  # over members
    return paths, 1.0 / (1.0 + np.exp(-mean_logit))


def _bundle_ensemble(a: argparse.Namespace) -> int:
    """Bundle several all-data runs as one ensemble network, validated on their CV runs' mean OOF logits (and,
    where the folds saved held-out maps, the pointing game of their mean map)."""
    cvs, runs = [CVRun(Path(c)) for c in a.cv], [RunFolder(Path(r)) for r in a.run or []]
    if len(runs) != len(cvs):
        raise ValueError("an ensemble bundle needs one --run (all-data network) per --cv run")
    loaded = [load_best(r.path) for r in runs]
    labels = loaded[0][1]["labels"]
    if any(ck["labels"] != labels for _, ck in loaded):
        raise ValueError("the ensemble's runs were trained on different labels")
    net = merge_networks([n for n, _ in loaded])
    samples = samples_by_path(cvs[0].first_config())
    paths, p = _mean_probabilities([cv.oof(samples, labels) for cv in cvs])
    y, m, ds = label_arrays(samples, paths, labels)
    ops, validation = calibrated_validation(y, p, m, ds, labels)
    summaries = [summarise_folds([run.done or {} for run in cv.finished().values()]) for cv in cvs]
    members = [{"run": str(run.path), "cv": str(cv.root), "config": run.config_json, **run.history(),
                "cross_validation": summ["mean_over_folds"]}
               for cv, run, summ in zip(cvs, runs, summaries, strict=True)]
    validation["split"] = (f"an ensemble of {len(runs)} networks trained on all images; metrics and operating points "
                           f"from the mean out-of-fold logits of their {len(cvs)} cross-validation runs "
                           "(every film predicted only by models that never saw its patient)")
    validation["pointing_game"] = ensemble_pointing([cv.root for cv in cvs], labels) or summaries[0].get(
        "pointing_game")
    validation["cross_validation"] = summaries[0]
    training = {"command": " ".join(sys.argv), "config": runs[0].config_json, "all_data": True,
                **runs[0].history(), "cv_learning_curves": cvs[0].learning_curves()}
    if a.selection:
        training["selection"] = a.selection
    cfg = runs[0].config
    card = build_card(a.name or f"cxr-{net.arch}-{cfg.input_size}", net.arch, cfg.input_size, labels,
                      ops.thresholds, ops.high_sensitivity, validation, dataset_names(cfg), training,
                      {**operating_fields(ops), "ensemble_of": members}, crop=cfg.crop)
    return _write_bundle(a, net, card, runs[0], validation, cvs[0].root)
