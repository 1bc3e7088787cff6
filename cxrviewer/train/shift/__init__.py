"""Site-shift transforms: what a new hospital does to a film, applied before the one shared preprocessing.

Every transform is named, has a group and a severity (1.0 = the level the battery uses), is deterministic
for a seed (its generator is seeded by the seed and the transform's name) and works on the film in display
units (`film.film_of`: float32 [0, 1], air dark, bone and metal bright, whatever the file's polarity).
`shift_image` applies one to an `Image` and gives back an `Image` in the file's own units and polarity.

Groups: "acquisition" (portable AP look), "processing" (another detector pipeline), "overlay" (burned-in
text and markers, black frames) and "device" (hardware painted on the film, findings unchanged; "icu_devices"
is ECG leads + central line + tubes together, each drawn exactly as alone for the same seed).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cxrviewer.imaging.image import Image
from cxrviewer.train.shift import devices, overlay, processing
from cxrviewer.train.shift.acquisition import portable_ap
from cxrviewer.train.shift.film import film_of, with_film
from cxrviewer.train.shift.paint import Frame

__all__ = ["SHIFTS", "Shift", "Shifted", "apply_shift", "film_of", "parse_shifts", "shift_image", "with_film"]

GROUPS = ("acquisition", "processing", "overlay", "device")

Generator = np.random.Generator
Plain = Callable[[np.ndarray, Generator, float], np.ndarray]
Masked = Callable[[np.ndarray, Generator, float], tuple[np.ndarray, np.ndarray]]
Device = Callable[[np.ndarray, Generator, float, Frame], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Shifted:
    """A transformed film; `mask` is True where pixels may differ from the input (None: anywhere)."""

    film: np.ndarray
    mask: np.ndarray | None


@dataclass(frozen=True)
class Shift:
    """One named transform."""

    name: str
    group: str
    description: str
    plain: Plain | None = None
    masked: Masked | None = None
    parts: tuple[tuple[str, Device], ...] = ()  # device painters, applied in order on one frame

    def __call__(self, film: np.ndarray, seed: int = 0, severity: float = 1.0) -> Shifted:
        x = np.asarray(film, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"{self.name}: expected a 2-D film, got shape {x.shape}")
        if self.plain is not None:
            return Shifted(_clip(self.plain(x, _rng(seed, self.name), severity)), None)
        if self.masked is not None:
            out, alpha = self.masked(x, _rng(seed, self.name), severity)
            return Shifted(_clip(out), alpha > 0)
        frame = Frame.of(x)
        mask = np.zeros(x.shape, dtype=bool)
        for part, paint in self.parts:
            x, alpha = paint(x, _rng(seed, part), severity, frame)
            mask |= alpha > 0
        return Shifted(_clip(x), mask)


def _rng(seed: int, name: str) -> Generator:
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("ascii"))])


def _clip(film: np.ndarray) -> np.ndarray:
    return np.clip(film, 0.0, 1.0).astype(np.float32)


def _device(name: str, description: str, *parts: str) -> Shift:
    painters = {"ecg_leads": devices.ecg_leads, "central_line": devices.central_line, "tubes": devices.tubes,
                "clips": devices.clips, "chest_drain": devices.chest_drain}
    return Shift(name, "device", description, parts=tuple((p, painters[p]) for p in parts or (name,)))


SHIFTS: dict[str, Shift] = {s.name: s for s in (
    Shift("portable_ap", "acquisition", "AP-supine look: scapulae over the apices, tighter collimation (zoom "
          "1.12), rotation 2-5 degrees", plain=portable_ap),
    Shift("gamma", "processing", "tone curve x ** 1.6 or x ** (1 / 1.6)", plain=processing.gamma),
    Shift("unsharp", "processing", "unsharp-mask edge enhancement (sigma 2 % of the side, amount 1.2)",
          plain=processing.unsharp),
    Shift("clahe", "processing", "CLAHE, 8 x 8 tiles, clip limit 3", plain=processing.clahe),
    Shift("noise", "processing", "Gaussian noise, std 0.02", plain=processing.noise),
    Shift("blur", "processing", "Gaussian blur, sigma 0.6 % of the side", plain=processing.blur),
    Shift("lowres", "processing", "resolution loss: down-sampled 2.5x and back up", plain=processing.lowres),
    Shift("jpeg", "processing", "JPEG re-compression at quality 25", plain=processing.jpeg),
    Shift("text", "overlay", "burned-in PORTABLE / AP SUPINE text and an L/R marker", masked=overlay.text_markers),
    Shift("border", "overlay", "black frame, 4-10 % of each side", masked=overlay.border),
    _device("ecg_leads", "3-5 ECG electrodes with wires"),
    _device("central_line", "jugular or subclavian central venous catheter, tip in the SVC"),
    _device("tubes", "endotracheal tube and nasogastric tube"),
    _device("clips", "3-8 surgical clips"),
    _device("chest_drain", "chest drain from the lateral wall toward the apex (the known NIH shortcut)"),
    _device("icu_devices", "ECG leads + central line + tubes together", "ecg_leads", "central_line", "tubes"),
)}


def parse_shifts(text: str) -> list[str]:
    """`NAME[,NAME...]` or `all` -> transform names; ValueError naming the unknown ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(SHIFTS)
    unknown = [n for n in names if n not in SHIFTS]
    if unknown or not names:
        raise ValueError(f"unknown site-shift transform(s) {', '.join(unknown) or '(none given)'}; "
                         f"known: {', '.join(SHIFTS)}")
    return names


def apply_shift(film: np.ndarray, name: str, seed: int = 0, severity: float = 1.0) -> Shifted:
    """Apply the transform `name` to a film (float32 [0, 1], air dark)."""
    if name not in SHIFTS:
        parse_shifts(name)  # raises with the list of known names
    return SHIFTS[name](film, seed, severity)


def shift_image(image: Image, name: str, seed: int = 0, severity: float = 1.0) -> Image:
    """A copy of `image` with the transform applied to its pixels (file units, dtype and polarity kept)."""
    return with_film(image, apply_shift(film_of(image), name, seed, severity).film)
