"""Site operating points: per-label thresholds refitted to one hospital's films, tied to one model.

A model's operating points come from its validation films (the card: one specificity, 0.865, for every
label). A new hospital's detectors, processing and devices move the probabilities of every film: edge
enhancement raises Pneumothorax by a median +0.11 on the same films, ICU devices take flags per normal film
from 0.05 to 1.90 (models/README.md, "Site-shift battery"). A per-label threshold cannot change what the model
ranks above what (AUROC is unchanged), but it can restore the flag rates the card promises. Two fits:

* **Reader feedback** (`fit_feedback`, preferred): the reader's agree / disagree verdicts on the first N
  films (`cxrviewer.model.feedback`) say which labels each film has. Each label's site threshold is the one at
  which this site's films *without* the finding are flagged as often as the card's validation negatives were
  (1 - the card's specificity): the card's own policy re-applied on this site's films. It needs no
  assumption about how common a finding is here, so a sicker ward keeps its true flags.
* **Unlabelled batch** (`fit_unlabelled`, quantile matching): each label's site threshold is the
  (1 - r) quantile of the site's probabilities, where r = π·sens + (1 - π)·(1 - spec) is the share of
  validation films the card's operating point flagged (prevalence π, sensitivity and specificity as the card
  records them). Right when every film moves (processing, devices); it assumes the site's case mix resembles
  validation's, so at a site with far more (or less) disease it removes true flags (or adds false ones).

Both estimates are quantiles of a few films, so they are shrunk toward the card: in logit units
``logit(t) = logit(t_card) + w (logit(t_site) - logit(t_card))`` with ``w = n / (n + n0)``, n the films that
informed the estimate (for feedback: that label's negatives), n0 = `SHRINK_FILMS` = 5 (the card's point counts
as 5 films of this site). n0 = 5 gave the smallest error of the held-out flag rate (unlabelled) and false-positive
rate (feedback) against the card's at N = 20, 50 and 100 among n0 = 0, 5, 10, 20, 40 on the simulated sites of
`tests/bench/site_calibration.py` (at N = 20: RMSE 0.068 / 0.088 against 0.088 / 0.118 unshrunk and 0.088 / 0.106
at n0 = 20); larger n0 keeps too much of a real shift (edge enhancement moves Pneumothorax by ~1 logit). A label
with fewer than `MIN_FILMS` informative films, or whose card lacks the metrics, keeps the card's point and the
profile says so.

A profile is tied to one model (weights SHA-256 and card SHA-256) and refused for any other; it is stored per
site as JSON under ``$XDG_DATA_HOME/cxrviewer/sites/NAME.json`` (written atomically), can be deleted, and the
viewer's active one is named in ``sites/active.json`` (removing that file reverts to the card). Applying one
(`apply`) changes the engine's thresholds and remembers the profile, so every output can say which operating
points it used (`operating_points_entry`, `describe`).

Both fits are two-sided: they restore the card's rates, so where the model is *more* specific at a site than on
validation they lower points and add flags. Only the default operating points are refitted: the triage ("check")
points and the high-sensitivity points stay the card's, and a profile cannot be combined with the latter.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cxrviewer.fileio import atomic_write_text, remove_quietly
from cxrviewer.model.card import ModelCard
from cxrviewer.model.feedback import FeedbackRecord

PROFILE_FORMAT = "cxrviewer-site-profile/1"
METHOD_FEEDBACK = "feedback"
METHOD_UNLABELLED = "unlabelled"
METHODS = (METHOD_FEEDBACK, METHOD_UNLABELLED)
#: The card's operating point counts as this many films of the site (shrinkage, see the module docstring).
SHRINK_FILMS = 5.0
#: Fewer informative films than this for a label: the card's point is kept.
MIN_FILMS = 10
#: The words every output uses for the card's own operating points.
CARD_POINTS = "model card"
ACTIVE_FILE = "active.json"
_ENGINE_ATTR = "site_profile"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
_EPS = 1e-4


class SiteError(ValueError):
    """A site profile that cannot be fitted, read or used here; the message says which and why."""


def data_dir() -> Path:
    """The user's data folder: $XDG_DATA_HOME/cxrviewer (default ~/.local/share/cxrviewer)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cxrviewer"


def sites_dir() -> Path:
    return data_dir() / "sites"


def feedback_log() -> Path:
    """Where the viewer keeps the reader's feedback (`cxrviewer.model.feedback`)."""
    return data_dir() / "feedback.jsonl"


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.match(name) or name.endswith(".json") or name == Path(ACTIVE_FILE).stem:
        raise SiteError(f"site name {name!r} is not usable: 1-64 letters, digits, spaces, '.', '_' or '-', "
                        "starting with a letter or digit")
    return name


