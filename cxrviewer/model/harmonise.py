"""Input harmonisation: a film processed unlike the training films is brought back toward them before the network.

A new hospital's detector processing (edge enhancement, local contrast equalisation, noise) moves a film's detail
spectrum, the log mean |DoG| per octave that the abroad check measures (`abroad.band_energies`), away from the
training films', and its lines and tubes are stronger than theirs; the site-shift battery showed what that costs
(unsharp masking and CLAHE make Pneumothorax fire on half of normal NIH films, painted ICU devices take unseen
normal films from 0.05 to 1.9 flags). Two steps, both on the letterboxed model input (padding cut off):

1. **Lines** (optional, ``lines``): thin-line components of the abroad check (`abroad.line_labels`) whose line
   score is ``lines`` times the check's threshold or more are widened to their walls and filled in from their
   surroundings (OpenCV's Telea inpainting).
2. **Detail**: the film is split into the check's octave bands plus the coarse remainder,
   ``film = blur(SIGMAS[-1]) + sum_k band_k``. Its deviation from the nearest training component is shrunk, along
   the straight line in log-energy space, to the squared Mahalanobis distance ``radius``, and each band is scaled
   by the resulting energy ratio, never up (`MAX_GAIN` 1: sharpening a soft film made the battery's blurred films
   worse) and at least `MIN_GAIN`. Two passes, because the bands overlap.

The network sees the harmonised input; the abroad check measures the film as it came (it still warns, and its
verdict says what was done: `Harmonised.describe`). The setting lives in the card's ``preprocessing["harmonise"]``
and uses the card's abroad reference, so the same card always does the same thing; it is chosen and written by the
site-shift battery (``--harmonise-radius R --harmonise-lines S --write-card``). It adapts a network trained
without it at inference time; the trainer's letterbox and scaling are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from cxrviewer.model.abroad import (
    BLACK,
    LINE_MIN_EXTENT,
    LINE_STEP,
    SIGMAS,
    AbroadGate,
    FilmStats,
    band_energies,
    content,
    measure,
    octave_blurs,
)
from cxrviewer.model.preprocess import MEAN, STD, Letterbox, normalize

if TYPE_CHECKING:
    from cxrviewer.model.card import ModelCard

METHOD = "spectrum-shrink/1"
MIN_GAIN = 0.35
MAX_GAIN = 1.0  # attenuate only: sharpening a soft film adds noise the network reads as findings
PASSES = 2
FRAME_EXPOSED = 0.05  # least share of exposed pixels in an edge row or column that is not a black frame


def bands(film: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """(coarse remainder, octave bands finest first) with ``film == remainder + sum(bands)``."""
    f = np.asarray(film, dtype=np.float32)
    blurs = [f, *octave_blurs(f, cv2.BORDER_REFLECT)]
    return blurs[-1], [blurs[i] - blurs[i + 1] for i in range(len(SIGMAS))]


@dataclass(frozen=True)
class Harmonised:
    """A harmonised film and what was done to it."""

    film: np.ndarray
    detail: float  # the smallest octave gain applied, multiplied over the passes (1.0: detail left as it was)
    filled: float  # share of the film's pixels filled in as lines or tubes

    @property
    def changed(self) -> bool:
        return self.detail < 1.0 or self.filled > 0.0

    def describe(self) -> tuple[str, ...]:
        """What the network was shown instead of the film as it came, in words (empty when nothing was done)."""
        done = []
        if self.detail < 1.0:
            done.append(f"its fine detail turned down (gain {self.detail:.2f})")
        if self.filled > 0.0:
            done.append(f"thin lines and tubes filled in ({self.filled:.1%} of the film)")
        return tuple(done)

    def to_json(self) -> dict[str, float]:
        return {"detail_gain": round(self.detail, 3), "lines_filled": round(self.filled, 4)}


@dataclass(frozen=True)
class Harmoniser:
    """The training films' reference (the card's abroad statistics), the spectrum radius inside which a film is
    left alone and, optionally, the line strength above which thin lines are filled in."""

    gate: AbroadGate
    radius: float  # squared Mahalanobis distance
    lines: float | None = None  # line score / the gate's line threshold; None: lines are left

    def gains(self, spectrum: np.ndarray) -> np.ndarray | None:
        """Per-octave gains (at most 1) that move a log spectrum (`FilmStats.spectrum`) to the radius; None when
        it is inside."""
        mixture = self.gate.mixture
        d2 = mixture.distances(spectrum)[0]
        j = int(d2.argmin())
        if d2[j] <= self.radius:
            return None
        dev = spectrum - mixture.means[j]
        target = dev * np.sqrt(self.radius / d2[j])
        return np.clip(np.exp(target - dev), MIN_GAIN, MAX_GAIN)

    def film(self, film: np.ndarray, stats: FilmStats | None = None) -> Harmonised:
        """The harmonised film ([0, 1], same shape; the film itself when nothing needed doing) and what was done.

        `stats`: the abroad check's measurements of this film when the caller has them (saves measuring twice)."""
        out = np.asarray(film, dtype=np.float32)
        stats = stats if stats is not None else measure(out)
        spectrum: np.ndarray | None = stats.spectrum
        filled = 0.0
        if self.lines is not None:
            mask = line_mask(stats, self.gate, self.lines)
            if mask.any():
                filled = float(mask.mean())
                out, spectrum = suppress_lines(out, mask), None
        y0, y1, x0, x1 = exposed(out)
        if (y0, y1, x0, x1) != (0, out.shape[0], 0, out.shape[1]):  # a black frame's edges are no detail
            spectrum = None
        field = out[y0:y1, x0:x1]
        detail = 1.0
        for _ in range(PASSES):
            if spectrum is None:
                spectrum = np.log(band_energies(field) + 1e-5)
            g = self.gains(spectrum)
            if g is None or np.all(g >= 1.0):
                break
            detail *= float(g.min())
            coarse, octave = bands(field)
            field = np.clip(coarse + sum(float(gk) * b for gk, b in zip(g, octave, strict=True)), 0.0, 1.0)
            field, spectrum = field.astype(np.float32), None
        if detail < 1.0:
            out = np.array(out, dtype=np.float32, copy=True)
            out[y0:y1, x0:x1] = field
        return Harmonised(out, detail, filled)

    def square(self, square01: np.ndarray, box: tuple[int, int, int, int],
               stats: FilmStats | None = None) -> tuple[np.ndarray, Harmonised]:
        """A letterboxed model input with its content ``box`` (x, y, w, h) harmonised, padding untouched (the
        input itself when nothing needed doing), and what was done (`stats`: see `film`)."""
        x, y, w, h = box
        film = content(square01, box)
        done = self.film(film, stats)
        if not done.changed:
            return square01, done
        out = np.array(square01, dtype=np.float32, copy=True)
        out[y : y + h, x : x + w] = done.film
        return out, done

    def summary(self) -> str:
        """What the harmoniser does, in a sentence for the model card dialog."""
        lines = (f"; thin lines and tubes at least {self.lines:g}× the abroad check's line threshold are filled in"
                 if self.lines is not None else "")
        return (f"before the network sees a film, a detail spectrum farther than squared distance {self.radius:g} "
                "from the training films' (edge enhancement, local contrast equalisation, noise) is turned down to "
                f"that distance{lines}. Most films change little; the film on screen and in exports never changes.")

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"method": METHOD, "radius": self.radius}
        if self.lines is not None:
            rec["lines"] = self.lines
        return rec

    @classmethod
    def of_card(cls, card: ModelCard) -> Harmoniser | None:
        """The card's harmoniser, or None when it does not harmonise (ValueError when its record is unusable)."""
        record = card.preprocessing.harmonise
        if record is None:
            return None
        return cls.from_records(dict(record), (card.gate or {}).get("abroad"))

    def model_input(self, x: np.ndarray, box: Letterbox,
                    stats: FilmStats | None = None) -> tuple[np.ndarray, Harmonised]:
        """A normalised (1, N, N) model input (`preprocess.preprocess`) harmonised, and what was done; the one
        step the engine, the trainer's evaluation and the battery share."""
        shown, done = self.square(x[0] * STD + MEAN, box.content, stats)
        return (normalize(shown)[None] if done.changed else x), done

    @classmethod
    def from_records(cls, harmonise: Any, abroad: Any) -> Harmoniser:
        """From the card's ``preprocessing["harmonise"]`` and ``gate["abroad"]`` (the reference it uses)."""
        if not isinstance(harmonise, dict) or harmonise.get("method") != METHOD:
            raise ValueError(f"unknown harmonisation {harmonise!r}")
        if abroad is None:
            raise ValueError("harmonisation needs the card's abroad statistics (gate.abroad)")
        radius = float(harmonise["radius"])
        lines = None if harmonise.get("lines") is None else float(harmonise["lines"])
        if not radius > 0 or (lines is not None and not lines > 0):
            raise ValueError("the harmonisation radius and line strength must be positive")
        return cls(AbroadGate.from_record(abroad), radius, lines)


