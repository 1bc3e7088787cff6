"""Worklist logic without Qt: top finding, abnormality order and identifier masking."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

from cxrviewer.gui.records import (
    ImageRecord,
    State,
    StudyRecord,
    abnormality_score,
    format_person_name,
    most_abnormal,
    percent,
)


def finding(label: str, p: float, threshold: float) -> SimpleNamespace:
    return SimpleNamespace(label=label, probability=p, threshold=threshold, positive=p >= threshold)


def study(number: int, findings: list | None, state: State = State.DONE) -> StudyRecord:
    image = ImageRecord(key=f"k{number}", path=Path(f"/x/{number}.dcm"), state=state,
                        prediction=None if findings is None else SimpleNamespace(findings=findings))
    return StudyRecord(key=f"s{number}", number=number, images=[image])


def test_top_finding_is_the_flagged_one_furthest_above_its_cutoff() -> None:
    findings = [finding("No Finding", 0.9, 0.5), finding("Edema", 0.30, 0.05), finding("Cardiomegaly", 0.6, 0.4),
                finding("Pneumothorax", 0.7, 0.8)]
    # 30 % at a 5 % cutoff is further above it (in logits) than 60 % at 40 %; an unflagged 70 % comes after both
    assert most_abnormal(findings).label == "Edema"
    assert most_abnormal(findings[2:]).label == "Cardiomegaly"  # positive beats a more probable negative
    negatives = [finding("Edema", 0.1, 0.5), finding("Pneumothorax", 0.3, 0.5)]
    top = most_abnormal(negatives)
    assert top.label == "Pneumothorax" and not top.positive
    assert most_abnormal([finding("No Finding", 0.9, 0.5)]) is None


def test_abnormality_orders_the_worklist() -> None:
    normal = study(1, [finding("No Finding", 0.95, 0.5), finding("Edema", 0.02, 0.3)])
    sick = study(2, [finding("No Finding", 0.10, 0.5), finding("Edema", 0.7, 0.3)])
    borderline = study(3, [finding("No Finding", 0.40, 0.5), finding("Edema", 0.2, 0.3)])
    queued = study(4, None, State.QUEUED)
    broken = study(5, None, State.ERROR)
    order = sorted([normal, sick, borderline, queued, broken], key=lambda s: -s.abnormality())
    assert [s.number for s in order] == [2, 3, 1, 4, 5]
    assert abnormality_score(sick.images[0].findings) == 0.9
    assert broken.abnormality() == -math.inf
    no_normal_label = [finding("Edema", 0.7, 0.3), finding("Effusion", 0.2, 0.5)]
    assert abnormality_score(no_normal_label) == 0.7


def test_identifiers_are_masked_in_titles() -> None:
    record = StudyRecord(key="s", number=7, patient_name="Doe^Jane^Q", patient_id="PID-1", study_date="20190314",
                         modality="CR", view="PA", source_name="file.dcm")
    assert record.title(False) == "Doe, Jane Q" and record.title(True) == "Study 7"
    assert "PID-1" in record.subtitle(False) and "PID-1" not in record.subtitle(True)
    assert record.date_text(False) == "2019-03-14" and record.date_text(True) == "2019"
    assert set(record.identifiers()) >= {"Doe^Jane^Q", "Doe, Jane Q", "PID-1"}
    assert format_person_name("SMITH") == "SMITH"
    assert percent(0.001) == "<1%" and percent(0.5) == "50%" and percent(0.999) == ">99%"