def _logit(p: float | np.ndarray) -> Any:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + math.exp(-z)))


# --- the profile -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelFit:
    """How one label's site threshold was chosen.

    ``target``: the rate matched (unlabelled: share of films flagged; feedback: share of negatives flagged);
    ``rate_at_card`` / ``rate_at_site``: that rate on the fitting films at the card's / the site's point;
    ``estimate``: the unshrunk quantile (None: too few films or no card metrics, the card's point kept);
    ``weight``: how far the threshold moved from the card's toward the estimate (logit units, 0..1)."""

    threshold: float
    card_threshold: float
    films: int
    target: float | None = None
    estimate: float | None = None
    weight: float = 0.0
    rate_at_card: float | None = None
    rate_at_site: float | None = None
    positives: int | None = None  # feedback: films with the finding
    note: str = ""

    def __post_init__(self) -> None:  # stored to 6 decimals: what is used is what is written
        for key, value in self.__dict__.items():
            if isinstance(value, float):
                object.__setattr__(self, key, round(value, 6))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = round(value, 6) if isinstance(value, float) else value
        return out

    @classmethod
    def from_json(cls, doc: Any, what: str) -> LabelFit:
        if not isinstance(doc, dict):
            raise SiteError(f"{what} must be a JSON object")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(doc) - known)
        if unknown:
            raise SiteError(f"{what} has unknown keys {', '.join(unknown)}")
        for key in ("threshold", "card_threshold"):
            value = doc.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
                raise SiteError(f"{what}: {key} must be a probability strictly between 0 and 1")
        if isinstance(doc.get("films"), bool) or not isinstance(doc.get("films"), int) or doc["films"] < 0:
            raise SiteError(f"{what}: films must be a count")
        return cls(**doc)


@dataclass(frozen=True)
class SiteProfile:
    """Per-label operating points fitted at one site for one model (see the module docstring)."""

    name: str
    model: str
    model_sha256: str
    card_sha256: str
    method: str  # METHOD_FEEDBACK or METHOD_UNLABELLED
    films: int  # films the fit used
    source: str  # what it was fitted from, in words (no paths)
    labels: Mapping[str, LabelFit]
    shrink_films: float = SHRINK_FILMS
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def thresholds(self) -> dict[str, float]:
        return {lab: fit.threshold for lab, fit in self.labels.items()}

    @property
    def fitted_from(self) -> str:
        kind = "the reader's feedback on" if self.method == METHOD_FEEDBACK else "an unlabelled batch of"
        return f"{kind} {self.films} film{'s' if self.films != 1 else ''}" + (f" ({self.source})" if self.source
                                                                               else "")

    def describe(self) -> str:
        """One line every output can show, e.g. site operating points 'ICU' (fitted 2025-01-02 from ...)."""
        return f"site operating points '{self.name}' (fitted {self.created[:10]} from {self.fitted_from})"

    def check_model(self, engine: Any) -> None:
        """SiteError unless the profile was fitted for this engine's weights, card and labels."""
        if self.model_sha256 != str(engine.sha256) or self.card_sha256 != str(engine.card_sha256):
            raise SiteError(
                f"site profile '{self.name}' was fitted for another model ({self.model}, weights SHA-256 "
                f"{self.model_sha256[:12]}..., card {self.card_sha256[:12]}...), not for the loaded {engine.name} "
                f"(weights {str(engine.sha256)[:12]}..., card {str(engine.card_sha256)[:12]}...); its operating "
                "points would not mean the same thing. Fit a new profile for this model.")
        if set(self.labels) != set(engine.labels):
            raise SiteError(f"site profile '{self.name}' does not give one operating point per label of "
                            f"{engine.name}")

    def to_json(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "name": self.name, "created": self.created, "method": self.method,
                "films": self.films, "source": self.source, "shrink_films": self.shrink_films,
                "model": {"name": self.model, "sha256": self.model_sha256, "card_sha256": self.card_sha256},
                "thresholds": {lab: round(t, 6) for lab, t in self.thresholds.items()},
                "labels": {lab: fit.to_json() for lab, fit in self.labels.items()}}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, doc: Any, where: str = "site profile") -> SiteProfile:
        if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
            raise SiteError(f"{where}: not a cxrviewer site profile (format {PROFILE_FORMAT!r} expected)")
        model = doc.get("model")
        if not isinstance(model, dict) or not all(isinstance(model.get(k), str) for k in ("name", "sha256",
                                                                                             "card_sha256")):
            raise SiteError(f"{where}: 'model' must name the model, its weights and card SHA-256")
        if doc.get("method") not in METHODS:
            raise SiteError(f"{where}: method must be one of {', '.join(METHODS)}")
        labels = doc.get("labels")
        if not isinstance(labels, dict) or not labels:
            raise SiteError(f"{where}: 'labels' must give each label's fit")
        fits = {str(k): LabelFit.from_json(v, f"{where}: label {k!r}") for k, v in labels.items()}
        listed = doc.get("thresholds")

        def same(label: str, value: Any) -> bool:
            number = isinstance(value, int | float) and not isinstance(value, bool)
            return number and label in fits and abs(float(value) - fits[label].threshold) <= 1e-5

        if not isinstance(listed, dict) or set(listed) != set(fits) or not all(same(k, v) for k, v in listed.items()):
            raise SiteError(f"{where}: 'thresholds' do not match the labels' fits (edited by hand?)")
        try:
            name = check_name(str(doc.get("name", "")))
            films = doc.get("films")
            if isinstance(films, bool) or not isinstance(films, int) or films < 0:
                raise SiteError("films must be a count")
            shrink = doc.get("shrink_films", SHRINK_FILMS)
            if isinstance(shrink, bool) or not isinstance(shrink, int | float) or shrink < 0:
                raise SiteError("shrink_films must be a number >= 0")
            return cls(name, model["name"], model["sha256"], model["card_sha256"], doc["method"], films,
                       str(doc.get("source", "")), fits, float(shrink), str(doc.get("created", "")))
        except SiteError as exc:
            raise SiteError(f"{where}: {exc}") from None


