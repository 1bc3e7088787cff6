"""Which films the site-shift battery runs on: an enriched NIH sample and Kermany films no model saw."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from cxrviewer.labels import KNOWN_LABELS
from cxrviewer.train.datasets import load_spec
from cxrviewer.train.samples import Sample

NO_FINDING = "No Finding"
#: The bundled model's training packs capped Kermany at these image counts (models/reproduce.sh, pack seed 0).
KERMANY_PACK_CAPS = (1400, 1000)


def positive(sample: Sample, label: str) -> bool:
    i = KNOWN_LABELS.index(label)
    return bool(sample.mask[i] > 0 and sample.target[i] >= 0.5)


def pick_nih(samples: list[Sample], labels: list[str], n: int, seed: int = 0,
             normal_share: float = 0.45) -> list[Sample]:
    """`n` films: `normal_share` of them "No Finding", the rest chosen rarest label first so that every label
    has about the same number of positive films (all of a label's positives when it has fewer)."""
    rng = np.random.default_rng(seed)
    order = [samples[int(i)] for i in rng.permutation(len(samples))]
    normals = [s for s in order if positive(s, NO_FINDING)]
    abnormal = [s for s in order if not positive(s, NO_FINDING)]
    n_normal = min(len(normals), round(n * normal_share))
    picked: list[Sample] = normals[:n_normal]
    chosen: set[Path] = set()
    budget = n - n_normal
    findings = [lab for lab in labels if lab != NO_FINDING]
    quota = max(1, budget // max(1, len(findings)))
    counts: Counter[str] = Counter()
    for label in sorted(findings, key=lambda lab: sum(positive(s, lab) for s in abnormal)):
        for s in abnormal:
            if counts[label] >= quota or len(chosen) >= budget:
                break
            if s.path not in chosen and positive(s, label):
                chosen.add(s.path)
                counts.update(lab for lab in findings if positive(s, lab))
    rest = [s for s in abnormal if s.path not in chosen][: max(0, budget - len(chosen))]
    return picked + [s for s in abnormal if s.path in chosen] + rest


def pack_patients(samples: list[Sample], dataset: str, cap: int, seed: int = 0) -> set[str]:
    """The patients `cxrviewer-train pack --max-images DATASET=cap --seed seed` keeps (the same draw)."""
    rng = np.random.default_rng(seed)
    patients = sorted({s.patient_id for s in samples if s.dataset == dataset})
    rng.shuffle(patients)
    per_patient = Counter(s.patient_id for s in samples if s.dataset == dataset)
    keep: set[str] = set()
    count = 0
    for pid in patients:
        if count + per_patient[pid] > cap:
            continue
        keep.add(pid)
        count += per_patient[pid]
    return keep


def unseen_kermany(data: Path, n: int, seed: int = 0) -> list[Sample]:
    """Up to `n` Kermany films (half normal, half pneumonia) of patients in none of the bundled model's
    training packs (the packs' draw is replayed: `pack_patients` with `KERMANY_PACK_CAPS`)."""
    spec = (f"plain,csv={data / 'kermany' / 'labels.csv'},root={data},"
            f"mapping={data / 'label_map_to_chexpert.csv'},name=kermany")
    samples = load_spec(spec).samples
    seen = set().union(*(pack_patients(samples, "kermany", cap) for cap in KERMANY_PACK_CAPS))
    unseen = [s for s in samples if s.patient_id not in seen]
    rng = np.random.default_rng(seed)
    order = [unseen[int(i)] for i in rng.permutation(len(unseen))]
    normals = [s for s in order if positive(s, NO_FINDING)][: n // 2]
    sick = [s for s in order if positive(s, "Pneumonia")][: n - len(normals)]
    return normals + sick


def nih_samples(data: Path) -> list[Sample]:
    spec = f"nih,csv={data / 'nih' / 'Data_Entry_2017_subset.csv'},images={data / 'nih' / 'images'}"
    return load_spec(spec).samples