def exposed(film: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the film less black frames (electronic shutters, collimation): edge rows and columns
    with fewer than `FRAME_EXPOSED` of their pixels above the abroad check's black level."""
    on = np.asarray(film) > BLACK
    rows, cols = np.flatnonzero(on.mean(axis=1) >= FRAME_EXPOSED), np.flatnonzero(on.mean(axis=0) >= FRAME_EXPOSED)
    h, w = on.shape
    if rows.size < h // 2 or cols.size < w // 2:  # mostly black: not a frame, leave it to the gate
        return 0, h, 0, w
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def line_mask(stats: FilmStats, gate: AbroadGate, strength: float) -> np.ndarray:
    """Pixels of the film's thin-line components (`FilmStats.line_image`) whose line score is at least `strength`
    times the gate's threshold (lines stronger than the training films'), widened to the line's walls."""
    extent, contrast = stats.line_stats[:, 0], stats.line_stats[:, 1]
    score = extent * contrast / gate.line_scale(stats) / gate.lines_threshold
    keep = np.flatnonzero((extent >= LINE_MIN_EXTENT) & (score >= strength))
    if keep.size == 0:
        return np.zeros(stats.line_image.shape, dtype=bool)
    k = 2 * LINE_STEP + 1
    return cv2.dilate(np.isin(stats.line_image, keep).astype(np.uint8), np.ones((k, k), np.uint8)) > 0


def suppress_lines(film: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The film with the masked pixels filled in from their surroundings (OpenCV's Telea inpainting)."""
    if not mask.any():
        return film
    u16 = np.rint(np.clip(film, 0.0, 1.0) * 65535.0).astype(np.uint16)  # Telea on float32 leaves speckles
    filled = cv2.inpaint(u16, mask.astype(np.uint8), 2 * LINE_STEP, cv2.INPAINT_TELEA)
    return (filled.astype(np.float32) / 65535.0).astype(np.float32)