# --- what the card promises ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CardTarget:
    """A label's validation rates at the card's operating point."""

    threshold: float
    flag_rate: float | None  # share of validation films flagged: prevalence*sens + (1-prevalence)*(1-spec)
    false_positive_rate: float | None  # 1 - specificity


def card_targets(card: ModelCard, thresholds: Mapping[str, float] | None = None) -> dict[str, CardTarget]:
    """Each label's card operating point and the rates it gave on validation (None where not recorded, or
    recorded at another operating point)."""
    out = {}
    for label in card.labels:
        thr = float((thresholds or card.thresholds)[label])
        m = card.label_metrics(label)
        flag = fpr = None
        same_point = m is not None and (m.threshold is None or abs(m.threshold - thr) < 1e-4)
        if m is not None and same_point and m.specificity is not None:
            fpr = 1.0 - m.specificity
            if m.sensitivity is not None and m.n_pos and m.n_neg:
                flag = (m.n_pos * m.sensitivity + m.n_neg * fpr) / (m.n_pos + m.n_neg)
        out[label] = CardTarget(thr, flag, fpr)
    return out


def _fit_label(card_t: float, values: np.ndarray, target: float | None, shrink: float, what: str) -> LabelFit:
    """Threshold at which a share `target` of `values` (probabilities) is at or above it, shrunk to the card."""
    n = int(values.size)
    at_card = float((values >= card_t).mean()) if n else None
    if target is None:
        return LabelFit(card_t, card_t, n, None, None, 0.0, at_card, at_card,
                        note="card point kept: the card does not record this label's validation rates")
    if n < MIN_FILMS:
        return LabelFit(card_t, card_t, n, target, None, 0.0, at_card, at_card,
                        note=f"card point kept: {n} {what} (fewer than {MIN_FILMS})")
    z = _logit(values)
    estimate = float(np.quantile(z, 1.0 - target))
    weight = n / (n + shrink) if shrink > 0 else 1.0
    t = _sigmoid(float(_logit(card_t)) + weight * (estimate - float(_logit(card_t))))
    t = min(max(t, _EPS), 1.0 - _EPS)
    return LabelFit(t, card_t, n, target, _sigmoid(estimate), weight, at_card, float((values >= t).mean()))


def _identity(engine: Any) -> tuple[str, str, str, ModelCard, dict[str, float]]:
    card = engine.card
    if not isinstance(card, ModelCard):
        raise SiteError("the model has no card to fit site operating points against")
    if getattr(engine, "operating_point", "default") != "default":
        raise SiteError("site operating points replace the model's default operating points; fit them with the "
                        "default operating point")
    return str(engine.name), str(engine.sha256), str(engine.card_sha256), card, dict(card.thresholds)


