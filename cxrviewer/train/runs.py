"""The trainer's run folders, typed: what `train` and `cxrviewer-train cv` wrote, read once.

A run folder (`RunFolder`) holds ``config.json`` (the `TrainConfig`), ``split.json`` (image paths of the
training, outer-validation and, with nested selection, inner-validation sets), ``best.pt``, the selected
epoch's predictions ``val_probs.npy`` (outer fold) and ``inner_probs.npy`` (inner set), ``log.jsonl`` (the
learning curve), ``init.json`` and, once `cv` has summarised the fold, ``done.json``. A cross-validation
run (`CVRun`) is a folder of ``fold<k>`` run folders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from cxrviewer.train.datasets import dataset_name
from cxrviewer.train.loop import TrainConfig, load_samples
from cxrviewer.train.pack import read_pack
from cxrviewer.train.samples import LABEL_INDEX, Sample

#: Targets, masks, dataset names and predicted probabilities of one set of images, row-aligned.
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _row(line: str) -> dict[str, Any] | None:
    """One learning-curve record (None for a blank line or one a crash tore)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def label_arrays(samples: dict[str, Sample], paths: list[str], labels: list[str]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets, masks (columns of `labels`) and dataset names of the images at `paths`."""
    cols = [LABEL_INDEX[lab] for lab in labels]
    chosen = [samples[p] for p in paths]
    return (np.stack([s.target for s in chosen])[:, cols], np.stack([s.mask for s in chosen])[:, cols],
            np.array([s.dataset for s in chosen]))


@dataclass(frozen=True)
class RunFolder:
    """One training run's folder."""

    path: Path

    @cached_property
    def config_json(self) -> dict[str, Any]:
        return dict(_json(self.path / "config.json"))

    @cached_property
    def config(self) -> TrainConfig:
        return TrainConfig(**self.config_json)

    @cached_property
    def split(self) -> dict[str, list[str]]:
        return dict(_json(self.path / "split.json"))

    @property
    def train_paths(self) -> list[str]:
        return self.split["train"]

    @property
    def val_paths(self) -> list[str]:
        return self.split["val"]

    @property
    def inner_paths(self) -> list[str]:
        return self.split.get("inner", [])

    @property
    def validated(self) -> bool:
        """Whether the run held out a validation fold (a run on all data has none)."""
        return (self.path / "val_probs.npy").is_file()

    @property
    def nested(self) -> bool:
        """Whether an inner set chose the epoch (and can fit calibration and operating points)."""
        return bool(self.inner_paths) and (self.path / "inner_probs.npy").is_file()

    @property
    def done(self) -> dict[str, Any] | None:
        """The fold summary `cv` wrote (None while the fold is unfinished)."""
        path = self.path / "done.json"
        return dict(_json(path)) if path.is_file() else None

    def val_arrays(self, samples: dict[str, Sample], labels: list[str]) -> Arrays:
        """The outer fold's targets, masks, datasets and predictions at the selected epoch."""
        return (*label_arrays(samples, self.val_paths, labels), np.load(self.path / "val_probs.npy"))

    def inner_arrays(self, samples: dict[str, Sample], labels: list[str]) -> Arrays:
        """The inner set's targets, masks, datasets and predictions at the selected epoch."""
        return (*label_arrays(samples, self.inner_paths, labels), np.load(self.path / "inner_probs.npy"))

    def history(self) -> dict[str, Any]:
        """The run's ImageNet/scratch start and its learning curve (epoch, training loss, validation score)."""
        out: dict[str, Any] = {}
        if (self.path / "init.json").is_file():
            out["init"] = _json(self.path / "init.json")
        if (self.path / "log.jsonl").is_file():
            rows = [row for line in (self.path / "log.jsonl").read_text().splitlines() if (row := _row(line))]
            out["learning_curve"] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                                      if k in ("epoch", "train_loss", "val_score", "inner_score")} for r in rows]
        return out


@dataclass(frozen=True)
class CVRun:
    """A cross-validation folder of ``fold<k>`` run folders."""

    root: Path

    def fold(self, k: int) -> RunFolder:
        return RunFolder(self.root / f"fold{k}")

    def finished(self) -> dict[int, RunFolder]:
        """The folds `cv` has summarised, by fold number."""
        return {int(p.parent.name[4:]): RunFolder(p.parent) for p in sorted(self.root.glob("fold*/done.json"))}

    @property
    def n_folds(self) -> int:
        """The number of folds the run was set up with."""
        first = next(iter(sorted(self.root.glob("fold*/config.json"))), None)
        if first is None:
            raise ValueError(f"{self.root}: not a cross-validation run (no fold*/config.json)")
        return int(_json(first)["folds"])

    def first_config(self) -> TrainConfig:
        """The configuration of the lowest-numbered fold (the folds share their datasets)."""
        first = next(iter(sorted(self.root.glob("fold*/config.json"))), None)
        if first is None:
            raise ValueError(f"{self.root}: not a cross-validation run (no fold*/config.json)")
        return RunFolder(first.parent).config

    def learning_curves(self) -> dict[str, list[dict[str, Any]]]:
        return {f"fold{k}": run.history().get("learning_curve", []) for k, run in self.finished().items()}

    def pooled(self, samples: dict[str, Sample], labels: list[str], inner: bool = False) -> Arrays:
        """Every finished fold's outer (or inner) arrays, concatenated."""
        parts = [run.inner_arrays(samples, labels) if inner else run.val_arrays(samples, labels)
                 for _, run in sorted(self.finished().items())]
        return tuple(np.concatenate([part[i] for part in parts]) for i in range(4))  # type: ignore[return-value]

    @property
    def nested(self) -> bool:
        """Whether every finished fold chose its epoch on an inner set."""
        runs = self.finished()
        return bool(runs) and all(run.nested for run in runs.values())

    def oof(self, samples: dict[str, Sample], labels: list[str]) -> dict[str, np.ndarray]:
        """Out-of-fold probabilities by image path."""
        out: dict[str, np.ndarray] = {}
        for run in self.finished().values():
            out.update(zip(run.val_paths, run.val_arrays(samples, labels)[3], strict=True))
        return out


def dataset_names(cfg: TrainConfig) -> list[str]:
    if cfg.packed:
        return sorted({s.dataset for s in read_pack(Path(cfg.packed)).samples})
    return sorted({dataset_name(spec) for spec in cfg.datasets})


def samples_by_path(cfg: TrainConfig) -> dict[str, Sample]:
    return {str(s.path): s for s in load_samples(cfg)}


def gate_images(cfg: TrainConfig, paths: list[str], n: int = 300) -> list[np.ndarray]:
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
