"""The reader's agree / disagree verdicts on the model's findings, kept per film for site calibration.

One record per film and model (a JSON object per line, ``"format": "cxrviewer-feedback/1"``)::

    {"format", "film": SHA-256 of the file's bytes, "time": ISO 8601 UTC, "model": name,
     "model_sha256", "card_sha256", "complete": bool,
     "labels": {label: {"probability", "threshold", "flagged": bool, "verdict": "agree" | "disagree" | null}}}

No path, name or identifier of the patient is stored: the film is known by its content hash only, so a second
verdict on the same film (same model) replaces the first. ``complete`` means the reader looked at every label:
a label left without a verdict then counts as agreed with the model. What a verdict says of the film:
flagged + agree or not flagged + disagree = the finding is present; flagged + disagree or not flagged + agree
= absent (`FeedbackRecord.truth`). The log is rewritten atomically (`cxrviewer.fileio.atomic_write_text`) on
every change, so a crash never leaves half a record.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cxrviewer.fileio import atomic_write_text

FEEDBACK_FORMAT = "cxrviewer-feedback/1"
AGREE = "agree"
DISAGREE = "disagree"
VERDICTS = (AGREE, DISAGREE)


class FeedbackError(ValueError):
    """A feedback log or record that cannot be used; the message says which file / line and why."""


@dataclass(frozen=True)
class LabelVerdict:
    """One label of one film as the reader saw it: the model's probability and call, and the verdict."""

    probability: float
    threshold: float
    flagged: bool
    verdict: str | None = None  # AGREE, DISAGREE or None (not given)

    def __post_init__(self) -> None:  # kept to 6 decimals: a record reads back as it was made
        object.__setattr__(self, "probability", round(float(self.probability), 6))
        object.__setattr__(self, "threshold", round(float(self.threshold), 6))

    def to_json(self) -> dict[str, Any]:
        return {"probability": self.probability, "threshold": self.threshold, "flagged": self.flagged,
                "verdict": self.verdict}


def _verdict(label: str, doc: Any) -> LabelVerdict:
    if not isinstance(doc, dict):
        raise FeedbackError(f"label {label!r} is not a JSON object")
    p, t, flagged, verdict = doc.get("probability"), doc.get("threshold"), doc.get("flagged"), doc.get("verdict")
    for name, value in (("probability", p), ("threshold", t)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not (0.0 <= value <= 1.0):
            raise FeedbackError(f"label {label!r}: {name} must be a probability in [0, 1]")
    if not isinstance(flagged, bool):
        raise FeedbackError(f"label {label!r}: flagged must be true or false")
    if verdict is not None and verdict not in VERDICTS:
        raise FeedbackError(f"label {label!r}: verdict must be 'agree', 'disagree' or null, not {verdict!r}")
    return LabelVerdict(float(p), float(t), flagged, verdict)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FeedbackRecord:
    """The reader's verdicts on one film's findings from one model."""

    film: str
    model: str
    model_sha256: str
    card_sha256: str
    labels: Mapping[str, LabelVerdict]
    complete: bool = False
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def truth(self, label: str) -> bool | None:
        """What the verdict says of the film: True (present), False (absent) or None (no verdict)."""
        entry = self.labels.get(label)
        if entry is None:
            return None
        verdict = entry.verdict if entry.verdict is not None else (AGREE if self.complete else None)
        if verdict is None:
            return None
        return entry.flagged == (verdict == AGREE)

    def for_model(self, sha256: str, card_sha256: str) -> bool:
        return self.model_sha256 == sha256 and self.card_sha256 == card_sha256

    def to_json(self) -> dict[str, Any]:
        return {"format": FEEDBACK_FORMAT, "film": self.film, "time": self.time, "model": self.model,
                "model_sha256": self.model_sha256, "card_sha256": self.card_sha256, "complete": self.complete,
                "labels": {lab: v.to_json() for lab, v in self.labels.items()}}

    @classmethod
    def from_json(cls, doc: Any) -> FeedbackRecord:
        if not isinstance(doc, dict) or doc.get("format") != FEEDBACK_FORMAT:
            raise FeedbackError(f"not a cxrviewer feedback record (format {FEEDBACK_FORMAT!r} expected)")
        for key in ("film", "time", "model", "model_sha256", "card_sha256"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise FeedbackError(f"{key} must be a non-empty string")
        if not isinstance(doc.get("complete", False), bool):
            raise FeedbackError("complete must be true or false")
        labels = doc.get("labels")
        if not isinstance(labels, dict) or not labels:
            raise FeedbackError("labels must be a non-empty JSON object")
        return cls(doc["film"], doc["model"], doc["model_sha256"], doc["card_sha256"],
                   {str(k): _verdict(str(k), v) for k, v in labels.items()}, bool(doc.get("complete", False)),
                   doc["time"])


def film_id(path: str | Path) -> str:
    """The film's key in the log: SHA-256 of the file's bytes (no path or name is kept)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record_from_prediction(prediction: Any, engine: Any, film: str, verdicts: Mapping[str, str | None],
                           complete: bool) -> FeedbackRecord:
    """A record from an analysed film (`Prediction`), the engine that analysed it and the reader's verdicts."""
    bad = [v for v in verdicts.values() if v is not None and v not in VERDICTS]
    if bad:
        raise FeedbackError(f"unknown verdict {bad[0]!r} (agree or disagree)")
    labels = {}
    for f in prediction.findings:
        p = float(f.probability)
        if not math.isfinite(p):
            continue
        labels[str(f.label)] = LabelVerdict(p, float(f.threshold), bool(f.positive), verdicts.get(f.label))
    if not labels:
        raise FeedbackError("the film has no findings to give feedback on (not analysed, or rejected)")
    return FeedbackRecord(film, str(engine.name), str(engine.sha256), str(engine.card_sha256), labels, complete)


def read_log(path: str | Path) -> list[FeedbackRecord]:
    """Every record of a feedback log, in file order (a missing file: none). FeedbackError names the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise FeedbackError(f"{path}: cannot read the feedback log ({exc})") from None
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(FeedbackRecord.from_json(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise FeedbackError(f"{path} line {n}: not JSON ({exc.msg})") from None
        except FeedbackError as exc:
            raise FeedbackError(f"{path} line {n}: {exc}") from None
    return records


def write_log(path: str | Path, records: Iterable[FeedbackRecord]) -> Path:
    """Write the whole log atomically (one record per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, "".join(json.dumps(r.to_json(), ensure_ascii=True) + "\n" for r in records))


def add_record(path: str | Path, record: FeedbackRecord) -> list[FeedbackRecord]:
    """Add a record to the log, replacing an earlier one for the same film and model; returns the new log."""
    kept = [r for r in read_log(path) if not (r.film == record.film and r.model_sha256 == record.model_sha256
                                               and r.card_sha256 == record.card_sha256)]
    records = [*kept, record]
    write_log(path, records)
    return records


def for_model(records: Sequence[FeedbackRecord], sha256: str, card_sha256: str) -> list[FeedbackRecord]:
    """The records made with one model (weights and card), oldest first."""
    return sorted((r for r in records if r.for_model(sha256, card_sha256)), key=lambda r: r.time)
