"""Input gate: decide whether the second opinion applies to an image before showing it.

Three independent checks; any one can reject, and each gives a sentence the user reads:

1. **Tags** (`tag_check`): the imaging layer's flags. Lateral view -> "lateral view: model trained on
   frontal films"; wrong modality or body part -> "not a chest radiograph: <the flag's message>".
   Contradictory tags only warn.
2. **Image statistics** (`image_check`, no tags, no model): colour photographs, near-uniform images,
   noise-like images, extreme shapes and tiny images. Constants below; they are wide on purpose.
3. **Feature space** (`FeatureGate`, no tags): the pooled last feature map of the network (the vector
   its classifier sees) is scored by a probabilistic-PCA Mahalanobis distance to the training images'
   features, ``sum_i z_i^2 / lambda_i + |residual|^2 / sigma^2`` divided by the feature dimension.
   `fit_gate` computes the statistics at export; they live in the model card under ``"gate"``. The score
   is distance / threshold, the threshold being the 99th percentile of *held-out* distances (2-fold over
   the training images) x 1.5. Two tiers, because real films have a long tail (washed-out exposures,
   spinal hardware): a score above 1 only **warns** ("unusual image"), a score above ``reject_score``
   (2) **rejects**. Measured with a partly trained ResNet-18 (160 px, NIH + Kermany): NIH held-out films
   median 0.1, max 1.8 of 255; tibia, CT, secondary captures, noise 2-8. A card without ``"gate"`` only
   gets checks 1 and 2.
4. **Abroad** (`cxrviewer.model.abroad`, the card's ``gate["abroad"]``): the model input's detail spectrum
   (edge enhancement, noise, softness, contrast) and thin lines or tubes, against the training films. It only
   warns ("unlike the training films: ...; findings are less reliable, especially ..."), never rejects; the
   verdict rides along as ``GateResult.abroad``. The pooled features above miss exactly these (site-shift
   battery, issue 19).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from cxrviewer.imaging.image import Flag, Image
from cxrviewer.model.abroad import Abroad
from cxrviewer.model.gate_status import GateStatus
from cxrviewer.model.preprocess import preprocess, shrunk

if TYPE_CHECKING:  # torch loads only where features are computed with it (fitting, the torch runner)
    import torch

    from cxrviewer.model.network import CXRNet

log = logging.getLogger(__name__)

GATE_METHOD = "ppca-mahalanobis/1"

LATERAL_REASON = "lateral view: model trained on frontal films"
NOT_CHEST = "not a chest radiograph"

#: Image-statistics limits (see `image_check`).
MIN_SIDE = 64  # pixels
MAX_ASPECT = 2.2  # long side / short side; chest films are 1.0-1.3
MIN_CONTRAST = 0.02  # standard deviation of the [0, 1] model input
ROUGHNESS_SIDE = 256  # the long side (pixels) at which roughness is measured
MAX_ROUGHNESS = 0.5  # mean |neighbour difference| / std at 256 px; white noise ~1.1, films ~0.05
MAX_COLOURFULNESS = 12.0  # Hasler-Suesstrunk chroma spread on 0-255; grey films ~0-2, photos 20-100


@dataclass
class GateResult:
    """Outcome of the input gate: ``status`` is `GateStatus.OK` or `.REJECTED`; ``reasons`` say why.

    ``warnings`` hold things worth showing that do not reject; with ``overridden`` (``force=True``) the
    rejection reasons are kept and the status is OK. A plain "ok" / "rejected" is accepted and converted.
    """

    status: GateStatus
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    feature_score: float | None = None  # distance / threshold: > 1 warns, > reject level rejects; or None
    overridden: bool = False
    #: Image-level check against the training films (`cxrviewer.model.abroad`); its message is among ``warnings``
    #: when it warns. None without the card's statistics or when the network did not run.
    abroad: Abroad | None = None

    def __post_init__(self) -> None:
        self.status = GateStatus(self.status)  # ValueError for anything but the two verdicts

    @property
    def ok(self) -> bool:
        return self.status is GateStatus.OK

    @property
    def message(self) -> str | None:
        """One line for a report: the reasons if rejected, else the warnings, else None."""
        lines = self.reasons if self.reasons and not self.overridden else self.reasons + self.warnings
        lines = list(dict.fromkeys(lines))
        if not lines:
            return None
        text = "; ".join(lines)
        return f"gate overridden: {text}" if self.overridden and self.reasons else text


def combine(reasons: Sequence[str], warnings: Sequence[str], feature_score: float | None,
            force: bool, abroad: Abroad | None = None) -> GateResult:
    """Build a GateResult; with ``force`` a rejection becomes "ok" with the reasons kept."""
    reasons = list(dict.fromkeys(reasons))
    warnings = list(dict.fromkeys(warnings))
    if reasons and force:
        return GateResult(GateStatus.OK, reasons, warnings, feature_score, overridden=True, abroad=abroad)
    return GateResult(GateStatus.REJECTED if reasons else GateStatus.OK, reasons, warnings, feature_score,
                      abroad=abroad)


# --- 1. tags -------------------------------------------------------------------------------------------

def tag_check(image: Image) -> tuple[list[str], list[str]]:
    """(reasons, warnings) from the imaging layer's flags and view."""
    reasons: list[str] = []
    warnings: list[str] = []
    for flag in image.flags:
        if flag.kind == Flag.LATERAL:
            reasons.append(LATERAL_REASON)
        elif flag.kind in (Flag.MODALITY, Flag.BODY_PART):
            reasons.append(f"{NOT_CHEST}: {flag.message}")
        else:
            warnings.append(flag.message)
    if image.view == "lateral" and LATERAL_REASON not in reasons:
        reasons.append(LATERAL_REASON)
    return reasons, warnings


