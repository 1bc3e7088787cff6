"""How the model's findings are read: one order, one summary line, one near-cutoff rule and one probability
formatter for the viewer's panel and every export (PNG, PDF, DICOM SR/SC), so they never disagree.

Order (`reading_order`): flagged findings first (at or above their operating point), then "check" items
(above a high-sensitivity triage point, never a finding), then the rest; within each group by **margin**,
the distance of the probability from the label's own operating point in logit units,
``logit(p) - logit(cutoff)`` (probabilities and cutoffs are both on the card's calibrated scale). Every label
has its own cutoff, so raw probabilities do not rank findings: Lung Opacity at 46 % (cutoff 50 %) is not
flagged, Atelectasis at 24 % (cutoff 23.5 %) is. Logits, not percentage points, because 2 points matter at a
5 % cutoff and hardly at a 50 % one. Ties keep the model's order. "No Finding" is not an abnormality: it
is left out of the order and becomes the summary line (`summary_line`); observations the model does not
cover are listed after all of these by the callers, never as negative.

Near cutoff (`near_cutoff`): ``|margin| < NEAR_CUTOFF_LOGIT``. The band is measured, not guessed: the 33
demo films exist at 512 px (nih/demo) and at 256 px (nih/images); with the bundled model the calibrated
logits of a film's two copies differ by a median of 0.11 and a 90th percentile of 0.36; 9 of the 363
(film, label) pairs fall on opposite sides of their cutoff, 8 of them inside the band
(`tests/bench/near_cutoff_band.py`). A finding inside the band could land on the other side of its cutoff
on another copy of the same film, so it is tagged "near cutoff" wherever it is shown. The band is about the
finding's own operating point; a triage point (a sensitivity floor) has no tag.

Wording: an unflagged finding is "not flagged at this operating point (sensitivity x)", never "absent":
x is the card's validation sensitivity at that operating point (`sensitivity_at`), the share of
validation films with the finding that the cutoff catches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from cxrviewer.model.card import ModelCard
from cxrviewer.report.findings import NO_FINDING, FindingLike, PredictionLike

#: Half-width of the "near cutoff" band around an operating point, in calibrated logit units (see above).
NEAR_CUTOFF_LOGIT = 0.35

NEAR_CUTOFF = "near cutoff"
FLAGGED = "flagged"
CHECK = "check"
NOT_FLAGGED = "not flagged"
NOT_ASSERTED = "not asserted"

_EPS = 1e-6


class Tier(IntEnum):
    """The groups of the reading order, in order."""

    FLAGGED = 0
    CHECK = 1
    NOT_FLAGGED = 2


def percent(p: float) -> str:
    """A probability as the viewer and every export print it: "<1%", "87%", ">99%" ("n/a" if not a number)."""
    p = float(p)
    if not math.isfinite(p):
        return "n/a"
    whole = math.floor(100 * p + 0.5 + 1e-9)  # half up (f"{:.0f}" rounds 0.5 % to "0%")
    if whole < 1:
        return "<1%"
    if whole > 99:
        return ">99%"
    return f"{whole}%"


def logit(p: float) -> float:
    p = min(max(float(p), _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def margin(finding: FindingLike) -> float:
    """How far the probability is above (> 0) or below (< 0) the label's operating point, in logit units."""
    return logit(finding.probability) - logit(finding.threshold)


def near_cutoff(finding: FindingLike) -> bool:
    """True when the probability lies within `NEAR_CUTOFF_LOGIT` of the operating point (either side)."""
    return abs(margin(finding)) < NEAR_CUTOFF_LOGIT


def is_check(finding: Any) -> bool:
    """Above a triage point but below the finding's cutoff: "check the film", not a finding."""
    return bool(getattr(finding, "triage", False)) and not bool(finding.positive)


def tier(finding: FindingLike) -> Tier:
    if finding.positive:
        return Tier.FLAGGED
    return Tier.CHECK if is_check(finding) else Tier.NOT_FLAGGED


def order_key(finding: FindingLike) -> tuple[int, float]:
    """Sort key of the reading order (ascending): group, then the larger margin first (an undefined margin, from a
    probability that is not a number, last in its group, so every ordering of the same findings agrees)."""
    m = margin(finding)
    return int(tier(finding)), (math.inf if math.isnan(m) else -m)


