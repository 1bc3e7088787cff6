"""Is this film abroad? Image-level evidence that a film is unlike the training films, with reasons.

The feature gate (`cxrviewer.model.gate.FeatureGate`) scores the network's mean-pooled features, which average a
thin line or a processing change away (site-shift battery: it warned on none of the shifted films). This check
looks at the pixels the network sees (the letterboxed model input, padding cut off) and never at the network, so
it is the same on ONNX Runtime and torch. Two parts, each compared with the training films:

1. **Processing** (`band_energies`): the mean absolute difference of Gaussian blurs one octave apart
   (sigma 0.7 ... 22.4 model pixels), in logs: the film's detail spectrum. Edge enhancement (unsharp masking, CLAHE)
   raises the fine and middle octaves together, noise the finest alone, blur and resampling lower the fine
   ones, exposure or tone processing shifts all of them. The training films' spectra are modelled by a Gaussian
   mixture (two components: adult and pediatric films differ); the score is the smallest Mahalanobis distance to a
   component over the threshold (the ``quantile`` of held-out distances, 2-fold). The reason names the pattern
   of the deviation that best explains it (`PATTERNS`).
2. **Lines and tubes** (`line_score`): a thin-line filter (a pixel brighter than *both* neighbours two pixels away
   across the line, in four directions: edges do not respond, lines do), connected, inside the film less a 5 %
   rim; the longest strong component (extent x mean contrast) is the score. Catheters, drains, tubes, ECG wires
   and leads give long, bright, thin components; vessels and rib margins are fainter or short. Where a film's
   fine detail is above the training films' (edge enhancement makes bone margins line-like), the contrast is
   divided by how much above. Threshold: the ``quantile`` of the training films' scores (real NIH films carry
   devices too, so this is "more line than 97 % of training films", not "no line").

`AbroadGate.check` gives an `Abroad`: the score (the larger part over its threshold; above 1 it warns), the two
parts and the reasons, each naming the findings it makes less reliable (what the site-shift battery measured:
edge enhancement and devices raise Pneumothorax, soft films under-call). Nothing is suppressed: findings are
shown with the warning. `fit_abroad` computes the card's ``gate["abroad"]`` record. About 5 ms per film on one
core.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

METHOD = "spectrum-gmm+lines/1"
SIGMAS = (0.7, 1.4, 2.8, 5.6, 11.2, 22.4)  # model pixels; octave k is blur(SIGMAS[k-1]) - blur(SIGMAS[k])
TRIM = 0.03  # share of the content cut off each side before the spectrum (letterbox and film edges)
RIM = 0.05  # share of the content each side where lines are not looked for (film edges, collimation)
LINE_STEP = 2  # pixels to either side of a line that must both be darker
LINE_LOW = 0.07  # least line contrast (display units, 0-1) of a line pixel
LINE_MIN_EXTENT = 0.1  # shorter components (burned-in letters, markers, clips) are not lines
BLACK = 0.02  # below this a pixel is outside the exposed field
COMPONENTS = 2
SPECTRUM_QUANTILE = 0.99
LINES_QUANTILE = 0.98
EXPLAINED = 0.2  # least share of a deviation a pattern must explain to name it
DETAIL_QUANTILE = 0.75  # fine detail above this quantile of the training films scales line contrast down

PTX, OPACITY, ATELECTASIS, EFFUSION, LESION = ("Pneumothorax", "Lung Opacity", "Atelectasis", "Pleural Effusion",
                                               "Lung Lesion")


@dataclass(frozen=True)
class Pattern:
    """A way a film's detail spectrum departs from the training films', and what it means for the findings."""

    kind: str
    direction: tuple[float, ...]  # change of the log octave energies, finest first
    text: str
    labels: tuple[str, ...]


#: Deviation patterns (log octave energies, finest first); the one most aligned with a film's deviation names it.
PATTERNS = (
    Pattern("sharpened", (0.8, 0.8, 0.75, 0.6, 0.35, 0.1),
            "edge-enhanced processing (sharpening or local contrast equalisation)",
            (PTX, LESION)),
    Pattern("noisy", (1.0, 0.35, 0.05, 0.0, 0.0, 0.0), "grainier (noisier)", (PTX,)),
    Pattern("soft", (-1.0, -0.6, -0.25, -0.08, 0.0, 0.0),
            "softer (blurred, resampled or low resolution; findings may be under-called)",
            (EFFUSION, OPACITY)),
    Pattern("high contrast", (1.0,) * 6, "more contrast", ()),
    Pattern("low contrast", (-1.0,) * 6, "less contrast (washed-out or flat processing)",
            ()),
)
GENERIC = Pattern("statistics", (0.0,) * 6, "other image statistics (detail or contrast)", ())
LINES = Pattern("lines", (), "lines or tubes detected (catheters, drains, wires or ECG leads)",
                (PTX, OPACITY, ATELECTASIS))


@dataclass(frozen=True)
class FilmStats:
    """What the check measures on one film."""

    spectrum: np.ndarray  # (len(SIGMAS),) log mean |DoG| per octave, finest first
    line_image: np.ndarray  # thin-line pixels labelled by connected component (`line_labels`)
    line_stats: np.ndarray  # (labels, 2): extent (share of the longer side), mean contrast; row 0 background
    detail: float  # mean |DoG| of octaves 1-2 (what edge enhancement raises)

    @property
    def components(self) -> np.ndarray:
        """(n, 2) the thin-line components at least `LINE_MIN_EXTENT` long."""
        return self.line_stats[self.line_stats[:, 0] >= LINE_MIN_EXTENT]


@dataclass(frozen=True)
class Abroad:
    """The verdict: ``score`` > 1 warns (the film is unlike the training films); ``reasons`` say how."""

    score: float
    processing: float  # spectrum distance / its threshold
    lines: float  # line score / its threshold
    reasons: tuple[Pattern, ...]
    #: What the network was shown instead of the film as it came (`cxrviewer.model.harmonise`), in words and as
    #: numbers; empty / None when the card does not harmonise.
    adjusted: tuple[str, ...] = ()
    harmonised: dict[str, float] | None = None

    @property
    def warns(self) -> bool:
        return self.score > 1.0

    @property
    def labels(self) -> list[str]:
        """Findings named by the reasons as less reliable, in first-mention order."""
        return list(dict.fromkeys(lab for r in self.reasons for lab in r.labels))

    @property
    def message(self) -> str | None:
        """One sentence for the panel and the reports; None when the film is not abroad."""
        if not self.warns:
            return None
        texts = "; ".join(r.text for r in self.reasons) or GENERIC.text
        labels = self.labels
        tail = f", especially {_and(labels)}" if labels else ""
        seen = f" The model saw it with {_and(self.adjusted)}." if self.adjusted else ""
        return f"This film is unlike the training films: {texts}. Findings are less reliable{tail}.{seen}"

    def to_json(self) -> dict[str, Any]:
        return {"warn": self.warns, "score": round(self.score, 3), "processing": round(self.processing, 3),
                "lines": round(self.lines, 3),
                "reasons": [{"kind": r.kind, "text": r.text, "labels": list(r.labels)} for r in self.reasons],
                "less_reliable": self.labels, "harmonised": self.harmonised}


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --- measurements ---------------------------------------------------------------------------------------

def content(square01: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The film inside a letterboxed square: ``box`` = (x, y, w, h) (`Letterbox.content`), else the square less
    its all-zero rows and columns at the edges (the letterbox padding)."""
    sq = np.asarray(square01, dtype=np.float32)
    if box is None:
        rows, cols = np.flatnonzero(sq.max(axis=1) > 0), np.flatnonzero(sq.max(axis=0) > 0)
        if rows.size < 16 or cols.size < 16:
            return sq
        return np.ascontiguousarray(sq[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    x, y, w, h = (int(v) for v in box)
    return np.ascontiguousarray(sq[y : y + h, x : x + w])


#: More than 1: a film's octave blurs (`octave_blurs`) run on two threads. `cxrviewer-predict` sets it to its cores (it
#: reads films one at a time between forward passes); unset, as in the viewer, which prepares films beside the network
#: and the event loop, one thread.
BLUR_THREADS_ENV = "CXRVIEWER_BLUR_THREADS"


def octave_blurs(film: np.ndarray, border: int = cv2.BORDER_DEFAULT) -> list[np.ndarray]:
    """The float32 film blurred at each of `SIGMAS` (in that order), with OpenCV's `border`. With `BLUR_THREADS_ENV`
    above 1 the widest blur (about half the work) runs on a short-lived thread beside the others (OpenCV lets go of
    Python's lock while it blurs): the same pixels, sooner."""
    f = np.ascontiguousarray(film, dtype=np.float32)
    out: dict[float, np.ndarray] = {}
    failed: list[BaseException] = []

    def blur(sigmas: Sequence[float]) -> None:
        try:
            for s in sigmas:
                out[s] = cv2.GaussianBlur(f, (0, 0), s, borderType=border)
        except BaseException as exc:  # re-raised in the caller
            failed.append(exc)

    value = os.environ.get(BLUR_THREADS_ENV, "").strip()
    if value.isdigit() and int(value) > 1:
        helper = threading.Thread(target=blur, args=(SIGMAS[-1:],), name="cxr-blur")
        helper.start()
        blur(SIGMAS[:-1])
        helper.join()
    else:
        blur(SIGMAS)
    if failed:
        raise failed[0]
    return [out[s] for s in SIGMAS]


def band_energies(film: np.ndarray) -> np.ndarray:
    """Mean |DoG| per octave (`SIGMAS`) of the film less a `TRIM` rim, float64, finest first."""
    h, w = film.shape
    m = max(2, int(TRIM * min(h, w)))
    core = np.ascontiguousarray(film[m : h - m, m : w - m], dtype=np.float32)
    blurs = [core, *octave_blurs(core)]
    return np.array([float(np.abs(blurs[i] - blurs[i + 1]).mean()) for i in range(len(SIGMAS))])


def line_response(film: np.ndarray, step: int = LINE_STEP) -> np.ndarray:
    """Thin bright line contrast per pixel: min over both sides across the line of (pixel - side), the largest of
    four directions; 0 or less on edges and flat ground."""
    h, w = film.shape
    pad = cv2.copyMakeBorder(np.asarray(film, np.float32), step, step, step, step, cv2.BORDER_REFLECT)
    centre = pad[step : step + h, step : step + w]

    def side(dy: int, dx: int) -> np.ndarray:
        return pad[step + dy : step + dy + h, step + dx : step + dx + w]

    best = np.full((h, w), -1.0, dtype=np.float32)
    for dy, dx in ((0, step), (step, 0), (step, step), (step, -step)):
        np.maximum(best, np.minimum(centre - side(dy, dx), centre - side(-dy, -dx)), out=best)
    return best


def line_labels(film: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected thin-line pixels inside the film less a `RIM` rim: (label image, (n, 2) extent as a share of the
    longer side and mean contrast per label; row 0, the background, is zero)."""
    h, w = film.shape
    resp = line_response(film)
    my, mx = int(RIM * h), int(RIM * w)
    inner = np.zeros((h, w), dtype=bool)
    inner[my : h - my, mx : w - mx] = True
    # the bright rim where a film meets black (collimation, a rotated scan's corners) is no line
    black = cv2.dilate((film < BLACK).astype(np.uint8), np.ones((2 * LINE_STEP + 3,) * 2, np.uint8)) > 0
    on = (resp > LINE_LOW) & inner & ~black
    n, lab, st, _ = cv2.connectedComponentsWithStats(on.astype(np.uint8), connectivity=8)
    idx = lab[on]
    count = np.bincount(idx, minlength=n).astype(np.float64)
    mean = np.bincount(idx, resp[on].astype(np.float64), minlength=n) / np.maximum(count, 1.0)
    extent = np.hypot(st[:, 2], st[:, 3]) / max(h, w)
    stats = np.c_[extent, mean]
    stats[0] = 0.0
    return lab, stats


def line_score(components: np.ndarray, scale: float = 1.0) -> float:
    """Longest strong line: max over components of extent x mean contrast / scale (0 without components)."""
    if components.size == 0:
        return 0.0
    return float((components[:, 0] * components[:, 1]).max() / max(scale, 1e-6))


def measure(film: np.ndarray) -> FilmStats:
    """The check's measurements on a film ([0, 1], air dark, padding cut off: `content`)."""
    energies = band_energies(film)
    image, stats = line_labels(film)
    return FilmStats(np.log(energies + 1e-5), image, stats, float(energies[1] + energies[2]))


# --- reference and verdict ------------------------------------------------------------------------------

@dataclass
class Mixture:
    """Gaussian mixture over log octave energies (weights, means, covariances)."""

    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, d)
    covariances: np.ndarray  # (k, d, d)

    def __post_init__(self) -> None:
        self.inverses = np.linalg.inv(self.covariances)

    def distances(self, x: np.ndarray) -> np.ndarray:
        """(n, k) squared Mahalanobis distances of rows of x to each component."""
        d = np.atleast_2d(x)[:, None, :] - self.means[None]
        return np.einsum("nkd,kde,nke->nk", d, self.inverses, d)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Smallest squared distance to a component, per row."""
        return self.distances(x).min(axis=1)

    @classmethod
    def fit(cls, x: np.ndarray, k: int = COMPONENTS, seed: int = 0, iterations: int = 100,
            ridge: float = 1e-4) -> Mixture:
        """EM from a k-means++ start (deterministic for a seed); a ridge keeps covariances invertible."""
        x = np.asarray(x, dtype=np.float64)
        n, d = x.shape
        k = max(1, min(k, n // (4 * d)))
        rng = np.random.default_rng(seed)
        centres = [x[int(rng.integers(n))]]
        for _ in range(k - 1):
            d2 = np.min([((x - c) ** 2).sum(axis=1) for c in centres], axis=0)
            centres.append(x[int(rng.choice(n, p=d2 / d2.sum()))])
        means = np.array(centres)
        covs = np.repeat(np.cov(x.T)[None] + ridge * np.eye(d), k, axis=0)
        weights = np.full(k, 1.0 / k)
        for _ in range(iterations):
            mix = cls(weights, means, covs)
            _, logdet = np.linalg.slogdet(covs)
            loglik = -0.5 * (mix.distances(x) + logdet[None]) + np.log(weights)[None]
            resp = np.exp(loglik - loglik.max(axis=1, keepdims=True))
            resp /= resp.sum(axis=1, keepdims=True)
            nk = resp.sum(axis=0) + 1e-9
            weights, means = nk / n, (resp.T @ x) / nk[:, None]
            covs = np.stack([((resp[:, j, None] * (x - means[j])).T @ (x - means[j])) / nk[j] for j in range(k)])
            covs += ridge * np.eye(d)[None]
        return cls(weights, means, covs)

    def to_json(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist(), "means": self.means.tolist(),
                "covariances": self.covariances.tolist()}

    @classmethod
    def from_json(cls, rec: Any) -> Mixture:
        w, m, c = (np.asarray(rec[key], dtype=np.float64) for key in ("weights", "means", "covariances"))
        k, d = m.shape
        if w.shape != (k,) or c.shape != (k, d, d) or d != len(SIGMAS):
            raise ValueError(f"mixture shapes {w.shape}, {m.shape}, {c.shape} do not fit {len(SIGMAS)} octaves")
        if np.any(np.linalg.eigvalsh(c) <= 0):
            raise ValueError("mixture covariances must be positive definite")
        return cls(w, m, c)


def explain(mixture: Mixture, spectrum: np.ndarray) -> Pattern:
    """The pattern whose direction best explains the film's deviation from its nearest component (the share of the
    squared Mahalanobis distance along it); `GENERIC` when none explains `EXPLAINED` of it."""
    j = int(mixture.distances(spectrum)[0].argmin())
    dev, inv = spectrum - mixture.means[j], mixture.inverses[j]
    total = float(dev @ inv @ dev)
    best, share = GENERIC, EXPLAINED
    for p in PATTERNS:
        t = np.asarray(p.direction)
        along = float(dev @ inv @ t)
        if along <= 0:
            continue
        explained = along**2 / float(t @ inv @ t) / max(total, 1e-12)
        if explained > share:
            best, share = p, explained
    return best


@dataclass
class AbroadGate:
    """The training films' reference (`fit_abroad`, stored in the card's ``gate["abroad"]``)."""

    mixture: Mixture
    spectrum_threshold: float  # squared distance at processing score 1
    lines_threshold: float  # line score at lines score 1
    detail_reference: float  # fine detail above this scales line contrast down

    def line_scale(self, stats: FilmStats) -> float:
        return max(1.0, stats.detail / self.detail_reference)

    def check(self, stats: FilmStats) -> Abroad:
        processing = float(self.mixture.score(stats.spectrum)[0] / self.spectrum_threshold)
        lines = line_score(stats.components, self.line_scale(stats)) / self.lines_threshold
        parts = sorted([(processing, 0), (lines, 1)], reverse=True)  # the stronger evidence first
        reasons = tuple(explain(self.mixture, stats.spectrum) if which == 0 else LINES
                        for value, which in parts if value > 1.0)
        return Abroad(max(processing, lines), processing, lines, reasons)

    def check_film(self, film: np.ndarray) -> Abroad:
        return self.check(measure(film))

    def to_record(self, **extra: Any) -> dict[str, Any]:
        return {"method": METHOD, "sigmas": list(SIGMAS), "mixture": self.mixture.to_json(),
                "spectrum_threshold": self.spectrum_threshold, "lines_threshold": self.lines_threshold,
                "detail_reference": self.detail_reference, **extra}

    @classmethod
    def from_record(cls, rec: Any) -> AbroadGate:
        """Rebuild from ``gate["abroad"]``; ValueError when it is malformed or of another method."""
        if not isinstance(rec, dict) or rec.get("method") != METHOD:
            raise ValueError(f"unknown abroad method {rec.get('method') if isinstance(rec, dict) else rec!r}")
        if [float(s) for s in rec.get("sigmas", [])] != list(SIGMAS):
            raise ValueError("abroad statistics were measured at other octaves")
        gate = cls(Mixture.from_json(rec["mixture"]), float(rec["spectrum_threshold"]),
                   float(rec["lines_threshold"]), float(rec["detail_reference"]))
        if not (gate.spectrum_threshold > 0 and gate.lines_threshold > 0 and gate.detail_reference > 0):
            raise ValueError("abroad thresholds must be positive")
        return gate


def fit_abroad(films: Iterable[np.ndarray], *, seed: int = 0) -> dict[str, Any]:
    """The card's ``gate["abroad"]`` record from training films ([0, 1], air dark, padding cut off: `content`).

    Films as the app sees them: decoded files letterboxed to the model's size (JPEG-compressed training packs
    lower the finest octave). Thresholds: the `SPECTRUM_QUANTILE` of held-out spectrum distances (2-fold) and the
    `LINES_QUANTILE` of the films' line scores."""
    stats = [measure(f) for f in films]
    if len(stats) < 100:
        raise ValueError(f"fit_abroad needs at least 100 films, got {len(stats)}")
    spectra = np.stack([s.spectrum for s in stats])
    detail = np.array([s.detail for s in stats])
    detail_ref = float(np.quantile(detail, DETAIL_QUANTILE))
    n = len(spectra)
    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2 :])
    held_out = np.concatenate([Mixture.fit(spectra[a], seed=seed).score(spectra[b])
                               for a, b in (halves, halves[::-1])])
    mixture = Mixture.fit(spectra, seed=seed)
    lines = np.array([line_score(s.components, max(1.0, s.detail / detail_ref)) for s in stats])
    gate = AbroadGate(mixture, float(np.quantile(held_out, SPECTRUM_QUANTILE)),
                      max(float(np.quantile(lines, LINES_QUANTILE)), 1e-3), detail_ref)
    return gate.to_record(n_images=n, spectrum_quantile=SPECTRUM_QUANTILE, lines_quantile=LINES_QUANTILE,
                          detail_quantile=DETAIL_QUANTILE)