# --- 2. image statistics -------------------------------------------------------------------------------

def colourfulness(rgb: np.ndarray) -> float:
    """Spread of chroma (Hasler & Suesstrunk 2003, std terms only) of an RGB/BGR image on a 0-255 scale.

    A uniform tint (a film photographed on a blue light box) scores low; only varying colour scores high.
    """
    arr = np.asarray(rgb, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] < 3:
        return 0.0
    if arr.max() <= 1.0:
        arr = arr * 255.0
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()))


def file_colourfulness(path: str | Path) -> float | None:
    """Colourfulness of a raster file read in colour at reduced size; None if it cannot be read that way."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_4)
    except (OSError, cv2.error):
        return None
    if bgr is None:
        return None
    return colourfulness(bgr)


def roughness(image01: np.ndarray, small: np.ndarray | None = None) -> float:
    """Mean absolute neighbour difference over the standard deviation, at `ROUGHNESS_SIDE` px on the long side
    (`small`: ``shrunk(image01, ROUGHNESS_SIDE)`` when the caller has it)."""
    img = small if small is not None else shrunk(image01, ROUGHNESS_SIDE)
    if min(img.shape) < 2:  # a sliver: two rows or columns at least, so neighbours exist
        img = cv2.resize(np.asarray(image01, np.float32), (max(2, img.shape[1]), max(2, img.shape[0])),
                         interpolation=cv2.INTER_AREA)
    std = float(img.std())
    if std < 1e-6:
        return 0.0
    diff = 0.5 * (np.abs(np.diff(img, axis=1)).mean() + np.abs(np.diff(img, axis=0)).mean())
    return float(diff / std)


def image_check(image01: np.ndarray, colour: float | None = None, small: np.ndarray | None = None) -> list[str]:
    """Reasons to reject from the pixels alone ([0, 1] model input, air dark); empty when it passes (`small`: see
    `roughness`)."""
    h, w = image01.shape[:2]
    reasons: list[str] = []
    if min(h, w) < MIN_SIDE:
        reasons.append(f"image too small for the model ({w}x{h} pixels)")
        return reasons
    aspect = max(h, w) / min(h, w)
    if aspect > MAX_ASPECT:
        reasons.append(f"{NOT_CHEST}: image shape {w}x{h} (aspect ratio {aspect:.1f})")
    if colour is not None and colour > MAX_COLOURFULNESS:
        reasons.append(f"{NOT_CHEST}: colour image (photograph or colour rendering)")
    step = max(1, min(h, w) // 512)  # a strided sample gives the same spread at a fraction of the cost
    if float(np.asarray(image01[::step, ::step], dtype=np.float32).std()) < MIN_CONTRAST:
        reasons.append(f"{NOT_CHEST}: the image is almost uniform")
    elif roughness(image01, small) > MAX_ROUGHNESS:
        reasons.append(f"{NOT_CHEST}: the image looks like noise")
    return reasons


# --- 3. feature space ----------------------------------------------------------------------------------

def _encode(arr: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(arr, dtype="<f4")
    return {"dtype": "float32", "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def _decode(rec: Any, name: str) -> np.ndarray:
    if not isinstance(rec, dict) or rec.get("dtype") != "float32" or not isinstance(rec.get("data"), str):
        raise ValueError(f"gate field {name!r} is not an encoded float32 array")
    arr = np.frombuffer(base64.b64decode(rec["data"]), dtype="<f4").astype(np.float64)
    shape = tuple(int(s) for s in rec.get("shape", []))
    if int(np.prod(shape)) != arr.size:
        raise ValueError(f"gate field {name!r} has {arr.size} values for shape {shape}")
    return arr.reshape(shape)


def pooled_features(fmap: torch.Tensor) -> np.ndarray:
    """(B, C) float64 global-average-pooled last feature map: the vector the classifier sees."""
    return fmap.float().mean(dim=(2, 3)).cpu().numpy().astype(np.float64)


@dataclass
class FeatureGate:
    """Probabilistic-PCA Mahalanobis distance of pooled features to the training distribution."""

    mean: np.ndarray  # (C,)
    basis: np.ndarray  # (k, C) orthonormal principal directions
    variances: np.ndarray  # (k,)
    residual_variance: float
    threshold: float  # distance at score 1 (the warning level)
    reject_score: float = 2.0  # score above which the image is rejected

    @classmethod
    def fit(cls, feats: np.ndarray, components: int) -> FeatureGate:
        feats = np.asarray(feats, dtype=np.float64)
        n, c = feats.shape
        k = max(1, min(components, n - 2, c - 1))
        mean = feats.mean(axis=0)
        _, s, vt = np.linalg.svd(feats - mean, full_matrices=False)
        eig = s**2 / max(n - 1, 1)
        rest = float(eig[k:].sum()) / max(c - k, 1)
        floor = 1e-6 * float(eig[0]) + 1e-12
        return cls(mean, vt[:k], np.maximum(eig[:k], floor), max(rest, floor), float("inf"))

    def distance(self, feats: np.ndarray) -> np.ndarray:
        """Distance per row (or a 0-d array for one vector), normalised by the feature dimension."""
        f = np.atleast_2d(np.asarray(feats, dtype=np.float64)) - self.mean
        z = f @ self.basis.T
        resid = f - z @ self.basis
        d = (z**2 / self.variances).sum(axis=1) + (resid**2).sum(axis=1) / self.residual_variance
        d = d / f.shape[1]
        return d if np.ndim(feats) == 2 else d[0]

    def score(self, feats: np.ndarray) -> float:
        """distance / threshold for one feature vector: > 1 means outside the training distribution."""
        return float(self.distance(feats) / self.threshold)

    def to_record(self, **extra: Any) -> dict[str, Any]:
        return {"method": GATE_METHOD, "feature": "mean-pooled last feature map",
                "mean": _encode(self.mean), "basis": _encode(self.basis), "variances": _encode(self.variances),
                "residual_variance": self.residual_variance, "threshold": self.threshold,
                "reject_score": self.reject_score, **extra}

    @classmethod
    def from_record(cls, rec: Any, channels: int) -> FeatureGate:
        """Rebuild from a card's ``"gate"`` entry; raises ValueError when it is malformed."""
        if not isinstance(rec, dict) or rec.get("method") != GATE_METHOD:
            raise ValueError(f"unknown gate method {rec.get('method') if isinstance(rec, dict) else rec!r}")
        mean, basis, var = _decode(rec.get("mean"), "mean"), _decode(rec.get("basis"), "basis"), \
            _decode(rec.get("variances"), "variances")
        if mean.shape != (channels,) or basis.ndim != 2 or basis.shape[1] != channels \
                or var.shape != (basis.shape[0],):
            raise ValueError(f"gate statistics do not fit the network's {channels} features")
        resid, thr = float(rec["residual_variance"]), float(rec["threshold"])
        reject = float(rec.get("reject_score", 1.0))
        if not (resid > 0 and thr > 0 and reject >= 1.0 and np.all(var > 0)):
            raise ValueError("gate variances and threshold must be positive, reject_score at least 1")
        return cls(mean, basis, var, resid, thr, reject)


