"""The label vocabulary the app speaks (CheXpert's 14 observations) and its hierarchy."""

from __future__ import annotations

CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)

#: NIH-only findings with no CheXpert equivalent; a model may add them as extra findings.
EXTRA_LABELS: tuple[str, ...] = ("Emphysema", "Fibrosis", "Hernia")

#: Every label a model card may list.
KNOWN_LABELS: tuple[str, ...] = CHEXPERT_LABELS + EXTRA_LABELS

#: parent -> children: a positive child implies a positive parent.
HIERARCHY: dict[str, tuple[str, ...]] = {
    "Lung Opacity": ("Edema", "Consolidation", "Pneumonia", "Lung Lesion", "Atelectasis"),
    "Enlarged Cardiomediastinum": ("Cardiomegaly",),
}

#: NIH ChestX-ray14 names -> our vocabulary (several NIH names may map to one label).
NIH_TO_LABEL: dict[str, str] = {
    "No Finding": "No Finding",
    "Cardiomegaly": "Cardiomegaly",
    "Effusion": "Pleural Effusion",
    "Pleural_Thickening": "Pleural Other",
    "Pneumothorax": "Pneumothorax",
    "Atelectasis": "Atelectasis",
    "Consolidation": "Consolidation",
    "Pneumonia": "Pneumonia",
    "Edema": "Edema",
    "Mass": "Lung Lesion",
    "Nodule": "Lung Lesion",
    "Infiltration": "Lung Opacity",
    "Infiltrate": "Lung Opacity",
    "Emphysema": "Emphysema",
    "Fibrosis": "Fibrosis",
    "Hernia": "Hernia",
}

#: Labels of our vocabulary that NIH annotates (all others are unknown for NIH images).
NIH_COVERED: tuple[str, ...] = tuple(dict.fromkeys(NIH_TO_LABEL.values()))


def not_covered(model_labels: list[str] | tuple[str, ...]) -> list[str]:
    """CheXpert observations a model does not assess (shown as "not assessed", never negative)."""
    return [lab for lab in CHEXPERT_LABELS if lab not in model_labels]


def apply_hierarchy(labels: list[str], target: list[float], mask: list[float]) -> None:
    """Make a parent positive (and known) wherever one of its children is positive, in place."""
    index = {lab: i for i, lab in enumerate(labels)}
    for parent, children in HIERARCHY.items():
        if parent not in index:
            continue
        p = index[parent]
        for child in children:
            c = index.get(child)
            if c is not None and mask[c] > 0 and target[c] >= 0.5:
                target[p] = 1.0
                mask[p] = 1.0
