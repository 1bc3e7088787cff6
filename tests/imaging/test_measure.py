"""Distances in mm from the real DICOMs' spacing, with the calibration caveat; the cardiothoracic ratio."""

from __future__ import annotations

import math
from pathlib import Path

import pydicom
import pytest

from cxrviewer.imaging import load_image
from cxrviewer.imaging.header import meta_from_dataset
from cxrviewer.imaging.measure import (
    NO_SPACING,
    Calibration,
    Spacing,
    cardiothoracic_ratio,
    distance,
    spacing_of,
)

SIIM = "siim-acr_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"


def test_pixel_spacing_gives_calibrated_mm(shared_dicom: Path) -> None:
    image = load_image(shared_dicom / SIIM)  # Pixel Spacing 0.168 \ 0.168
    spacing = spacing_of(image)
    assert spacing == Spacing(0.168, 0.168, Calibration.PATIENT)
    assert spacing_of(image.meta) == spacing
    d = distance((10, 20), (110, 20), spacing)
    assert d.pixels == pytest.approx(100) and d.value == pytest.approx(16.8)
    assert d.unit == "mm" and d.text == "16.8 mm"
    assert spacing.describe() == "0.168 mm/px"


def test_imager_pixel_spacing_is_detector_mm_with_caveat(shared_dicom: Path, dicom_variant) -> None:  # noqa: ANN001
    # a real DX file given only Imager Pixel Spacing, as most DX detectors write it
    path = dicom_variant(shared_dicom / "udacity_nih_test1.dcm", ImagerPixelSpacing=[0.143, 0.143])
    image = load_image(path)
    assert image.meta.pixel_spacing_tag == "ImagerPixelSpacing"
    spacing = spacing_of(image)
    assert spacing.calibration is Calibration.DETECTOR
    d = distance((0, 0), (100, 0), spacing)
    assert d.value == pytest.approx(14.3)
    assert d.text == "14.3 mm at detector, not calibrated"
    assert "not calibrated" in spacing.describe()


def test_pixel_spacing_wins_over_imager_pixel_spacing(shared_dicom: Path, dicom_variant) -> None:  # noqa: ANN001
    path = dicom_variant(shared_dicom / SIIM, ImagerPixelSpacing=[0.2, 0.2])
    spacing = spacing_of(load_image(path))
    assert (spacing.row_mm, spacing.calibration) == (0.168, Calibration.PATIENT)


def test_no_usable_spacing_measures_pixels(shared_dicom: Path, shared_data: Path) -> None:
    # RG1 says Pixel Spacing 0 \ 0 (unknown), the Udacity DX files have none, NIH PNGs never do
    rg1 = meta_from_dataset(pydicom.dcmread(shared_dicom / "pydicom-data_RG1_J2KI.dcm", stop_before_pixels=True))
    udacity = load_image(shared_dicom / "udacity_nih_test2.dcm")
    png = load_image(next(iter(sorted((shared_data / "nih" / "demo").glob("*.png")))))
    for source in (rg1, udacity, png):
        assert spacing_of(source) is NO_SPACING
    d = distance((0, 0), (60, 80), spacing_of(udacity))
    assert d.value == pytest.approx(100) and d.text == "100.0 px, no spacing"


def test_anisotropic_spacing_uses_rows_and_columns() -> None:
    spacing = Spacing(row_mm=0.2, column_mm=0.1, calibration=Calibration.PATIENT)
    # dx = 3 columns (0.3 mm), dy = 4 rows (0.8 mm)
    assert distance((0, 0), (3, 4), spacing).value == pytest.approx(math.hypot(0.3, 0.8))


def test_cardiothoracic_ratio_on_real_spacing(shared_dicom: Path) -> None:
    spacing = spacing_of(load_image(shared_dicom / SIIM))
    ctr = cardiothoracic_ratio(((300, 600), (620, 600)), ((150, 650), (790, 650)), spacing, "PA")
    assert ctr.ratio == pytest.approx(0.5)
    assert ctr.cardiac.value == pytest.approx(320 * 0.168)
    assert ctr.text == "CTR 0.50 (cardiac 53.8 mm / thoracic 107.5 mm)"
    ap = cardiothoracic_ratio(((0, 0), (55, 0)), ((0, 0), (100, 0)), NO_SPACING, "AP")
    assert ap.text.startswith("CTR 0.55 (cardiac 55.0 px / thoracic 100.0 px)") and "AP film" in ap.text