def reading_order(findings: Sequence[FindingLike]) -> list[FindingLike]:
    """The abnormalities in reading order (see the module docstring); "No Finding" is left out."""
    return sorted((f for f in findings if f.label != NO_FINDING), key=order_key)


def no_finding(findings: Sequence[FindingLike]) -> FindingLike | None:
    return next((f for f in findings if f.label == NO_FINDING), None)


def top_finding(findings: Sequence[FindingLike]) -> FindingLike | None:
    """The first abnormality of the reading order (flagged or not), or None."""
    return min((f for f in findings if f.label != NO_FINDING), key=order_key, default=None)  # first of the order


def top_label(prediction: PredictionLike) -> str | None:
    """The finding whose map a report shows by default: the first of the reading order."""
    top = top_finding(prediction.findings)
    return top.label if top is not None else None


def tags(finding: FindingLike) -> list[str]:
    """Short tags shown beside the probability: "check", "not asserted", "near cutoff"."""
    out = []
    if is_check(finding):
        out.append(CHECK)
    elif getattr(finding, "note", None):
        out.append(NOT_ASSERTED)
    if near_cutoff(finding):
        out.append(NEAR_CUTOFF)
    return out


def status_word(finding: FindingLike) -> str:
    """"flagged", "check", "not asserted" or "not flagged" (at this operating point)."""
    if finding.positive:
        return FLAGGED
    if is_check(finding):
        return CHECK
    return NOT_ASSERTED if getattr(finding, "note", None) else NOT_FLAGGED


def sensitivity_at(card: ModelCard | None, finding: FindingLike) -> float | None:
    """The card's validation sensitivity of the finding's label at the operating point in use, or None
    when the card does not record it (or recorded it at another operating point)."""
    if not isinstance(card, ModelCard):
        return None
    metrics = card.label_metrics(finding.label)
    if metrics is None or metrics.sensitivity is None:
        return None
    if metrics.threshold is not None and abs(metrics.threshold - float(finding.threshold)) > 1e-4:
        return None  # measured at another operating point (e.g. the engine runs the rule-out points)
    return float(metrics.sensitivity)


def result_text(finding: FindingLike, card: ModelCard | None) -> str:
    """What a report says about one label at its operating point, e.g. "not flagged at this operating point
    (sensitivity 0.32)"; "near cutoff" is appended when it applies."""
    word = status_word(finding)
    if word == FLAGGED:
        text = "flagged at this operating point"
    elif word == CHECK:
        text = "check: above the high-sensitivity triage point, not a finding"
    elif word == NOT_ASSERTED:
        text = str(getattr(finding, "note", "") or NOT_ASSERTED)
    else:
        sens = sensitivity_at(card, finding)
        text = ("not flagged at this operating point ("
                + (f"sensitivity {sens:.2f})" if sens is not None else "sensitivity not recorded in the model card)"))
    if near_cutoff(finding):
        text += f"; {NEAR_CUTOFF}"
    return text


def summary_line(findings: Sequence[FindingLike]) -> str:
    """The panel's and the reports' first line: how many findings are flagged (and to check), and what the
    model says of "No Finding", e.g. "No finding flagged · No Finding 40% (below its 58% cutoff)"."""
    if not findings:
        return ""
    abnormal = [f for f in findings if f.label != NO_FINDING]
    flagged = sum(1 for f in abnormal if f.positive)
    checks = sum(1 for f in abnormal if is_check(f))
    head = "No finding flagged" if not flagged else f"{flagged} finding{'s' if flagged != 1 else ''} flagged"
    if checks:
        head += f", {checks} to check"
    normal = no_finding(findings)
    if normal is None:
        return head
    cutoff = percent(normal.threshold)
    note = getattr(normal, "note", None)
    if normal.positive:
        detail = f"at or above its {cutoff} cutoff"
    elif note:
        detail = str(note)
    else:
        detail = f"below its {cutoff} cutoff"
    if near_cutoff(normal):
        detail += f", {NEAR_CUTOFF}"
    return f"{head} · {NO_FINDING} {percent(normal.probability)} ({detail})"
