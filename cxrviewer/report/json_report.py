"""The `cxrviewer-predict` JSON contract (DESIGN.md), built in one place for the CLI, the GUI and exports.

```
{"model": {"name": str, "sha256": str, "labels": [str, ...], "card_sha256": str, "card": "sealed" | "modified"},
 "results": [{"path": str, "status": "ok" | "rejected" | "error", "message": str | null,
              "image_size": [width, height] | null, "view": "frontal" | "lateral" | "unknown",
              "findings": [{"label", "probability", "threshold", "positive", "cam_peak": [x, y] | null}]}]}
```
``sha256`` is the weights' SHA-256, ``card_sha256`` that of the model card's canonical content; ``card`` is
"modified" when the card does not match the seal the trainer wrote (loaded only on explicit request; the JSON
then also carries ``"card_note"``, the "modified model card" warning). ``"operating_points"`` (cxrviewer-predict
always; `cxrviewer.model.site.operating_points_entry`) says whose thresholds decided "positive": ``"source"``
"model card" or "site profile" (then with the profile's name, method, films and date). Findings are listed
highest probability first. A rejected image (the input gate refused it) has no findings and its reasons as
message; gate warnings on an accepted image go into its message. An accepted image analysed with a card that
carries the abroad check's statistics (`cxrviewer.model.abroad`) also has ``"abroad"``: {"warn": bool, "score",
"processing", "lines", "reasons": [{"kind", "text", "labels"}], "less_reliable": [label, ...], "harmonised":
null or {"detail_gain", "lines_filled"}} ("harmonised": what the card's input harmonisation did to the film the
network saw, `cxrviewer.model.harmonise`; null when the card does not harmonise); with "warn" its sentence is in
the message too (findings are never withheld for it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cxrviewer.model.card import ModelCard
from cxrviewer.model.gate_status import GateStatus
from cxrviewer.report.findings import PredictionLike, gate_reasons, gate_warnings, is_rejected, ranked

STATUSES = (GateStatus.OK.value, GateStatus.REJECTED.value, "error")
VIEWS = ("frontal", "lateral", "unknown")


def model_entry(card: ModelCard | None) -> dict[str, Any]:
    """The contract's "model" object from a model card (empty fields without one)."""
    if not isinstance(card, ModelCard):
        return {"name": "", "sha256": "", "labels": []}
    entry: dict[str, Any] = {"name": card.name, "sha256": card.weights.sha256, "labels": list(card.labels),
                             "card_sha256": card.card_sha256, "card": card.card_status}
    note = card.integrity_note()
    if note:
        entry["card_note"] = note
    return entry


def _peak(value: Any) -> list[float] | None:
    if value is None:
        return None
    x, y = (float(v) for v in value)
    return [round(x, 2), round(y, 2)]


def _size(value: Any) -> list[int] | None:
    if value is None:
        return None
    w, h = (int(v) for v in value)
    return [w, h]


def _view(value: Any) -> str:
    v = str(value or "unknown").lower()
    return v if v in VIEWS else "unknown"


def _probability(value: Any) -> float:
    p = float(value)
    if not math.isfinite(p):
        raise ValueError(f"probability is not a finite number: {value!r}")
    return round(p, 6)


def finding_entry(finding: Any) -> dict[str, Any]:
    """One finding; ``triage`` (above a high-sensitivity triage point, not a finding) and ``note`` (why a
    label above its cutoff is not asserted) appear only when set."""
    entry = {"label": str(finding.label), "probability": _probability(finding.probability),
             "threshold": round(float(finding.threshold), 6), "positive": bool(finding.positive),
             "cam_peak": _peak(getattr(finding, "cam_peak", None))}
    if getattr(finding, "triage", False):
        entry["triage"] = True
    if getattr(finding, "note", None):
        entry["note"] = str(finding.note)
    return entry


def result_entry(path: str | Path, prediction: PredictionLike) -> dict[str, Any]:
    """One image's result from its prediction ("ok", or "rejected" when the input gate refused it)."""
    if is_rejected(prediction):
        status = GateStatus.REJECTED.value
        message: str | None = "; ".join(gate_reasons(prediction)) or "the input check refused this image"
        findings: list[dict[str, Any]] = []
    else:
        status = GateStatus.OK.value
        gate_message = getattr(prediction.gate, "message", None)  # includes "gate overridden: ..."
        if not isinstance(gate_message, str):
            gate_message = "; ".join(gate_warnings(prediction)) or None
        message = gate_message
        findings = [finding_entry(f) for f in ranked(prediction)]
    entry: dict[str, Any] = {"path": str(path), "status": status, "message": message,
                             "image_size": _size(getattr(prediction, "image_size", None)),
                             "view": _view(getattr(prediction, "view", None)), "findings": findings}
    abroad = getattr(prediction.gate, "abroad", None) if status == GateStatus.OK.value else None
    if abroad is not None:
        entry["abroad"] = abroad.to_json()
    return entry


def error_entry(path: str | Path, message: str, *, status: str = "error",
                image_size: Sequence[int] | None = None, view: str = "unknown") -> dict[str, Any]:
    """A result without findings: an unreadable file ("error") or an image refused before inference."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return {"path": str(path), "status": status, "message": str(message), "image_size": _size(image_size),
            "view": _view(view), "findings": []}


def contract(card: ModelCard | None, results: Sequence[Mapping[str, Any]],
             operating_points: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The whole document: {"model": ..., "results": [...]}, plus ``"operating_points"`` when given
    (`cxrviewer.model.site.operating_points_entry`: the card's or a site profile's, and which)."""
    doc: dict[str, Any] = {"model": model_entry(card)}
    if operating_points is not None:
        doc["operating_points"] = dict(operating_points)
    doc["results"] = [dict(r) for r in results]
    return doc


def dumps(document: Mapping[str, Any]) -> str:
    """Serialise a contract document (UTF-8 text, trailing newline, no NaN)."""
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
