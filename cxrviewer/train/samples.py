"""The one sample format every dataset adapter produces, and CheXpert uncertainty policies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from cxrviewer.labels import CHEXPERT_LABELS, KNOWN_LABELS, apply_hierarchy

LABEL_INDEX = {lab: i for i, lab in enumerate(KNOWN_LABELS)}

#: Labels that "No Finding" = 1 makes known-negative (CheXpert: support devices are not findings).
NO_FINDING_EXCLUDES_ALL = tuple(lab for lab in CHEXPERT_LABELS if lab not in ("No Finding", "Support Devices"))


@dataclass
class Sample:
    """One training image: targets and mask over `KNOWN_LABELS` (mask 1 = label known)."""

    path: Path
    patient_id: str  # namespaced by dataset, e.g. "nih:123"
    view: str  # "frontal" | "lateral" | "unknown"
    target: np.ndarray  # float32 (len(KNOWN_LABELS),), soft targets allowed
    mask: np.ndarray  # float32 (len(KNOWN_LABELS),)
    dataset: str


class Uncertainty(StrEnum):
    """What an uncertain (-1) CheXpert label becomes (Pham et al., arXiv 1911.06475)."""

    IGNORE = "ignore"  # masked out of the loss
    ONES = "ones"
    ZEROS = "zeros"
    LSR_ONES = "lsr-ones"  # uniform in [0.55, 0.85]
    LSR_ZEROS = "lsr-zeros"  # uniform in [0, 0.3]


#: Defaults follow jfhealthcare's first-place CheXpert policy; other labels are ignored when uncertain.
DEFAULT_UNCERTAINTY: dict[str, Uncertainty] = {
    "Edema": Uncertainty.ONES,
    "Atelectasis": Uncertainty.ONES,
    "Cardiomegaly": Uncertainty.ZEROS,
    "Consolidation": Uncertainty.ZEROS,
    "Pleural Effusion": Uncertainty.ZEROS,
}


def resolve_uncertain(policy: Uncertainty, rng: np.random.Generator) -> tuple[float, float]:
    """(target, mask) for one uncertain label under `policy`."""
    if policy is Uncertainty.IGNORE:
        return 0.0, 0.0
    if policy is Uncertainty.ONES:
        return 1.0, 1.0
    if policy is Uncertainty.ZEROS:
        return 0.0, 1.0
    if policy is Uncertainty.LSR_ONES:
        return float(rng.uniform(0.55, 0.85)), 1.0
    return float(rng.uniform(0.0, 0.3)), 1.0


def make_sample(
    path: Path,
    patient_id: str,
    view: str,
    values: dict[str, float | None],
    dataset: str,
    hierarchy: bool = True,
) -> Sample:
    """Build a Sample from known label values (1/0 or soft); labels not given stay masked."""
    target = [0.0] * len(KNOWN_LABELS)
    mask = [0.0] * len(KNOWN_LABELS)
    for lab, val in values.items():
        if val is None:
            continue
        i = LABEL_INDEX[lab]
        target[i] = float(val)
        mask[i] = 1.0
    if hierarchy:
        apply_hierarchy(list(KNOWN_LABELS), target, mask)
    nf = LABEL_INDEX["No Finding"]
    if mask[nf] and target[nf] >= 0.5:
        # "No Finding" means every pathology is absent; support devices are not a finding.
        for lab in NO_FINDING_EXCLUDES_ALL:
            i = LABEL_INDEX[lab]
            if not mask[i]:
                target[i], mask[i] = 0.0, 1.0
    return Sample(path, patient_id, view, np.asarray(target, np.float32), np.asarray(mask, np.float32), dataset)


def view_from_tags(*values: str | None) -> str:
    """Coarse view from CSV fields such as 'PA', 'AP', 'Frontal', 'Lateral', 'LL'."""
    for v in values:
        s = (v or "").strip().upper()
        if s in {"PA", "AP", "FRONTAL", "AP SUPINE", "AP ERECT"}:
            return "frontal"
        if s in {"LATERAL", "LL", "RL", "LAT"}:
            return "lateral"
    return "unknown"
