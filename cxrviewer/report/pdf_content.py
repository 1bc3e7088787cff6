"""What each PDF page says, decided here; `cxrviewer.report.pdf_writer` only lays it out.

One page per image: a header (patient/study, or the pseudonym when anonymised), the image with the top
finding's heat map, the reader's measurements and lung outline and its colour bar, the summary line and the
table of every finding in the viewer's reading order (`cxrviewer.report.reading`) with probability, operating
point and what that means ("not flagged at this operating point (sensitivity x)", never "absent"), gate
messages, the observations the model does not assess, a model card summary (name, version, validation
AUROC per label, training data) and the disclaimer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxrviewer import __version__
from cxrviewer.model import colormap
from cxrviewer.model.card import ModelCard
from cxrviewer.report.findings import PredictionLike, gate_reasons, gate_warnings, is_rejected
from cxrviewer.report.reading import (
    FLAGGED,
    NEAR_CUTOFF,
    near_cutoff,
    percent,
    reading_order,
    result_text,
    status_word,
    summary_line,
)

TITLE = "cxrviewer second-opinion report"
DISCLAIMER = ("NOT FOR DIAGNOSTIC USE. Research and education software: the findings are the output of a "
              "machine-learning model, may be wrong, and must not replace the reading of a qualified "
              "clinician. Heat maps show where the model looked, not a diagnosis.")


@dataclass
class FindingRow:
    label: str
    probability: str  # e.g. "83%" (`reading.percent`, as the viewer shows it)
    operating_point: str  # e.g. "45%"
    result: str  # "flagged" / "check" / "not flagged" / "not asserted" (at the operating point)
    positive: bool
    detail: str = ""  # e.g. "not flagged at this operating point (sensitivity 0.32); near cutoff"


@dataclass
class ModelSummary:
    name: str
    version: str
    sha256: str
    description: str
    auroc: list[tuple[str, str]]  # (label, "0.87" or "n/a")
    datasets: list[str]
    intended_use: str
    validation_note: str
    card_sha256: str = ""  # the card's canonical content (first 16 hex digits), beside the weights'
    card_note: str = ""  # the "modified model card" warning; empty for a sealed card
    operating_points: str = ""  # whose operating points decided "flagged" (the card's or a site profile's)


@dataclass
class ReportPage:
    """Everything one PDF page shows, as plain text and one RGB figure."""

    header: list[tuple[str, str]]
    figure: np.ndarray | None  # RGB uint8 (image + heat map + colour bar)
    figure_caption: str
    findings: list[FindingRow]
    status: list[str]  # why the model gave no result (rejected, error)
    summary: str  # "No finding flagged · No Finding 62% (...)" ("" without findings)
    measurements: list[str]  # the reader's measurements and marks drawn on the figure
    warnings: list[str]
    not_assessed: list[str]
    model: ModelSummary
    page_label: str  # "Image 1 of 2"
    generated: str = field(default_factory=lambda: dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
    title: str = TITLE
    disclaimer: str = DISCLAIMER


def _fmt_date(value: str) -> str:
    """DICOM DA (YYYYMMDD) -> YYYY-MM-DD; anything else as it is."""
    v = (value or "").strip()
    if len(v) == 8 and v.isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:]}"
    return v


def _person(value: str) -> str:
    """DICOM PN "Family^Given^Middle" -> "Family, Given Middle"."""
    parts = [p.strip() for p in str(value or "").split("^")]
    if len(parts) == 1:
        return parts[0]
    rest = " ".join(p for p in parts[1:] if p)
    return f"{parts[0]}, {rest}" if rest else parts[0]


def header_rows(meta: Any, *, file_name: str, anonymised: bool, pseudonym: str | None = None,
                image_size: Sequence[int] | None = None) -> list[tuple[str, str]]:
    """Patient/study lines for one image (`meta` is an `ImageMeta`); no identifiers when anonymised."""
    unknown = "-"
    modality = " ".join(x for x in (getattr(meta, "modality", ""), getattr(meta, "body_part", ""),
                                     getattr(meta, "view_position", "")) if x) or unknown
    size = f"{image_size[0]} x {image_size[1]} px" if image_size else unknown
    if anonymised:
        return [("Patient", f"anonymised (pseudonym {pseudonym})" if pseudonym else "anonymised"),
                ("Image", file_name), ("Modality / view", modality), ("Image size", size)]
    return [
        ("Patient", _person(getattr(meta, "patient_name", "")) or unknown),
        ("Patient ID", getattr(meta, "patient_id", "") or unknown),
        ("Birth date", _fmt_date(getattr(meta, "patient_birth_date", "")) or unknown),
        ("Accession", getattr(meta, "accession_number", "") or unknown),
        ("Study date", _fmt_date(getattr(meta, "study_date", "")) or unknown),
        ("Study", getattr(meta, "study_description", "") or unknown),
        ("Image", file_name),
        ("Modality / view", modality),
        ("Image size", size),
    ]


def _auroc_table(card: ModelCard) -> tuple[list[tuple[str, str]], str]:
    validation = card.validation
    labels = list(card.labels)
    if validation is None:
        return [(lab, "n/a") for lab in labels], "no validation recorded in the model card"
    if not validation.per_label:
        note = validation.note or "no per-label validation in the model card"
        return [(lab, "n/a") for lab in labels], note
    rows = []
    for lab in labels:
        entry = validation.per_label.get(lab)
        value = entry.auroc if entry is not None else None
        rows.append((lab, f"{value:.3f}" if value is not None else "n/a"))
    split = validation.split
    note = f"validation AUROC ({split})" if split else "validation AUROC"
    return rows, note


def model_summary(card: ModelCard | None) -> ModelSummary:
    if card is None:
        return ModelSummary(name="", version="", sha256="", description="", auroc=[], datasets=[],
                            intended_use="", validation_note="no model")
    auroc, note = _auroc_table(card)
    return ModelSummary(
        name=card.name, version=card.version, sha256=card.weights.sha256[:16],
        description=card.description or "", auroc=auroc,
        datasets=[title for ds in card.datasets if (title := ds.title.strip())],
        intended_use=card.intended_use or "", validation_note=note,
        card_sha256=card.card_sha256[:16], card_note=card.integrity_note() or "",
    )


def finding_rows(prediction: PredictionLike, card: ModelCard | None = None) -> list[FindingRow]:
    """The abnormalities in reading order ("No Finding" is the summary line, not a row)."""
    return [FindingRow(f.label, percent(f.probability), percent(f.threshold), status_word(f), bool(f.positive),
                       _detail(f, card)) for f in reading_order(prediction.findings)]


def _detail(finding: Any, card: ModelCard | None) -> str:
    """The line under a row: what the result means ("not flagged at this operating point (sensitivity x)");
    for a flagged finding only "near cutoff", when it is."""
    if status_word(finding) == FLAGGED:
        return NEAR_CUTOFF if near_cutoff(finding) else ""
    return result_text(finding, card)


def build_page(*, header: list[tuple[str, str]], figure: np.ndarray | None, map_label: str | None,
               map_shown: bool, prediction: PredictionLike | None, card: ModelCard | None,
               not_assessed: Sequence[str], page_label: str, measurements: Sequence[str] = ()) -> ReportPage:
    """One image's page."""
    summary = ""
    if prediction is None:
        status = ["No model result for this image."]
        rows: list[FindingRow] = []
    elif is_rejected(prediction):
        status = ["Not assessed: the input check refused this image."] + gate_reasons(prediction)
        rows = []
    else:
        status = []
        rows = finding_rows(prediction, card)
        summary = summary_line(prediction.findings)
    if map_label and map_shown:
        caption = (f"Heat map: {map_label} (where the model looked; colour = {colormap.SCALE_TITLE} on a fixed "
                   f"0-100% scale, opacity grows with it; {colormap.floor_note()})")
    elif map_label:
        caption = f"No heat map: {map_label} is below its operating point."
    else:
        caption = "No heat map."
    return ReportPage(header=header, figure=figure, figure_caption=caption, findings=rows, status=status,
                      summary=summary, measurements=list(measurements), warnings=gate_warnings(prediction),
                      not_assessed=list(not_assessed), model=model_summary(card), page_label=page_label)


def software_line() -> str:
    return f"cxrviewer {__version__}"