def network_features(network: CXRNet, images01: Sequence[np.ndarray], size: int,
                     batch: int = 16) -> np.ndarray:
    """Pooled features (N, C) of [0, 1] images through the shared preprocessing."""
    import torch

    out: list[np.ndarray] = []
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode():
            for i in range(0, len(images01), batch):
                x = np.stack([preprocess(img, size)[0] for img in images01[i : i + batch]])
                _, fmap = network.forward_features(torch.from_numpy(x))
                out.append(pooled_features(fmap))
    finally:
        network.train(was_training)
    return np.concatenate(out)


def fit_gate(network: CXRNet, images01: list[np.ndarray], size: int, *, components: int = 32,
             quantile: float = 0.99, margin: float = 1.5, reject_score: float = 2.0,
             seed: int = 0) -> dict[str, Any]:
    """Fit the feature-space gate on training images; returns the model card's ``"gate"`` entry.

    ``images01``: 2-D float32 [0, 1] images, air dark (`cxrviewer.imaging.display.model_input`), frontal
    chest films like those the model was trained on (a few hundred or more). ``size``: the card's input
    size. Score 1 (warning) = ``margin`` x the ``quantile`` of held-out distances (2-fold); rejection
    above ``reject_score``.
    """
    if len(images01) < 20:
        raise ValueError(f"fit_gate needs at least 20 images, got {len(images01)}")
    feats = network_features(network, images01, size)
    n = len(feats)
    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2 :])
    held_out = np.concatenate([
        FeatureGate.fit(feats[a], components).distance(feats[b]) for a, b in (halves, halves[::-1])
    ])
    gate = FeatureGate.fit(feats, components)
    gate.threshold = float(np.quantile(held_out, quantile) * margin)
    gate.reject_score = float(reject_score)
    log.info("gate fitted on %d images: %d components, threshold %.3g", n, gate.basis.shape[0], gate.threshold)
    return gate.to_record(
        input_size=size, n_images=n, components=int(gate.basis.shape[0]), quantile=quantile, margin=margin,
        held_out_distance={"median": float(np.median(held_out)), "q99": float(np.quantile(held_out, 0.99)),
                           "max": float(held_out.max())},
    )
