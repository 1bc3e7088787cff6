"""Torch dataset over the uint8 cache, with per-epoch deterministic augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cxrviewer.model.preprocess import normalize
from cxrviewer.train.augment import AugmentConfig, augment_with_geometry
from cxrviewer.train.boxes import padded


class CachedImages(Dataset):
    """(image (1, S, S) float32, target (L,), mask (L,), boxes (MAX_BOXES, 5)) from a uint8 cache.

    `boxes` maps a cache row to its bounding boxes in model-input pixels (see `boxes.boxes_by_image`);
    they follow the image through the augmentation. Rows without boxes get label -1 rows."""

    def __init__(self, cache: np.ndarray, rows: np.ndarray, targets: np.ndarray, masks: np.ndarray,
                 train: bool, seed: int = 0, aug: AugmentConfig | None = None,
                 boxes: dict[int, np.ndarray] | None = None) -> None:
        self.cache = cache
        self.rows = rows
        self.targets = targets.astype(np.float32)
        self.masks = masks.astype(np.float32)
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.aug = aug or AugmentConfig()
        self.boxes = boxes or {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        row = int(self.rows[i])
        img = np.asarray(self.cache[row])
        geometry = None
        if self.train:
            rng = np.random.default_rng((self.seed, self.epoch, row))
            x, geometry = augment_with_geometry(img, rng, self.aug)
        else:
            x = img.astype(np.float32) / 255.0
        return (torch.from_numpy(normalize(x)[None]), torch.from_numpy(self.targets[i]),
                torch.from_numpy(self.masks[i]), torch.from_numpy(padded(self.boxes.get(row), geometry)))
