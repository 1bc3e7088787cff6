"""The inference engine: one verified model, the input gate, probabilities, operating points and CAMs.

`Engine.predict(image)` runs the shared preprocessing (`cxrviewer.model.preprocess`), one forward pass
that yields the logits, the class-activation maps of **every** label from that same pass (`CXRNet.cams`, logit
units, on the network's grid) and the pooled features for the input gate (`cxrviewer.model.gate`). The pass runs
in ONNX Runtime when the card names an ONNX export, else in torch (`cxrviewer.model.runners`); on the ONNX path
torch is never imported. Maps are resampled to the original pixels only when asked for (`Prediction.cam`): peaks
come from the grid.

Colour scale of the maps (fixed, documented, never a per-image min-max): a CAM value v in logit units is
shown as sigmoid(v) in [0, 1], a "local probability". The spatial mean of a label's logit map equals the
label's logit, so a 2 % finding stays cold and a 98 % finding glows. `Prediction.cam` returns a map for a
flagged finding and for a triage "check" item, none for a label below both points. Maps and peaks are in
the ORIGINAL image's pixel coordinates (through `Letterbox.map_to_original` / `Letterbox.to_original`).
Details in `cxrviewer.model.cam`.

Input gate (`cxrviewer.model.gate`): tags and image statistics can reject before the network runs; the
feature-space score (distance to the training films) warns above 1 and rejects above the card's
``reject_score``. A rejected image gets no findings (the opinion is withheld) unless ``force=True``, which
runs the model and keeps the reasons (``GateResult.overridden``). The abroad check (`cxrviewer.model.abroad`, the
card's ``gate["abroad"]``) looks at the model input itself (processing, lines and tubes) and only warns: its verdict
is ``GateResult.abroad`` and its sentence one of the gate's warnings; findings are never suppressed for it. A card
with ``preprocessing["harmonise"]`` (`cxrviewer.model.harmonise`) adapts what the network sees (detail beyond the
training films' turned down, strong lines filled in); the check still judges the film as it came and its verdict
says what was changed.

Thread safety: one `Engine` may be shared by threads; the forward pass runs under a lock (one at a time),
everything else works on per-call data.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrviewer import labels as vocabulary
from cxrviewer.imaging.anatomy import LungFields, find_lung_fields
from cxrviewer.imaging.display import model_input
from cxrviewer.imaging.image import Image
from cxrviewer.model import gate as gating
from cxrviewer.model.abroad import Abroad, AbroadGate, FilmStats, content, measure
from cxrviewer.model.cam import cam_peak, cam_to_original, smooth_cams
from cxrviewer.model.gate import FeatureGate, GateResult, GateStatus
from cxrviewer.model.harmonise import Harmonised, Harmoniser
from cxrviewer.model.preprocess import CROPS, MEAN, STD, Letterbox, preprocess, shrunk
from cxrviewer.model.runners import Runner, TorchRunner, open_runner
from cxrviewer.model.weights import ModelBundle, ModelCard, ModelError, bundled_card_path, load_bundle

if TYPE_CHECKING:
    from cxrviewer.model.network import CXRNet

__all__ = ["Engine", "Finding", "GateResult", "Prediction", "ModelError"]

log = logging.getLogger(__name__)

OPERATING_POINTS = ("default", "high_sensitivity")

FEATURE_REJECT = (f"{gating.NOT_CHEST}: the image does not resemble the frontal chest films the model was "
                  "trained on")
FEATURE_WARNING = ("unusual image: it differs from the films the model was trained on (exposure, hardware, "
                   "projection?); findings are less reliable")


@dataclass
class Finding:
    """One label's result. ``cam_peak`` is (x, y) in original pixels, None below the cutoff (unless ``triage``).

    ``probability`` is calibrated when the card carries a calibration. ``triage`` marks a label above its
    high-sensitivity triage point but below its finding point ("check for ..."), never a finding. ``note``
    says why a label is not asserted although its probability is above its cutoff (No Finding beside a
    flagged finding)."""

    label: str
    probability: float
    threshold: float
    positive: bool
    cam_peak: tuple[float, float] | None
    triage: bool = False
    note: str | None = None


NO_FINDING = "No Finding"
NO_FINDING_NOTE = "not asserted: another finding is flagged"


def consistent_findings(findings: list[Finding]) -> list[Finding]:
    """"No Finding" cannot be positive while another finding is: it is then shown as not asserted."""
    others = any(f.positive for f in findings if f.label != NO_FINDING)
    for f in findings:
        if f.label == NO_FINDING and f.positive and others:
            f.positive, f.note, f.cam_peak = False, NO_FINDING_NOTE, None
    return findings


@dataclass
class Prediction:
    """Everything the viewer, the CLI and the reports need about one image.

    ``findings`` is empty when the gate rejected the image (and ``force`` was not given): the second
    opinion is withheld, ``gate.reasons`` say why.
    """

    findings: list[Finding]  # every label of the model, highest probability first
    gate: GateResult
    image_size: tuple[int, int]  # (width, height) of the original image
    view: str
    letterbox: Letterbox
    cams_logit: np.ndarray  # (L, h, w) low-res CAMs in logit units, label order = `labels`
    labels: list[str] = field(default_factory=list)  # model label order (rows of cams_logit)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    #: Lung-field outlines (N x 2 int32 (x, y) contours in original pixels; empty when not found).
    lung_outline: list[np.ndarray] = field(default_factory=list)
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def status(self) -> GateStatus:
        return self.gate.status

    def finding(self, label: str) -> Finding | None:
        return next((f for f in self.findings if f.label == label), None)

    def cam(self, label: str, *, below_cutoff: bool = False) -> np.ndarray | None:
        """Heat map over the ORIGINAL pixels, float32 on the fixed [0, 1] scale (sigmoid of logit units).

        None when the label has no result or its finding is below the cutoff (unless ``below_cutoff``,
        used to export every map; the viewer never draws those).
        """
        found = self.finding(label)
        shown = found is not None and (found.positive or found.triage)
        if found is None or (not shown and not below_cutoff) or label not in self.labels:
            return None
        if label not in self._cache:
            self._cache[label] = cam_to_original(self.cams_logit[self.labels.index(label)], self.letterbox)
        return self._cache[label]


def _check_preprocessing(card: ModelCard, where: str) -> None:
    rec = card.preprocessing
    expected = {"method": "letterbox", "mean": MEAN, "std": STD, "pad_value": 0.0}
    wrong = [k for k, v in expected.items() if getattr(rec, k) is not None and getattr(rec, k) != v]
    if rec.crop not in CROPS:
        wrong.append(f"crop {rec.crop!r}")
    if wrong or (rec.size or card.input_size) != card.input_size:
        raise ModelError(f"{where}: the card's preprocessing ({', '.join(wrong) or 'size'}) differs from "
                         "what this version implements; refusing to run a model on inputs it was not trained on")


class Engine:
    """A loaded model ready for inference; cheap to call repeatedly, load it once."""

    def __init__(self, bundle: ModelBundle, *, operating_point: str = "default", threads: int | None = None,
                 lung_outline: bool = False, backend: str = "auto"):
        """`lung_outline`: also find the lung fields of every analysed image (about 11 ms; the viewer draws them).

        `backend`: "auto", "onnx" or "torch" (`cxrviewer.model.runners.open_runner`); `threads`: intra-op threads
        (default: the cores this process may use)."""
        if operating_point not in OPERATING_POINTS:
            raise ValueError(f"operating_point must be one of {OPERATING_POINTS}")
        where = str(bundle.card_path)
        _check_preprocessing(bundle.card, where)
        self.bundle = bundle
        self.runner: Runner = open_runner(bundle, backend, threads)
        self.backend: str = self.runner.name  # "onnxruntime" or "torch"
        self.card: ModelCard = bundle.card
        self.labels: list[str] = bundle.labels
        self.name: str = bundle.name
        self.sha256: str = bundle.sha256
        self.card_sha256: str = bundle.card_sha256  # the card's own content hash, reported beside the weights'
        self.card_status: str = bundle.card_status  # "sealed", or "modified" (loaded with allow_modified_card)
        self.input_size: int = bundle.input_size
        self.crop: str | None = bundle.crop
        self.cam_smoothing: float | None = self.card.cam.smoothing_cells if self.card.cam else None
        self.not_covered: list[str] = vocabulary.not_covered(self.labels)
        self.operating_point = operating_point
        thresholds = self.card.thresholds
        if operating_point == "high_sensitivity":
            alt = self.card.high_sensitivity_thresholds
            if alt is None or set(alt) != set(self.labels):
                raise ModelError(f"{where}: the card has no high-sensitivity operating point for every label")
            thresholds = alt
        self.thresholds: dict[str, float] = {lab: float(thresholds[lab]) for lab in self.labels}
        self.triage: dict[str, float] = dict(self.card.triage_thresholds or {}) if operating_point == "default" else {}
        self.lung_outline = lung_outline
        self.feature_gate: FeatureGate | None = None
        if self.card.gate is not None:
            try:
                self.feature_gate = FeatureGate.from_record(dict(self.card.gate), self.runner.channels)
            except (ValueError, KeyError, TypeError) as exc:
                raise ModelError(f"{where}: the card's gate entry is unusable ({exc})") from None
        else:
            log.warning("model %s has no feature-space gate statistics; only tags and image statistics "
                        "are checked before predicting", self.name)
        self.abroad_gate: AbroadGate | None = None
        abroad = (self.card.gate or {}).get("abroad")
        if abroad is not None:
            try:
                self.abroad_gate = AbroadGate.from_record(abroad)
            except (ValueError, KeyError, TypeError) as exc:
                raise ModelError(f"{where}: the card's abroad statistics are unusable ({exc})") from None
        try:
            self.harmoniser: Harmoniser | None = Harmoniser.of_card(self.card)
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{where}: the card's harmonisation is unusable ({exc})") from None
        self._lock = threading.Lock()

    # --- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_card(cls, path: str | Path, *, allow_modified_card: bool = False, **kwargs: Any) -> Engine:
        """Load and verify a model card + weights (raises ModelError with a readable message).

        `allow_modified_card`: load a card whose content does not match its seal (`load_bundle`). The torch network
        is built only when torch runs the model (or `network` is asked for)."""
        return cls(load_bundle(path, allow_modified_card=allow_modified_card, lazy_network=True), **kwargs)

    @classmethod
    def bundled(cls, **kwargs: Any) -> Engine:
        """The model shipped with the application (ModelError when none is installed)."""
        return cls.from_card(bundled_card_path(), **kwargs)

    @property
    def network(self) -> CXRNet:
        """The torch network (built on first use when ONNX Runtime runs the model)."""
        if isinstance(self.runner, TorchRunner):
            return self.runner.network
        return self.bundle.network

    @property
    def has_feature_gate(self) -> bool:
        return self.feature_gate is not None

    def warmup(self) -> None:
        """One forward pass on a blank image so the first real prediction is not slowed by start-up."""
        x, box = preprocess(np.zeros((self.input_size, self.input_size), dtype=np.float32), self.input_size)
        self._run(x, box, None, None)

    # --- core ---------------------------------------------------------------------------------------------

    def _network_input(self, image01: np.ndarray, fields: LungFields | None, small: np.ndarray | None
                       ) -> tuple[np.ndarray, Letterbox, FilmStats | None, Harmonised | None]:
        """The network's input and its letterbox, the abroad check's measurements of the film as it came (None
        without the card's statistics) and what the card's harmonisation changed (None without one).

        `fields`: the image's lung fields (a thorax-crop model needs them); `small`: the gate's ``shrunk`` copy
        (`preprocess` reuses it when it is the resize the letterbox needs)."""
        x, box = preprocess(image01, self.input_size, self.crop, fields, small)
        stats = measure(content(x[0] * STD + MEAN, box.content)) if self.abroad_gate is not None else None
        harmonised = None
        if self.harmoniser is not None:
            x, harmonised = self.harmoniser.model_input(x, box, stats)
        return x, box, stats, harmonised

    def _run(self, x: np.ndarray, box: Letterbox, stats: FilmStats | None, harmonised: Harmonised | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, float], Abroad | None]:
        """(probabilities (L,), cams in logit units (L, h, w), pooled features (C,), timings, the abroad verdict on
        the film as it came, saying what harmonisation changed, or None without its statistics)."""
        t1 = time.perf_counter()
        with self._lock:  # the network's maps of every label come from this pass (in the graph on ONNX)
            out = self.runner.run(x)
        t2 = time.perf_counter()
        cams = smooth_cams(out.cams, self.cam_smoothing)
        probs = self.card.calibrate(out.logits)
        t3 = time.perf_counter()
        abroad = None
        if self.abroad_gate is not None and stats is not None:  # on the film as it came, whichever runner ran it
            abroad = self.abroad_gate.check(stats)
            if harmonised is not None:
                abroad = replace(abroad, adjusted=harmonised.describe(), harmonised=harmonised.to_json())
        return probs, cams, out.pooled, {"forward": t2 - t1, "cams": t3 - t2, "abroad": time.perf_counter() - t3}, \
            abroad

    def _gate_inputs(self, image01: np.ndarray, image: Image | None, small: np.ndarray
                     ) -> tuple[list[str], list[str]]:
        reasons: list[str] = []
        warnings: list[str] = []
        if image is not None:
            reasons, warnings = gating.tag_check(image)
        reasons += gating.image_check(image01, self._colour(image) if image is not None else None, small)
        return reasons, warnings

    @staticmethod
    def _colour(image: Image) -> float | None:
        """Colourfulness of a raster file the loader found to be in colour (it keeps only grey levels).

        None for grey files and for colour DICOM (tags and the feature check cover those).
        """
        meta = image.meta
        if meta.source_format == "dicom" or not any(n.startswith("colour image") for n in meta.notes):
            return None
        return gating.file_colourfulness(image.path)

    def _feature_check(self, pooled: np.ndarray) -> tuple[list[str], list[str], float | None]:
        """(reasons, warnings, score) of the feature-space check."""
        if self.feature_gate is None:
            return [], [], None
        score = self.feature_gate.score(pooled)
        if score > self.feature_gate.reject_score:
            return [FEATURE_REJECT], [], score
        if score > 1.0:
            return [], [FEATURE_WARNING], score
        return [], [], score

    def _prepare(self, image01: np.ndarray, image: Image | None, force: bool) -> Prepared:
        """The gate's checks of the pixels and tags, then (unless they reject and `force` is not given) the
        network's input."""
        t0 = time.perf_counter()
        h, w = image01.shape[:2]
        small = shrunk(image01, gating.ROUGHNESS_SIDE)  # one resize for the roughness check and the letterbox
        reasons, warnings = self._gate_inputs(image01, image, small)
        t1 = time.perf_counter()
        prepared = Prepared(self, image, (w, h), reasons, warnings, timings={"gate": t1 - t0})
        if reasons and not force:  # rejected before the network: nothing more to prepare
            return prepared
        if self.crop or self.lung_outline:  # one search for the crop and the outline
            prepared.fields = find_lung_fields(image01)
        t2 = time.perf_counter()
        prepared.network = self._network_input(image01, prepared.fields, small)
        prepared.timings.update(lungs=t2 - t1, preprocess=time.perf_counter() - t2)
        return prepared

    def _prepare_image(self, image: Image, force: bool) -> Prepared:
        """`_prepare` on the image's model input (`prepare`, and `predict` without a preparation)."""
        t0 = time.perf_counter()
        image01 = model_input(image)
        t1 = time.perf_counter()
        prepared = self._prepare(image01, image, force)
        prepared.timings["model_input"] = t1 - t0
        return prepared

    def _finish(self, prepared: Prepared, force: bool) -> Prediction:
        """The second opinion from a prepared film: the network, the feature check, findings and peaks."""
        w, h = prepared.size
        timings = dict(prepared.timings)
        gate_reasons, gate_warnings = list(prepared.reasons), list(prepared.warnings)
        if prepared.network is None:  # rejected before the network: withhold the opinion
            box = Letterbox.fit(w, h, self.input_size)
            return Prediction([], gating.combine(gate_reasons, gate_warnings, None, force), (w, h), prepared.view,
                              box, np.zeros((0, 0, 0), np.float32), list(self.labels), timings)
        x, box, stats, harmonised = prepared.network
        probs, cams, pooled, run_timings, abroad = self._run(x, box, stats, harmonised)
        timings.update(run_timings)
        t1 = time.perf_counter()
        feature_reasons, feature_warnings, score = self._feature_check(pooled)
        gate = gating.combine(gate_reasons + feature_reasons,
                              gate_warnings + feature_warnings + _abroad_warning(abroad), score, force, abroad)
        t2 = time.perf_counter()
        timings["gate"] += t2 - t1
        if gate.status is GateStatus.REJECTED:
            return Prediction([], gate, (w, h), prepared.view, box, np.zeros((0, 0, 0), np.float32),
                              list(self.labels), timings)
        findings = []
        for i, label in enumerate(self.labels):
            p, thr = float(probs[i]), self.thresholds[label]
            positive = p >= thr
            triage = not positive and label in self.triage and p >= self.triage[label]
            peak = cam_peak(cams[i], box) if positive or triage else None
            findings.append(Finding(label, p, thr, positive, peak, triage=triage))
        consistent_findings(findings)
        findings.sort(key=lambda f: -f.probability)
        timings["cams"] += time.perf_counter() - t2
        outline = prepared.fields.outline() if self.lung_outline and prepared.fields is not None else []
        return Prediction(findings, gate, (w, h), prepared.view, box, cams, list(self.labels), timings,
                          lung_outline=outline)

    # --- public -------------------------------------------------------------------------------------------

    def prepare(self, image: Image) -> Prepared:
        """Everything before the network for one image (its model input, the gate's pixel and tag checks, the
        network's harmonised input), for `predict(image, prepared=...)`: a caller with a second core prepares the
        next film while this engine's network runs on the current one. No lock; any thread."""
        return self._prepare_image(image, force=False)

    def predict(self, image: Image, force: bool = False, prepared: Prepared | None = None) -> Prediction:
        """Gate + second opinion for one image. ``force`` runs the model despite a rejection. `prepared`:
        ``prepare(image)`` done ahead by this engine (ignored when it is another engine's or another image's, or
        when ``force`` needs the network input a rejection left out)."""
        if prepared is None or prepared.engine is not self or prepared.image is not image \
                or (force and prepared.network is None):
            prepared = self._prepare_image(image, force)
        return self._finish(prepared, force)

    def predict_array(self, image01: np.ndarray, force: bool = False) -> Prediction:
        """Same on a 2-D [0, 1] array (air dark) without tags: image-based gate checks only."""
        arr = np.asarray(image01, dtype=np.float32)
        if arr.ndim != 2:
            raise ValueError(f"expected a 2-D grayscale array, got shape {arr.shape}")
        return self._finish(self._prepare(arr, None, force), force)

    def check_gate(self, image: Image) -> GateResult:
        """The gate alone (runs the network for the feature check unless tags/statistics already reject)."""
        prepared = self._prepare(model_input(image), image, force=False)
        reasons, warnings = list(prepared.reasons), list(prepared.warnings)
        score = None
        abroad = None
        if prepared.network is not None and (self.feature_gate is not None or self.abroad_gate is not None):
            _, _, pooled, _, abroad = self._run(*prepared.network)
            feature_reasons, feature_warnings, score = self._feature_check(pooled)
            reasons += feature_reasons
            warnings += feature_warnings + _abroad_warning(abroad)
        return gating.combine(reasons, warnings, score, force=False, abroad=abroad)


@dataclass
class Prepared:
    """One image's work before the network (`Engine.prepare`): the size and view, the gate's reasons and
    warnings from tags and pixels, the lung fields when the engine needs them, and the network's input with its
    letterbox, abroad measurements and harmonisation (None when the gate rejects before the network)."""

    engine: Engine  # the engine that prepared it (its card decides the input)
    image: Image | None  # the image it was prepared from (None for a bare array)
    size: tuple[int, int]  # (width, height) of the image
    reasons: list[str]
    warnings: list[str]
    fields: LungFields | None = None
    network: tuple[np.ndarray, Letterbox, FilmStats | None, Harmonised | None] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def view(self) -> str:
        return self.image.view if self.image is not None else "unknown"


def _abroad_warning(abroad: Abroad | None) -> list[str]:
    """The abroad check's sentence as a gate warning (findings stay shown), or nothing."""
    message = abroad.message if abroad is not None else None
    return [message] if message else []
