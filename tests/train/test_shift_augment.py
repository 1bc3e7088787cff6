"""Site-shift augmentation in training (issue 19 item 2): off by default, the battery's transforms on real
cached squares when asked, labels untouched, deterministic per epoch."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrviewer.train import augment as augment_module
from cxrviewer.train.augment import TRAIN_SHIFTS, AugmentConfig, augment_with_geometry, site_shift
from cxrviewer.train.data import CachedImages
from cxrviewer.train.loop import TrainConfig


@pytest.fixture(scope="module")
def squares(shared_data: Path) -> np.ndarray:
    paths = sorted((shared_data / "nih" / "images").glob("*.png"))[:4]
    return np.stack([cv2.resize(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), (128, 128), interpolation=cv2.INTER_AREA)
                     for p in paths])


def test_off_by_default(squares: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    assert AugmentConfig().site_shift_p == 0.0 and TrainConfig(datasets=[], out_dir="x").site_shift_augment == 0.0

    def never(*_: object) -> np.ndarray:
        raise AssertionError("site shift applied although switched off")

    monkeypatch.setattr(augment_module, "site_shift", never)
    rng = np.random.default_rng(0)
    for img in squares:
        augment_with_geometry(img, rng, AugmentConfig())


def test_devices_are_painted_on_cached_squares(squares: np.ndarray) -> None:
    for name in ("chest_drain", "tubes", "ecg_leads", "central_line", "clips"):
        cfg = AugmentConfig(site_shift_p=1.0, site_shifts=(name,), site_severity=(1.0, 1.0))
        out = site_shift(squares[0], np.random.default_rng(1), cfg)
        changed = out != squares[0]
        assert out.dtype == np.uint8 and out.shape == squares[0].shape
        assert 0.001 < changed.mean() < 0.1, name  # thin hardware, not a new image
        assert np.all(out.astype(int) >= squares[0].astype(int) - 1), name  # paint only adds attenuation


def test_every_training_shift_runs_and_changes_the_square(squares: np.ndarray) -> None:
    assert "icu_devices" not in TRAIN_SHIFTS and {"chest_drain", "unsharp", "clahe", "text"} <= set(TRAIN_SHIFTS)
    for name in TRAIN_SHIFTS:
        out = site_shift(squares[1], np.random.default_rng(2), AugmentConfig(site_shifts=(name,)))
        assert (out != squares[1]).any(), name


def test_dataset_keeps_labels_and_is_deterministic_per_epoch(squares: np.ndarray) -> None:
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    masks = np.ones_like(targets)
    aug = AugmentConfig(site_shift_p=1.0)
    ds = CachedImages(squares, np.arange(4), targets, masks, True, seed=3, aug=aug)
    plain = CachedImages(squares, np.arange(4), targets, masks, True, seed=3)
    first = [ds[i] for i in range(4)]
    assert all(np.array_equal(first[i][1].numpy(), targets[i]) for i in range(4))
    assert all(np.array_equal(a[0].numpy(), b[0].numpy()) for a, b in zip(first, [ds[i] for i in range(4)],
                                                                          strict=True))
    assert any(not np.array_equal(a[0].numpy(), plain[i][0].numpy()) for i, a in enumerate(first))