def fit_unlabelled(name: str, engine: Any, probabilities: np.ndarray, source: str = "",
                   shrink_films: float = SHRINK_FILMS) -> SiteProfile:
    """A profile from the site's films without labels: `probabilities` (films, labels in `engine.labels`
    order), calibrated as the engine gives them. Quantile matching of each label's flag rate."""
    model, sha, card_sha, card, card_thr = _identity(engine)
    name = check_name(name)
    probs = np.asarray(probabilities, dtype=np.float64)
    labels = list(engine.labels)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise SiteError(f"expected probabilities of shape (films, {len(labels)})")
    probs = probs[np.isfinite(probs).all(axis=1)]
    if len(probs) < MIN_FILMS:
        raise SiteError(f"{len(probs)} usable films: at least {MIN_FILMS} are needed to fit site operating points")
    targets = card_targets(card, card_thr)
    fits = {lab: _fit_label(card_thr[lab], probs[:, j], targets[lab].flag_rate, shrink_films, "films")
            for j, lab in enumerate(labels)}
    return SiteProfile(name, model, sha, card_sha, METHOD_UNLABELLED, len(probs), source, fits, shrink_films)


def fit_feedback(name: str, engine: Any, records: Sequence[FeedbackRecord], first: int | None = None,
                 source: str = "", shrink_films: float = SHRINK_FILMS) -> SiteProfile:
    """A profile from the reader's verdicts (`cxrviewer.model.feedback`) on this model's films, the `first`
    ones (oldest first; None: all). Each label's threshold matches the card's false-positive rate on the
    films the reader says do not have the finding."""
    model, sha, card_sha, card, card_thr = _identity(engine)
    name = check_name(name)
    mine = sorted((r for r in records if r.for_model(sha, card_sha)), key=lambda r: r.time)
    if not mine:
        others = len(records)
        raise SiteError("no feedback was recorded with this model" + (
            f" ({others} record{' is' if others == 1 else 's are'} for other models or model cards)" if others else ""))
    if first is not None:
        mine = mine[: max(0, int(first))]
    targets = card_targets(card, card_thr)
    fits: dict[str, LabelFit] = {}
    for lab in engine.labels:
        truth = [(r.labels[lab].probability, r.truth(lab)) for r in mine if lab in r.labels]
        negatives = np.array([p for p, t in truth if t is False], dtype=np.float64)
        positives = sum(1 for _, t in truth if t is True)
        fit = _fit_label(card_thr[lab], negatives, targets[lab].false_positive_rate, shrink_films,
                         "films without the finding")
        fits[lab] = LabelFit(**{**fit.__dict__, "positives": positives})
    skipped = len(records) - len([r for r in records if r.for_model(sha, card_sha)])
    note = source or ""
    if skipped:
        note = (note + "; " if note else "") + f"{skipped} record(s) of other models ignored"
    return SiteProfile(name, model, sha, card_sha, METHOD_FEEDBACK, len(mine), note, fits, shrink_films)


# --- storage -----------------------------------------------------------------------------------------------


def profile_path(name: str, folder: Path | None = None) -> Path:
    return (folder or sites_dir()) / f"{check_name(name)}.json"


def save(profile: SiteProfile, folder: Path | None = None) -> Path:
    """Write the profile atomically under the sites folder (replacing one of the same name)."""
    path = profile_path(profile.name, folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, profile.dumps())
    except OSError as exc:
        raise SiteError(f"cannot write the site profile {path}: {exc.strerror or exc}") from None


