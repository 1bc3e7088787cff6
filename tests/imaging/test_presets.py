"""Named window/level presets derived from each real image's own values (both polarities)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.imaging import load_image, to_display
from cxrviewer.imaging.presets import FILE_DEFAULT, WindowPreset, window_presets

SIIM = "siim-acr_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
RG1 = "pydicom-data_RG1_J2KI.dcm"


def by_name(presets: list[WindowPreset]) -> dict[str, WindowPreset]:
    return {p.name: p for p in presets}


def dark_and_bright(image, preset: WindowPreset) -> tuple[float, float]:  # noqa: ANN001
    shown = to_display(image, preset)
    return float(np.mean(shown <= 5)), float(np.mean(shown >= 250))


@pytest.mark.parametrize("name", [SIIM, RG1, "udacity_nih_test2.dcm"])
def test_presets_do_what_their_names_say(shared_dicom: Path, name: str) -> None:
    image = load_image(shared_dicom / name)
    presets = by_name(window_presets(image))
    assert {"Lung", "Mediastinum", "Bone"} <= set(presets)
    lo, hi = float(image.pixels.min()), float(image.pixels.max())
    for p in presets.values():
        assert p.width > 0 and lo <= p.center <= hi, p
    lung_dark, lung_bright = dark_and_bright(image, presets["Lung"])
    med_dark, med_bright = dark_and_bright(image, presets["Mediastinum"])
    # the lung window keeps the lungs out of black and lets dense parts go white; the mediastinal one the reverse
    assert lung_dark < med_dark and lung_bright > med_bright
    assert presets["Bone"].width < presets["Mediastinum"].width  # higher contrast


def test_monochrome1_presets_are_mirrored(shared_dicom: Path) -> None:
    # RG1 is MONOCHROME1: low values are dense (bright), so the lung window sits at the high values
    rg1 = by_name(window_presets(load_image(shared_dicom / RG1)))
    siim = by_name(window_presets(load_image(shared_dicom / SIIM)))
    assert rg1["Lung"].center > rg1["Mediastinum"].center
    assert siim["Lung"].center < siim["Mediastinum"].center


def test_file_default_comes_first_when_the_file_has_a_window(shared_dicom: Path) -> None:
    rg1 = window_presets(load_image(shared_dicom / RG1))  # Window Center 15000, Width 30000
    assert rg1[0] == WindowPreset(15000.0, 30000.0, FILE_DEFAULT)
    assert [p.name for p in rg1] == [FILE_DEFAULT, "Lung", "Mediastinum", "Bone"]
    siim = window_presets(load_image(shared_dicom / SIIM))  # no window in the header
    assert [p.name for p in siim] == ["Lung", "Mediastinum", "Bone"]


def test_integer_images_get_whole_numbers(shared_dicom: Path) -> None:
    for p in window_presets(load_image(shared_dicom / RG1)):
        assert p.center == round(p.center) and p.width == round(p.width)


def test_flat_background_does_not_collapse_a_window(shared_dicom: Path) -> None:
    # the tibia film is mostly flat background: percentiles alone would give near-zero widths
    image = load_image(shared_dicom / "edge_cases" / "pydicom-data_RG3_J2KI_tibia.dcm")
    lo, hi = np.percentile(image.pixels, [0.5, 99.5])
    assert all(p.width >= 0.1 * (hi - lo) - 1 for p in window_presets(image))


def test_from_metadata_alone_uses_the_stored_range(shared_dicom: Path) -> None:
    meta = load_image(shared_dicom / RG1).meta  # 15 bits stored, MONOCHROME1, header window
    presets = window_presets(meta)
    assert presets[0] == WindowPreset(15000.0, 30000.0, FILE_DEFAULT)
    named = by_name(presets)
    assert all(0 <= p.center <= 2**15 - 1 for p in presets)
    assert named["Lung"].center > named["Mediastinum"].center  # mirrored like the pixels


def test_window_preset_is_frozen() -> None:
    preset = WindowPreset(40.0, 400.0, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset.center = 1.0  # type: ignore[misc]
