"""What the viewer knows about each study and image (plain Python; the Qt models read these)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxrviewer.report.findings import FindingLike
from cxrviewer.report.reading import order_key, percent, top_finding

if TYPE_CHECKING:
    from cxrviewer.model.inference import Prediction

__all__ = ["percent"]  # the one probability formatter of the viewer and the exports (`report.reading`)


class State(StrEnum):
    """Where an image (or a study, aggregated) is in the pipeline."""

    QUEUED = "queued"
    ANALYSING = "analysing"
    DONE = "done"
    REJECTED = "rejected"
    ERROR = "error"
    NOT_ANALYSED = "not analysed"  # no model available


#: Order used to aggregate image states into one study state (first match wins).
_STUDY_STATE_ORDER = (
    State.ANALYSING,
    State.QUEUED,
    State.DONE,
    State.REJECTED,
    State.NOT_ANALYSED,
    State.ERROR,
)


@dataclass
class ImageRecord:
    """One image of a study: its file, its state and, once analysed, the model's prediction."""

    key: str
    path: Path
    label: str = ""  # short description for the image selector ("PA", "series 2", file name ...)
    state: State = State.QUEUED
    message: str = ""  # error text or gate reason (user-readable)
    prediction: Prediction | None = None
    forced: bool = False  # analysed despite a gate rejection
    thumbnail: np.ndarray | None = None  # uint8 (h, w) grey, display polarity
    width: int = 0
    height: int = 0

    @property
    def findings(self) -> list[FindingLike]:
        return list(getattr(self.prediction, "findings", None) or [])

    def top_finding(self) -> FindingLike | None:
        """The most abnormal finding of this image (see `most_abnormal`), or None."""
        return most_abnormal(self.findings)


@dataclass
class StudyRecord:
    """One row of the study browser."""

    key: str
    number: int  # 1-based order of arrival; the anonymous name is "Study <number>"
    patient_name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    accession: str = ""
    study_date: str = ""  # YYYYMMDD as in DICOM, or ""
    description: str = ""
    modality: str = ""
    view: str = ""
    source_name: str = ""  # file or folder name, used as a title when there is no patient name
    dicom: bool = False  # DICOM files (SR / Secondary Capture exports apply)
    images: list[ImageRecord] = field(default_factory=list)

    # --- aggregated state -------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        states = {img.state for img in self.images}
        for state in _STUDY_STATE_ORDER:
            if state in states:
                return state
        return State.QUEUED

    @property
    def message(self) -> str:
        """The first error / rejection message among the images ("" when none)."""
        for img in self.images:
            if img.message and img.state in (State.ERROR, State.REJECTED, State.NOT_ANALYSED):
                return img.message
        return ""

    def top_finding(self) -> tuple[FindingLike, ImageRecord] | None:
        """The most abnormal finding over the study's images, with its image."""
        best: tuple[tuple[float, float], FindingLike, ImageRecord] | None = None
        for img in self.images:
            f = img.top_finding()
            if f is not None and (best is None or abnormality_key(f) > best[0]):
                best = (abnormality_key(f), f, img)
        return None if best is None else (best[1], best[2])

    def abnormality(self) -> float:
        """Sort key for "most abnormal first": the study's most abnormal image (see `abnormality_score`),
        studies with a positive finding before those without; unanalysed studies last, unreadable ones
        after them."""
        scores = [(img.top_finding(), abnormality_score(img.findings)) for img in self.images]
        known = [(top, score) for top, score in scores if score is not None]
        if not known:
            return -math.inf if self.state in (State.ERROR, State.REJECTED, State.NOT_ANALYSED) else -1.0
        return max(score + (1.0 if top is not None and top.positive else 0.0) for top, score in known)

    def image(self, key: str) -> ImageRecord | None:
        return next((img for img in self.images if img.key == key), None)

    # --- identifiers --------------------------------------------------------------------------------------

    def title(self, hide_identifiers: bool, image: ImageRecord | None = None) -> str:
        """The row title: the patient's name (else the file name: `image`'s own when given, else the first
        file's), or "Study N" when identifiers are hidden."""
        if hide_identifiers:
            return f"Study {self.number}"
        name = format_person_name(self.patient_name)
        own = image.path.name if image is not None and image.path.name else ""
        return name or own or self.source_name or f"Study {self.number}"

    def subtitle(self, hide_identifiers: bool) -> str:
        """ID · modality · view · number of images (ID left out when hidden)."""
        parts = []
        if self.patient_id and not hide_identifiers:
            parts.append(f"ID {self.patient_id}")
        if self.modality:
            parts.append(self.modality)
        if self.view:
            parts.append(self.view)
        if len(self.images) > 1:
            parts.append(f"{len(self.images)} images")
        return " · ".join(parts)

    def date_text(self, hide_identifiers: bool) -> str:
        """Study date as YYYY-MM-DD (only the year when identifiers are hidden)."""
        d = self.study_date.strip()
        if len(d) >= 8 and d[:8].isdigit():
            return d[:4] if hide_identifiers else f"{d[:4]}-{d[4:6]}-{d[6:8]}"
        return ""

    def identifiers(self) -> list[str]:
        """Every identifying string of this study (for tests and for scrubbing messages)."""
        values = [
            self.patient_name,
            format_person_name(self.patient_name),
            self.patient_id,
            self.birth_date,
            self.accession,
        ]
        return [v for v in values if v and len(v) >= 2]