def read(path: str | Path) -> SiteProfile:
    """Read a profile file (SiteError naming the file when it is missing or malformed)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiteError(f"{path}: site profile not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SiteError(f"{path}: site profile is not readable JSON ({exc})") from None
    return SiteProfile.from_json(doc, str(path))


def load(name: str, folder: Path | None = None) -> SiteProfile:
    """The stored profile of that name (SiteError listing the stored ones when there is none)."""
    path = profile_path(name, folder)
    if not path.is_file():
        known = ", ".join(p.name for p in list_profiles(folder)) or "none"
        raise SiteError(f"no site profile named '{name}' in {path.parent} (stored: {known})")
    return read(path)


def list_profiles(folder: Path | None = None) -> list[SiteProfile]:
    """Readable stored profiles, by name (unreadable files are left out)."""
    out = []
    for path in sorted((folder or sites_dir()).glob("*.json")):
        if path.name == ACTIVE_FILE:
            continue
        try:
            out.append(read(path))
        except SiteError:
            continue
    return out


def delete(name: str, folder: Path | None = None) -> bool:
    """Remove a stored profile (and its activation); False when there was none."""
    path = profile_path(name, folder)
    existed = path.is_file()
    try:
        remove_quietly(path)
        if active_name(folder) == name:
            set_active(None, folder)
    except OSError as exc:
        raise SiteError(f"cannot delete the site profile {path}: {exc.strerror or exc}") from None
    return existed


def active_name(folder: Path | None = None) -> str | None:
    """The profile the viewer uses (None: the card's operating points)."""
    try:
        doc = json.loads(((folder or sites_dir()) / ACTIVE_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) and name else None


def set_active(name: str | None, folder: Path | None = None) -> None:
    """Make a stored profile the viewer's (None: back to the card's operating points)."""
    path = (folder or sites_dir()) / ACTIVE_FILE
    try:
        if name is None:
            remove_quietly(path)
            return
        check_name(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"name": name}) + "\n")
    except OSError as exc:
        raise SiteError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- use ---------------------------------------------------------------------------------------------------


def apply(engine: Any, profile: SiteProfile | None) -> None:
    """Use the profile's operating points in `engine` (None: back to the card's). SiteError for a profile of
    another model, or with an operating point other than the default."""
    if profile is None:
        if getattr(engine, _ENGINE_ATTR, None) is not None:
            engine.thresholds = {lab: float(engine.card.thresholds[lab]) for lab in engine.labels}
        setattr(engine, _ENGINE_ATTR, None)
        return
    profile.check_model(engine)
    if getattr(engine, "operating_point", "default") != "default":
        raise SiteError("a site profile replaces the default operating points; it cannot be combined with the "
                        f"{engine.operating_point} operating point")
    engine.thresholds = {lab: float(profile.labels[lab].threshold) for lab in engine.labels}
    setattr(engine, _ENGINE_ATTR, profile)


def applied(engine: Any) -> SiteProfile | None:
    """The site profile the engine uses (None: the card's operating points)."""
    profile = getattr(engine, _ENGINE_ATTR, None)
    return profile if isinstance(profile, SiteProfile) else None


def describe(engine: Any) -> str:
    """Which operating points the engine uses, in words."""
    profile = applied(engine)
    if profile is not None:
        return profile.describe()
    point = getattr(engine, "operating_point", "default")
    return f"the {CARD_POINTS}'s operating points" + ("" if point == "default" else f" ({point.replace('_', '-')})")


def operating_points_entry(engine: Any) -> dict[str, Any]:
    """The JSON contract's ``operating_points``: their source ("model card" or "site profile"), the profile's
    name, method, films and date where one is used, and the thresholds."""
    thresholds = {lab: round(float(t), 6) for lab, t in dict(getattr(engine, "thresholds", {}) or {}).items()}
    profile = applied(engine)
    if profile is None:
        return {"source": CARD_POINTS, "operating_point": str(getattr(engine, "operating_point", "default")),
                "thresholds": thresholds}
    return {"source": "site profile", "name": profile.name, "method": profile.method,
            "fitted_from": profile.fitted_from, "fitted": profile.created, "films": profile.films,
            "card_thresholds": {lab: round(f.card_threshold, 6) for lab, f in profile.labels.items()},
            "thresholds": thresholds, "description": profile.describe()}


def rethreshold(prediction: Any, engine: Any) -> None:
    """Re-decide an analysed film's findings at the engine's current operating points (after a profile was
    applied or reverted), as `Engine.predict` would have: positive, triage, No Finding's note, map peaks."""
    from cxrviewer.model.cam import cam_peak
    from cxrviewer.model.inference import consistent_findings

    findings = list(getattr(prediction, "findings", None) or [])
    if not findings:
        return
    triage = dict(getattr(engine, "triage", {}) or {})
    labels = list(getattr(prediction, "labels", []) or [])
    cams = getattr(prediction, "cams_logit", None)
    for f in findings:
        thr = float(engine.thresholds.get(f.label, f.threshold))
        f.threshold, f.positive, f.note = thr, f.probability >= thr, None
        f.triage = not f.positive and f.label in triage and f.probability >= triage[f.label]
        shown = f.positive or f.triage
        if not shown:
            f.cam_peak = None
        elif f.cam_peak is None and cams is not None and f.label in labels and len(cams) == len(labels):
            f.cam_peak = cam_peak(cams[labels.index(f.label)], prediction.letterbox)
    consistent_findings(findings)
    if hasattr(prediction, "_cache"):
        prediction._cache.clear()
