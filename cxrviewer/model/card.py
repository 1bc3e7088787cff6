"""The model card: a typed, immutable view of a bundle's JSON card, parsed and validated once at load.

On disk the card stays the JSON object it has always been (``"format": "cxrviewer-model-card/1"``);
`ModelCard.from_json` turns it into dataclasses and refuses, with a sentence naming the problem, any card
this version cannot honour (missing or unknown keys, wrong types, unknown labels or architecture,
thresholds that are not one probability per label, weights outside the card's folder). `ModelCard.to_json`
writes it back. The trainer seals every card it writes (``"seal"``: the SHA-256 of the card's canonical
content, `canonical_card_json`); `ModelCard.card_status` says whether the content still matches it.

Adding a field: declare it on the dataclass with `_field(parser, default)`; the parser turns the JSON value
into the field's type (raising `CardError` with a readable sentence) and `to_json` writes it back under
the field's name. A field with a default is optional; one without is required. Unknown keys are refused at
every typed level, so a card written for a newer version is never half-understood. Records that belong to
another module (the feature gate's statistics, the trainer's provenance, the cross-validation and
pointing-game summaries) are kept as read-only JSON objects; their owners parse them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Self, TypeVar

from cxrviewer.labels import KNOWN_LABELS

CARD_FORMAT = "cxrviewer-model-card/1"

#: How a card's seal is computed (`canonical_card_json`, then SHA-256).
SEAL_METHOD = "sha256-canonical-json/1"
#: `ModelCard.card_status`: the content matches the seal the trainer wrote, or it does not (or has none).
CARD_SEALED = "sealed"
CARD_MODIFIED = "modified"
#: The words every output uses for a card whose content does not match its seal.
MODIFIED_CARD = "modified model card"
#: How a user may load such a card anyway (named in the refusal).
ALLOW_MODIFIED_FLAG = "--allow-modified-card"

#: A JSON value as `json.loads` returns it.
JSON = Any

T = TypeVar("T")
R = TypeVar("R", bound="_Record")


class ModelError(Exception):
    """A model bundle cannot be used; the message says which file and why."""


class CardError(ModelError):
    """A card that does not parse; the message names the problem (`ModelCard.from_json` adds the file)."""


# --- value parsers (JSON value, its name in messages) -> typed value ------------------------------------------


def _str(value: JSON, what: str) -> str:
    if not isinstance(value, str):
        raise CardError(f"{what} must be a string")
    return value


def _int(value: JSON, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CardError(f"{what} must be an integer")
    return value


def _float(value: JSON, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CardError(f"{what} must be a number")
    return float(value)


def _opt(parse: Callable[[JSON, str], T]) -> Callable[[JSON, str], T | None]:
    """A parser that also accepts JSON null (a metric that could not be computed)."""

    def parse_optional(value: JSON, what: str) -> T | None:
        return None if value is None else parse(value, what)

    return parse_optional


def _str_tuple(value: JSON, what: str) -> tuple[str, ...]:
    if isinstance(value, str):  # a single sentence where a list is expected
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CardError(f"{what} must be a list of strings")
    return tuple(value)


def _probabilities(value: JSON, what: str) -> Mapping[str, float]:
    if not isinstance(value, dict):
        raise CardError(f"{what} must give one operating point per label")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in value.values()):
        raise CardError(f"{what} must be probabilities in [0, 1]")
    return MappingProxyType({str(k): float(v) for k, v in value.items()})


def _json_object(value: JSON, what: str) -> Mapping[str, JSON]:
    if not isinstance(value, dict):
        raise CardError(f"{what} must be a JSON object")
    return MappingProxyType(value)


def _json(value: JSON, what: str) -> JSON:
    return value


def _record(cls: type[R]) -> Callable[[JSON, str], R]:
    def parse_record(value: JSON, what: str) -> R:
        return cls.from_json(value, what)

    return parse_record


def _record_map(parse: Callable[[JSON, str], T]) -> Callable[[JSON, str], Mapping[str, T]]:
    def parse_map(value: JSON, what: str) -> Mapping[str, T]:
        if not isinstance(value, dict):
            raise CardError(f"{what} must be a JSON object")
        return MappingProxyType({str(k): parse(v, f"{what} {k!r}") for k, v in value.items()})

    return parse_map


def _field(parse: Callable[[JSON, str], Any], default: Any = dataclasses.MISSING) -> Any:
    """A card field: `parse` reads its JSON value; without a default the key is required."""
    metadata = {"parse": parse}
    if isinstance(default, Mapping):
        return field(default_factory=lambda: MappingProxyType(dict(default)), metadata=metadata)
    return field(default=default, metadata=metadata)


# --- records -----------------------------------------------------------------------------------------------


def _to_json(value: Any) -> JSON:
    if isinstance(value, _Record):
        return value.to_json()
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class _Record:
    """Base of the card's dataclasses: generic, strict JSON parsing and writing.

    Writing gives back what was read: an optional entry that was absent stays absent and one that was null
    stays null (`_present` remembers which keys the JSON had), so adding a field never changes how an older
    card is written.
    """

    _present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @classmethod
    def from_json(cls, doc: JSON, what: str) -> Self:
        if not isinstance(doc, dict):
            raise CardError(f"{what} must be a JSON object")
        fields = _card_fields(cls)
        missing = [name for name, f in fields.items() if name not in doc and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise CardError(f"{what} lacks {', '.join(sorted(missing))}")
        unknown = [str(k) for k in doc if k not in fields]
        if unknown:
            raise CardError(f"{what} has unknown keys {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {"_present": frozenset(str(k) for k in doc)}
        for key, value in doc.items():
            if value is None and _optional(fields[key]):
                continue  # null where an optional entry may be absent
            values[key] = fields[key].metadata["parse"](value, key if what == "model card" else f"{what} {key}")
        return cls(**values)

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        for f in _card_fields(type(self)).values():
            value = getattr(self, f.name)
            empty = value is None or (_optional(f) and isinstance(value, tuple | Mapping) and not value)
            if empty and f.name not in self._present:
                continue  # an optional entry the card did not have
            out[f.name] = _to_json(value)
        return out


def _card_fields(cls: type[_Record]) -> dict[str, dataclasses.Field[Any]]:
    """The fields that are card entries (not `_present`), by name, in declaration order."""
    return {f.name: f for f in dataclasses.fields(cls) if "parse" in f.metadata}


def _optional(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


@dataclass(frozen=True, kw_only=True)
class WeightsRef(_Record):
    """The safetensors file beside the card and its SHA-256 (checked before every load)."""

    file: str = _field(_str)
    sha256: str = _field(_str)
    dtype: str | None = _field(_str, None)

    def __post_init__(self) -> None:
        if Path(self.file).name != self.file or self.file in ("", ".", ".."):
            raise CardError("the weights file must sit beside the card (no directories)")


@dataclass(frozen=True, kw_only=True)
class OnnxRef(_Record):
    """The network exported to ONNX beside the card (``cxrviewer-train export-onnx``) and its SHA-256, checked
    before ONNX Runtime reads it (`cxrviewer.model.runners`).

    Its graph: input ``image`` (1, 1, N, N), the normalised letterbox; outputs ``logits`` (1, L: the mean over the
    card's test-time views), ``cams`` (1, L, h, w: every label's map in logit units, identity view) and ``pooled``
    (1, C: the feature gate's vector). ``parity`` records what the exporter measured against torch."""

    file: str = _field(_str)
    sha256: str = _field(_str)
    opset: int | None = _field(_int, None)
    exported_with: str | None = _field(_str, None)
    parity: Mapping[str, JSON] | None = _field(_json_object, None)

    def __post_init__(self) -> None:
        if Path(self.file).name != self.file or self.file in ("", ".", ".."):
            raise CardError("the ONNX file must sit beside the card (no directories)")


@dataclass(frozen=True, kw_only=True)
class Preprocessing(_Record):
    """How the model input was made; `cxrviewer.model.inference` refuses values it does not implement."""

    method: str | None = _field(_str, None)
    size: int | None = _field(_int, None)
    pad_value: float | None = _field(_float, None)
    mean: float | None = _field(_float, None)
    std: float | None = _field(_float, None)
    channels: int | None = _field(_int, None)
    input: str | None = _field(_str, None)
    crop: str | None = _field(_str, None)  # None: the whole image; "thorax": the lung-field localiser's box
    harmonise: Mapping[str, JSON] | None = _field(_json_object, None)  # `cxrviewer.model.harmonise` record


@dataclass(frozen=True, kw_only=True)
class CamInfo(_Record):
    """How the class-activation maps are computed and shown."""

    method: str | None = _field(_str, None)
    units: str | None = _field(_str, None)
    display: str | None = _field(_str, None)
    smoothing_cells: float | None = _field(_float, None)  # Gaussian sigma on the map grid (model/cam.smooth_cams)


@dataclass(frozen=True, kw_only=True)
class DatasetInfo(_Record):
    """A training data set, its licence and the attribution its licence asks for."""

    name: str = _field(_str)
    license: str = _field(_str, "")
    attribution: str = _field(_str, "")

    @property
    def title(self) -> str:
        """"name (licence)", or the name alone."""
        return f"{self.name} ({self.license})" if self.license else self.name


def _dataset(value: JSON, what: str) -> DatasetInfo:
    return DatasetInfo(name=value) if isinstance(value, str) else DatasetInfo.from_json(value, what)


def _datasets(value: JSON, what: str) -> tuple[DatasetInfo, ...]:
    if not isinstance(value, list):
        raise CardError(f"{what} must be a list")
    return tuple(_dataset(v, f"{what}[{i}]") for i, v in enumerate(value))


@dataclass(frozen=True, kw_only=True)
class LabelMetrics(_Record):
    """One label's validation metrics at its operating point (None where a metric could not be computed)."""

    n_pos: int | None = _field(_opt(_int), None)
    n_neg: int | None = _field(_opt(_int), None)
    auroc: float | None = _field(_opt(_float), None)
    auprc: float | None = _field(_opt(_float), None)
    threshold: float | None = _field(_opt(_float), None)
    sensitivity: float | None = _field(_opt(_float), None)
    specificity: float | None = _field(_opt(_float), None)
    misclassification: float | None = _field(_opt(_float), None)
    ece: float | None = _field(_opt(_float), None)
    #: Expected calibration error of the network's own probabilities, before the card's calibration.
    ece_uncalibrated: float | None = _field(_opt(_float), None)


@dataclass(frozen=True, kw_only=True)
class Calibration(_Record):
    """Per-label Platt scaling of the network's logit: p = sigmoid(scale * logit + bias)."""

    scale: float = _field(_float)
    bias: float = _field(_float)
    method: str = _field(_str, "platt")

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise CardError("a calibration scale must be positive (it keeps the ranking of images)")


_label_metrics = _record_map(_record(LabelMetrics))


@dataclass(frozen=True, kw_only=True)
class Validation(_Record):
    """Validation results: per-label metrics on the primary data set, per data set, and summaries."""

    per_label_dataset: str | None = _field(_str, None)
    per_label: Mapping[str, LabelMetrics] = _field(_label_metrics, {})
    per_dataset: Mapping[str, Mapping[str, LabelMetrics]] = _field(_record_map(_label_metrics), {})
    split: str | None = _field(_str, None)
    note: str | None = _field(_str, None)
    #: The pointing game of `cxrviewer.train.boxes` (JSON object, read by its writer's README generator).
    pointing_game: Mapping[str, JSON] | None = _field(_json_object, None)
    #: Cross-validation summary of `cxrviewer-train cv` (JSON object); see `auroc_fold_std`.
    cross_validation: Mapping[str, JSON] | None = _field(_json_object, None)

    def auroc_fold_std(self, label: str) -> float | None:
        """Standard deviation of the label's AUROC across cross-validation folds, when recorded."""
        per_label = (self.cross_validation or {}).get("per_label")
        entry = per_label.get(label) if isinstance(per_label, Mapping) else None
        auroc = entry.get("auroc") if isinstance(entry, Mapping) else None
        std = auroc.get("std") if isinstance(auroc, Mapping) else None
        return float(std) if isinstance(std, int | float) and not isinstance(std, bool) else None


@dataclass(frozen=True, kw_only=True)
class CardSeal(_Record):
    """The SHA-256 of the card's canonical content as the trainer wrote it (`ModelCard.sealed`)."""

    sha256: str = _field(_str)
    method: str = _field(_str)


def canonical_card_json(doc: Mapping[str, JSON]) -> str:
    """The text a card's seal hashes: its JSON object without ``seal``, keys sorted, no whitespace, ASCII.

    Indentation and key order of the file do not change it; any changed value does."""
    content = {k: v for k, v in doc.items() if k != "seal"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True, kw_only=True)
class ModelCard(_Record):
    """A validated model card. Build it with `from_json` (or the constructor, which validates too).

    ``seal`` holds the SHA-256 of the card's canonical content, written by `cxrviewer.model.weights.save_bundle`;
    `card_status` says whether the content still matches it (`cxrviewer.model.weights.load_bundle` refuses a
    card that does not unless asked to load it anyway)."""

    name: str = _field(_str)
    version: str = _field(_str)
    description: str | None = _field(_str, None)
    architecture: str = _field(_str)
    input_size: int = _field(_int)
    preprocessing: Preprocessing = _field(_record(Preprocessing))
    labels: tuple[str, ...] = _field(_str_tuple)
    thresholds: Mapping[str, float] = _field(_probabilities)
    high_sensitivity_thresholds: Mapping[str, float] | None = _field(_probabilities, None)
    #: Labels flagged for triage (a high-sensitivity point shown as "check", never as a finding).
    triage_thresholds: Mapping[str, float] | None = _field(_probabilities, None)
    #: Probabilities and thresholds are calibrated with these (labels absent: the network's own sigmoid).
    calibration: Mapping[str, Calibration] | None = _field(_record_map(_record(Calibration)), None)
    #: How the operating points were chosen and what they cost on validation films (JSON, read by people).
    operating_policy: Mapping[str, JSON] | None = _field(_json_object, None)
    #: Test-time augmentation views (`cxrviewer.model.tta.VIEWS`) whose logits are averaged.
    tta: tuple[str, ...] = _field(_str_tuple, ())
    validation: Validation | None = _field(_record(Validation), None)
    cam: CamInfo | None = _field(_record(CamInfo), None)
    datasets: tuple[DatasetInfo, ...] = _field(_datasets, ())
    not_covered: tuple[str, ...] = _field(_str_tuple, ())
    intended_use: str | None = _field(_str, None)
    limitations: tuple[str, ...] = _field(_str_tuple, ())
    created: str | None = _field(_str, None)
    trainer_version: str | None = _field(_str, None)
    #: The trainer's provenance record (command, configuration, selection text): JSON, read by people.
    training: Mapping[str, JSON] | None = _field(_json_object, None)
    #: The feature gate's statistics, parsed by `cxrviewer.model.gate.FeatureGate.from_record`.
    gate: Mapping[str, JSON] | None = _field(_json_object, None)
    ensemble_of: JSON = _field(_json, None)
    weights: WeightsRef = _field(_record(WeightsRef))
    #: The same network exported to ONNX (optional; absent: torch runs it).
    onnx: OnnxRef | None = _field(_record(OnnxRef), None)
    #: SHA-256 of the canonical content when the trainer wrote the card (absent in cards older than the seal).
    seal: CardSeal | None = _field(_record(CardSeal), None)

    format: ClassVar[str] = CARD_FORMAT

    def __post_init__(self) -> None:
        from cxrviewer.model.architectures import is_known_architecture

        if not is_known_architecture(self.architecture):
            raise CardError(f"unknown architecture {self.architecture!r}")
        labels = self.labels
        if not labels or len(set(labels)) != len(labels):
            raise CardError("labels must be a non-empty list without repeats")
        bad = [lab for lab in labels if lab not in KNOWN_LABELS]
        if bad:
            raise CardError(f"unknown labels {', '.join(bad)}")
        if set(self.thresholds) != set(labels):
            raise CardError("thresholds must give one operating point per label")
        if not 32 <= self.input_size <= 2048:
            raise CardError("input_size must be an integer between 32 and 2048")
        for name, mapping in (("triage_thresholds", self.triage_thresholds), ("calibration", self.calibration)):
            stray = set(mapping or {}) - set(labels)
            if stray:
                raise CardError(f"{name} name labels the model does not have: {', '.join(sorted(stray))}")
        from cxrviewer.model.tta import VIEWS

        unknown_views = [v for v in self.tta if v not in VIEWS]
        if unknown_views:
            raise CardError(f"unknown test-time augmentation views {', '.join(unknown_views)}")

    @classmethod
    def from_json(cls, doc: JSON, what: str = "model card") -> Self:
        """Parse a card's JSON object; `what` names the card (its path) in error messages."""
        where = what
        if not isinstance(doc, dict):
            raise ModelError(f"{where}: the model card is not a JSON object")
        if doc.get("format") != CARD_FORMAT:
            raise ModelError(f"{where}: not a cxrviewer model card (format {doc.get('format')!r}, "
                             f"expected {CARD_FORMAT!r})")
        body = {k: v for k, v in doc.items() if k != "format"}
        try:
            return super().from_json(body, "model card")
        except CardError as exc:
            raise ModelError(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:  # a parser met a value of an unexpected shape
            raise ModelError(f"{where}: malformed model card ({exc})") from None

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """Read and parse a card file (ModelError naming the file when it is missing or malformed)."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{path}: model card not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{path}: model card is not readable JSON ({exc})") from None
        return cls.from_json(doc, str(path))

    def to_json(self) -> dict[str, JSON]:
        """The card's JSON object, as written to disk (``format`` first)."""
        return {"format": CARD_FORMAT, **super().to_json()}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def replace(self, **changes: Any) -> ModelCard:
        """A copy with some fields changed (validated again; the seal is kept, so the copy reads as modified
        until `sealed` is called)."""
        return dataclasses.replace(self, **changes)

    # --- the seal --------------------------------------------------------------------------------------

    @functools.cached_property
    def card_sha256(self) -> str:
        """SHA-256 of this card's canonical content (`canonical_card_json`), whatever its seal says."""
        return hashlib.sha256(canonical_card_json(self.to_json()).encode("ascii")).hexdigest()

    @property
    def card_status(self) -> str:
        """`CARD_SEALED` when the content matches the seal, else `CARD_MODIFIED` (also without a seal)."""
        seal = self.seal
        ok = seal is not None and seal.method == SEAL_METHOD and seal.sha256 == self.card_sha256
        return CARD_SEALED if ok else CARD_MODIFIED

    @property
    def is_modified(self) -> bool:
        return self.card_status != CARD_SEALED

    def sealed(self) -> ModelCard:
        """This card with a seal over its current content."""
        return self.replace(seal=CardSeal(sha256=self.card_sha256, method=SEAL_METHOD))

    def seal_problem(self) -> str | None:
        """Why the card is not sealed, in words (None when it is)."""
        if self.seal is None:
            return "it has no seal (written by hand or by a version before seals)"
        if self.seal.method != SEAL_METHOD:
            return f"its seal uses an unknown method {self.seal.method!r}"
        if self.seal.sha256 != self.card_sha256:
            return (f"its content (SHA-256 {self.card_sha256[:12]}...) does not match its seal "
                    f"({self.seal.sha256[:12]}...): it was edited after the trainer wrote it")
        return None

    def integrity_note(self) -> str | None:
        """The warning every output shows for a modified card (None for a sealed one)."""
        if not self.is_modified:
            return None
        return (f"{MODIFIED_CARD[0].upper()}{MODIFIED_CARD[1:]}: its content does not match the seal the trainer "
                f"wrote (card SHA-256 {self.card_sha256[:16]}...); operating points or other values may differ "
                "from the validated model.")

    # --- what readers ask ------------------------------------------------------------------------------

    @property
    def display_name(self) -> str:
        """"name version"."""
        return " ".join(x for x in (self.name.strip(), self.version.strip()) if x)

    def calibrate(self, logits: Any) -> Any:
        """Probabilities from the network's logits (..., labels in card order): the card's per-label Platt
        scaling where it has one, the plain sigmoid elsewhere. Works on numpy arrays."""
        import numpy as np

        cal = self.calibration or {}
        scale = np.array([cal[lab].scale if lab in cal else 1.0 for lab in self.labels])
        bias = np.array([cal[lab].bias if lab in cal else 0.0 for lab in self.labels])
        return 1.0 / (1.0 + np.exp(-(scale * np.asarray(logits, dtype=np.float64) + bias)))

    def label_metrics(self, label: str) -> LabelMetrics | None:
        """Headline validation metrics of one label (primary data set), when recorded."""
        return self.validation.per_label.get(label) if self.validation else None

    def auroc_fold_std(self, label: str) -> float | None:
        return self.validation.auroc_fold_std(label) if self.validation else None
