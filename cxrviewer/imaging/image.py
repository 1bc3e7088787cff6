"""The `Image` type every loader returns: pixels in modality units plus the metadata the app needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np


class Flag(StrEnum):
    """Reasons the model should not be trusted on an input (these are warnings, not errors)."""

    MODALITY = "modality"  # modality not CR/DX
    BODY_PART = "body_part"  # body part not chest
    LATERAL = "lateral"  # lateral view
    CONTRADICTORY = "contradictory"  # tags contradict each other (e.g. unknown patient position)


@dataclass(frozen=True)
class ImageFlag:
    """One flag with a sentence a user can read."""

    kind: Flag
    message: str


@dataclass(frozen=True)
class WindowPreset:
    """A window (VOI) preset in modality units."""

    center: float
    width: float
    name: str = ""


@dataclass
class ImageMeta:
    """Metadata of one image. Patient fields are identifiers: never log them."""

    source_format: str  # "dicom", "png", "jpeg", "tiff", ...
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    accession_number: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    sop_class_uid: str = ""
    study_date: str = ""
    study_description: str = ""
    modality: str = ""
    body_part: str = ""
    view_position: str = ""  # "PA", "AP", "LL", "LATERAL", ... as in the header
    laterality: str = ""
    photometric: str = "MONOCHROME2"
    pixel_spacing: tuple[float, float] | None = None  # (row, column) mm
    pixel_spacing_tag: str = ""  # where pixel_spacing came from: "PixelSpacing" or "ImagerPixelSpacing"
    bits_stored: int = 8
    window_presets: list[WindowPreset] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. "multi-frame: showing frame 1 of 3"


@dataclass
class Image:
    """One 2-D grayscale image.

    `pixels` holds modality units (after the modality LUT for DICOM; raw values for raster files).
    `display_lut` maps modality units to [0, 1] display values with polarity applied (air dark); it is
    set by the loader from the file's own VOI/presentation information.
    """

    path: Path
    pixels: np.ndarray
    meta: ImageMeta
    flags: list[ImageFlag] = field(default_factory=list)
    display_lut: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def view(self) -> str:
        """Coarse view: "frontal", "lateral" or "unknown"."""
        vp = self.meta.view_position.upper()
        if vp in {"PA", "AP"}:
            return "frontal"
        if vp in {"LL", "RL", "LAT", "LATERAL", "RLD", "LLD"}:
            return "lateral"
        return "unknown"