# --- texts of a worklist row ---------------------------------------------------------------------------------


def state_text(record: StudyRecord) -> str:
    """The row's state chip: "analysing 2/4" while in progress, "done 2/4" when only some images gave a result."""
    state, total = record.state, len(record.images)
    if state in (State.QUEUED, State.ANALYSING) and total > 1:
        done = sum(1 for i in record.images if i.state not in (State.QUEUED, State.ANALYSING))
        return f"{state.value} {done}/{total}"
    if state == State.DONE and total > 1:
        done = sum(1 for i in record.images if i.state == State.DONE)
        if done < total:
            return f"{state.value} {done}/{total}"
    return state.value


def problem_text(record: StudyRecord) -> str:
    """What went wrong inside a study with more than one image ("2 rejected, 1 failed"; the state chip gives
    the total: "done 1/4"), or ""."""
    total = len(record.images)
    if total < 2:
        return ""
    parts = []
    for state, word in ((State.ERROR, "failed"), (State.REJECTED, "rejected"), (State.NOT_ANALYSED, "not analysed")):
        count = sum(1 for img in record.images if img.state == state)
        if 0 < count < total:
            parts.append(f"{count} {word}")
    return ", ".join(parts)


def finding_text(record: StudyRecord, hide_identifiers: bool) -> tuple[str, bool]:
    """(text of the third line, emphasised?) for a row."""
    state = record.state
    if state in (State.ERROR, State.REJECTED, State.NOT_ANALYSED):
        message = record.message
        for img in record.images:  # the row already names the file: show the reason
            prefix = f"{img.path.name}: "
            if message.startswith(prefix):
                message = message[len(prefix):]
        return scrub(message, record, hide_identifiers), False
    problems = problem_text(record)
    top = record.top_finding()
    if top is not None and top[0].positive:
        finding = top[0]
        return " · ".join(p for p in (f"{finding.label} {percent(finding.probability)}", problems) if p), True
    if state == State.DONE:
        return " · ".join(p for p in (problems, "no finding above its operating point") if p), False
    return problems, False


def scrub(message: str, record: StudyRecord, hide_identifiers: bool) -> str:
    """A message without the study's identifiers or file names when identifiers are hidden."""
    if not hide_identifiers:
        return message
    out = message
    for img in record.images:
        for name in (str(img.path), img.path.name):
            out = out.replace(name, "[file]")
    if record.source_name:
        out = out.replace(record.source_name, "[file]")
    for ident in record.identifiers():
        out = out.replace(ident, "[hidden]")
    return out


def abnormality_key(finding: FindingLike) -> tuple[float, float]:
    """Larger = read earlier: the reading order of the findings panel (`report.reading`: flagged, check, the
    rest; by margin above the operating point), as a key to compare findings of different images."""
    group, negative_margin = order_key(finding)
    return (-float(group), -negative_margin)


def most_abnormal(findings: list[FindingLike]) -> FindingLike | None:
    """The top finding: the first abnormality of the reading order ("No Finding" left out); or None."""
    return top_finding(findings)


def abnormality_score(findings: list[FindingLike]) -> float | None:
    """How abnormal the model finds an image, in [0, 1]: 1 - P(No Finding) when the model has that
    label (its own normal-vs-abnormal estimate), else the highest positive probability; None if unknown."""
    if not findings:
        return None
    normal = next((f for f in findings if f.label == "No Finding"), None)
    if normal is not None:
        return 1.0 - float(normal.probability)
    positives = [float(f.probability) for f in findings if f.positive]
    return max(positives, default=0.0)


def format_person_name(value: str) -> str:
    """DICOM PN "Family^Given^Middle" -> "Family, Given Middle"."""
    value = (value or "").strip()
    if "^" not in value:
        return value
    parts = [p.strip() for p in value.split("=")[0].split("^")]
    family, given = parts[0], " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if family and given else family or given
