"""Patient-level splits: no patient ever appears in two splits."""

from __future__ import annotations

import numpy as np

from cxrviewer.train.samples import Sample


def patient_folds(samples: list[Sample], k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) per sample; all images of a patient share one fold.

    Patients are shuffled with `seed` and dealt to folds, largest patients first, so fold sizes stay even.
    """
    if k < 2:
        raise ValueError("k-fold needs k >= 2")
    patients: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        patients.setdefault(s.patient_id, []).append(i)
    rng = np.random.default_rng(seed)
    order = list(patients)
    rng.shuffle(order)
    order.sort(key=lambda p: -len(patients[p]))  # stable: shuffled within equal sizes
    folds = np.zeros(len(samples), dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for p in order:
        f = int(np.argmin(load + rng.random(k) * 1e-3))
        folds[patients[p]] = f
        load[f] += len(patients[p])
    return folds


def train_val_indices(samples: list[Sample], k: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and validation images for `fold` of a patient-level k-fold split."""
    folds = patient_folds(samples, k, seed)
    return np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
