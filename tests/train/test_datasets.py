"""Dataset adapters on real shared rows: NIH release format, CheXpert format, plain CSV + mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrviewer.labels import KNOWN_LABELS
from cxrviewer.train.datasets import DatasetError, load_chexpert, load_nih, load_spec, read_mapping
from cxrviewer.train.datasets import write_rows as write_csv
from cxrviewer.train.samples import LABEL_INDEX, Uncertainty


def col(label: str) -> int:
    return LABEL_INDEX[label]


def test_nih_release_format(shared_data: Path, nih_entry_rows) -> None:
    rep = load_nih(shared_data / "nih" / "Data_Entry_2017_subset.csv", [shared_data / "nih" / "images"])
    assert len(rep.samples) == len(nih_entry_rows) and rep.missing_files == 0
    by_name = {s.path.name: s for s in rep.samples}
    row = next(r for r in nih_entry_rows if "Mass" in r["Finding Labels"] and "|" in r["Finding Labels"])
    s = by_name[row["Image Index"]]
    assert s.target[col("Lung Lesion")] == 1 and s.mask[col("Lung Lesion")] == 1
    assert s.target[col("Lung Opacity")] == 1  # hierarchy: Lung Lesion -> Lung Opacity
    assert s.patient_id == f"nih:{row['Patient ID']}"
    # NIH annotates neither Fracture nor Support Devices: they stay masked, never negative
    assert s.mask[col("Fracture")] == 0 and s.mask[col("Support Devices")] == 0
    normal = by_name[next(r for r in nih_entry_rows if r["Finding Labels"] == "No Finding")["Image Index"]]
    assert normal.target[col("No Finding")] == 1 and normal.target[col("Cardiomegaly")] == 0
    assert normal.mask[col("Support Devices")] == 0


def test_missing_files_counted_not_fatal(tmp_path: Path, shared_data: Path, nih_entry_rows) -> None:
    rows = nih_entry_rows[:20] + [dict(nih_entry_rows[0], **{"Image Index": "does_not_exist.png"})]
    csv_path = write_csv(tmp_path / "Data_Entry_2017.csv", rows)
    rep = load_nih(csv_path, [shared_data / "nih" / "images"])
    assert rep.missing_files == 1 and len(rep.samples) == 20


def test_missing_column_is_named(tmp_path: Path, nih_entry_rows) -> None:
    rows = [{k: v for k, v in r.items() if k != "Patient ID"} for r in nih_entry_rows[:3]]
    csv_path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DatasetError, match="Patient ID"):
        load_nih(csv_path, [tmp_path])


def _chexpert_csv(tmp_path: Path, shared_data: Path, values: list[str], view: str = "Frontal") -> Path:
    labels = [lab for lab in KNOWN_LABELS if lab not in ("Emphysema", "Fibrosis", "Hernia")]
    imgs = sorted((shared_data / "nih" / "images").glob("*.png"))[: len(values)]
    rows = []
    for img, v in zip(imgs, values, strict=True):
        row = {"Path": str(img.relative_to(shared_data)), "Sex": "F", "Age": "50", "Frontal/Lateral": view,
               "AP/PA": "PA"}
        row.update({lab: "" for lab in labels})
        row["Edema"] = v
        row["Cardiomegaly"] = v
        row["Pneumothorax"] = v
        rows.append(row)
    return write_csv(tmp_path / "train.csv", rows)


@pytest.mark.parametrize("policy,expect_target,expect_mask", [
    (Uncertainty.IGNORE, None, 0.0),
    (Uncertainty.ONES, 1.0, 1.0),
    (Uncertainty.ZEROS, 0.0, 1.0),
    (Uncertainty.LSR_ONES, (0.55, 0.85), 1.0),
    (Uncertainty.LSR_ZEROS, (0.0, 0.3), 1.0),
])
def test_chexpert_uncertainty_policies(tmp_path, shared_data, policy, expect_target, expect_mask) -> None:
    csv_path = _chexpert_csv(tmp_path, shared_data, ["-1"] * 8)
    rep = load_chexpert(csv_path, shared_data, uncertainty={"Pneumothorax": policy}, seed=1)
    assert len(rep.samples) == 8
    t = np.array([s.target[col("Pneumothorax")] for s in rep.samples])
    m = np.array([s.mask[col("Pneumothorax")] for s in rep.samples])
    assert np.all(m == expect_mask)
    if isinstance(expect_target, tuple):
        assert np.all((t >= expect_target[0]) & (t <= expect_target[1])) and len(set(t.tolist())) > 1
    elif expect_target is not None:
        assert np.all(t == expect_target)
    # documented defaults: Edema uncertain -> 1, Cardiomegaly uncertain -> 0
    assert all(s.target[col("Edema")] == 1 and s.mask[col("Edema")] == 1 for s in rep.samples)
    assert all(s.target[col("Cardiomegaly")] == 0 and s.mask[col("Cardiomegaly")] == 1 for s in rep.samples)
    # blank = unknown
    assert all(s.mask[col("Fracture")] == 0 for s in rep.samples)


def test_chexpert_blank_and_values_and_frontal_filter(tmp_path, shared_data) -> None:
    csv_path = _chexpert_csv(tmp_path, shared_data, ["1", "0", ""])
    rep = load_chexpert(csv_path, shared_data)
    edema = [(s.target[col("Edema")], s.mask[col("Edema")]) for s in rep.samples]
    assert edema == [(1, 1), (0, 1), (0, 0)]
    assert rep.samples[0].target[col("Enlarged Cardiomediastinum")] == 1  # Cardiomegaly -> parent
    lateral = _chexpert_csv(tmp_path, shared_data, ["1", "0"], view="Lateral")
    assert load_chexpert(lateral, shared_data).skipped_lateral == 2
    assert len(load_chexpert(lateral, shared_data, frontal_only=False).samples) == 2


def test_plain_csv_with_mapping_kermany(kermany_subset, shared_data) -> None:
    rep = load_spec(kermany_subset)
    assert len(rep.samples) == 320
    pn = [s for s in rep.samples if s.target[col("Pneumonia")] == 1]
    normal = [s for s in rep.samples if s.target[col("No Finding")] == 1]
    assert len(pn) == 160 and len(normal) == 160
    # pediatric pneumonia set: Cardiomegaly is unknown for pneumonia films (masked, not negative)
    assert all(s.mask[col("Cardiomegaly")] == 0 for s in pn)
    assert all(s.patient_id.startswith("kermany:") for s in rep.samples)
    mapping = read_mapping(shared_data / "label_map_to_chexpert.csv", "nih")
    assert mapping["Mass"] == ["Lung Lesion"] and mapping["Infiltration"] == ["Lung Opacity"]


def test_bad_spec_messages(tmp_path) -> None:
    with pytest.raises(DatasetError, match="unknown kind"):
        load_spec("mimic,csv=x.csv")
    with pytest.raises(DatasetError, match="missing option"):
        load_spec("plain,csv=x.csv")
    with pytest.raises(DatasetError, match="not found"):
        load_spec(f"nih,csv={tmp_path / 'nope.csv'},images={tmp_path}")
