"""Distances and the cardiothoracic ratio in image pixels and millimetres (pure geometry; no Qt).

Which millimetres (DICOM PS3.3 C.8.11.4 / C.7.6.2):

* Pixel Spacing (0028,0030): the spacing in the patient (or a calibrated) plane: distances are shown as "mm".
* Imager Pixel Spacing (0018,1164) only: the spacing at the detector. Anatomy in a projection radiograph is
  magnified by source-to-detector / source-to-object distance (typically 5-15 % on a chest PA film, more on AP),
  so detector millimetres overstate the patient's sizes: shown as "mm at detector, not calibrated".
* Neither (raster files, most NIH DICOM wrappings): distances in image pixels, "px, no spacing".

Points are (x, y) in original image pixels (x = column, y = row); the spacing is (row, column) mm as DICOM
stores it, so an oblique distance is sqrt((dx * column_mm)^2 + (dy * row_mm)^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Point = tuple[float, float]


class Calibration(StrEnum):
    """What a distance's unit means."""

    PATIENT = "patient"  # Pixel Spacing
    DETECTOR = "detector"  # Imager Pixel Spacing only: not corrected for magnification
    NONE = "none"  # no spacing: image pixels

    @property
    def unit(self) -> str:
        return "px" if self is Calibration.NONE else "mm"

    @property
    def caveat(self) -> str:
        """The words after the unit ("" for calibrated millimetres)."""
        return {
            Calibration.PATIENT: "",
            Calibration.DETECTOR: "at detector, not calibrated",
            Calibration.NONE: "no spacing",
        }[self]


@dataclass(frozen=True)
class Spacing:
    """Millimetres per pixel along rows (y) and columns (x), and where they come from."""

    row_mm: float = 1.0
    column_mm: float = 1.0
    calibration: Calibration = Calibration.NONE

    @property
    def unit(self) -> str:
        return self.calibration.unit

    def describe(self) -> str:
        """E.g. "0.168 mm/px", "0.150 mm/px at detector, not calibrated", "no spacing"."""
        if self.calibration is Calibration.NONE:
            return "no spacing (distances in px)"
        size = f"{self.column_mm:.3f}" if self.row_mm == self.column_mm else f"{self.row_mm:.3f} × {self.column_mm:.3f}"
        tail = f" {self.calibration.caveat}" if self.calibration.caveat else ""
        return f"{size} mm/px{tail}"


NO_SPACING = Spacing()


def spacing_of(image_or_meta: Any) -> Spacing:
    """The `Spacing` of an `Image` or `ImageMeta` (pixels when it has none, or none that is usable)."""
    meta = getattr(image_or_meta, "meta", image_or_meta)
    values = getattr(meta, "pixel_spacing", None)
    if not values or len(values) < 2:
        return NO_SPACING
    row, column = float(values[0]), float(values[1])
    if not (math.isfinite(row) and math.isfinite(column) and row > 0 and column > 0):
        return NO_SPACING
    tag = getattr(meta, "pixel_spacing_tag", "") or "PixelSpacing"
    calibration = Calibration.DETECTOR if tag == "ImagerPixelSpacing" else Calibration.PATIENT
    return Spacing(row, column, calibration)


@dataclass(frozen=True)
class Distance:
    """One measured distance: `value` in `spacing.unit` (mm, or px without spacing)."""

    pixels: float
    value: float
    spacing: Spacing

    @property
    def unit(self) -> str:
        return self.spacing.unit

    @property
    def text(self) -> str:
        """E.g. "14.3 mm", "14.3 mm at detector, not calibrated", "100.0 px, no spacing"."""
        cal = self.spacing.calibration
        if cal is Calibration.NONE:
            return f"{self.value:.1f} px, no spacing"
        return f"{self.value:.1f} mm" + (f" {cal.caveat}" if cal.caveat else "")


def distance(p0: Point, p1: Point, spacing: Spacing = NO_SPACING) -> Distance:
    """The distance between two image points, in mm when `spacing` has them, else in pixels."""
    dx, dy = float(p1[0]) - float(p0[0]), float(p1[1]) - float(p0[1])
    pixels = math.hypot(dx, dy)
    if spacing.calibration is Calibration.NONE:
        return Distance(pixels, pixels, spacing)
    return Distance(pixels, math.hypot(dx * spacing.column_mm, dy * spacing.row_mm), spacing)


@dataclass(frozen=True)
class CardiothoracicRatio:
    """Cardiac width / thoracic width, each the length of the line the reader drew."""

    cardiac: Distance
    thoracic: Distance
    view_position: str = ""

    @property
    def ratio(self) -> float:
        return self.cardiac.value / self.thoracic.value if self.thoracic.value > 0 else math.nan

    @property
    def text(self) -> str:
        """E.g. "CTR 0.52 (cardiac 141.2 mm / thoracic 271.5 mm)"; AP films carry a warning."""
        unit = self.cardiac.unit
        widths = f"cardiac {self.cardiac.value:.1f} {unit} / thoracic {self.thoracic.value:.1f} {unit}"
        text = f"CTR {self.ratio:.2f} ({widths})"
        if self.view_position.upper() == "AP":
            text += ", AP film: the heart is magnified"
        return text


def cardiothoracic_ratio(
    cardiac: tuple[Point, Point], thoracic: tuple[Point, Point], spacing: Spacing = NO_SPACING, view_position: str = ""
) -> CardiothoracicRatio:
    """The CTR from the widest cardiac diameter and the widest inner thoracic diameter (two lines).

    The ratio has no unit, so it is the same with or without spacing (up to anisotropic pixels, which the
    millimetre lengths account for).
    """
    return CardiothoracicRatio(distance(*cardiac, spacing), distance(*thoracic, spacing), view_position)
