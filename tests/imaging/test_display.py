"""Golden tests of decoding and the display pipeline on real radiographs (pydicom-data NEMA WG04 set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_voi_lut

from cxrviewer.imaging import WindowPreset, default_window, load_image, model_input, pixel_value, to_display

# RG1: real CR chest PA, 1841 x 1955, 15-bit, MONOCHROME1, header window 15000/30000.
OUTSIDE_BODY = (slice(60, 200), slice(1650, 1800))  # above the right shoulder (viewer's right), air
MEDIASTINUM = (slice(800, 1100), slice(800, 950))
LUNG = (slice(500, 700), slice(400, 550))


def _mean(arr: np.ndarray, region: tuple[slice, slice]) -> float:
    return float(arr[region].mean())


@pytest.mark.parametrize(("lossless", "reference"), [("RG1_J2KR", "RG1_UNCR"), ("RG3_J2KR", "RG3_UNCR")])
def test_lossless_jpeg2000_decodes_identical_to_uncompressed(pydicom_data: Path, lossless, reference) -> None:
    a = load_image(pydicom_data / f"{lossless}.dcm")
    b = load_image(pydicom_data / f"{reference}.dcm")
    assert a.pixels.dtype == b.pixels.dtype
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_lossy_jpeg2000_is_close_to_uncompressed(pydicom_data: Path) -> None:
    lossy = load_image(pydicom_data / "RG1_J2KI.dcm").pixels.astype(np.float64)
    ref = load_image(pydicom_data / "RG1_UNCR.dcm").pixels.astype(np.float64)
    assert not np.array_equal(lossy, ref)
    assert np.corrcoef(lossy.ravel(), ref.ravel())[0, 1] > 0.99


def test_monochrome1_displays_air_dark(pydicom_data: Path) -> None:
    image = load_image(pydicom_data / "RG1_UNCR.dcm")
    assert image.meta.photometric == "MONOCHROME1"
    # In the stored values air is bright (MONOCHROME1) ...
    assert _mean(image.pixels, OUTSIDE_BODY) > _mean(image.pixels, MEDIASTINUM)
    # ... on screen and for the model it must be dark.
    for shown in (to_display(image), model_input(image)):
        assert _mean(shown, OUTSIDE_BODY) < _mean(shown, LUNG) < _mean(shown, MEDIASTINUM)
    # The user's invert toggle goes on top.
    flipped = to_display(image, invert=True)
    assert _mean(flipped, OUTSIDE_BODY) > _mean(flipped, MEDIASTINUM)
    np.testing.assert_array_equal(flipped, 255 - to_display(image))


def test_monochrome1_with_presentation_inverse_is_inverted_once(pydicom_data: Path, dicom_variant) -> None:
    src = pydicom_data / "RG1_UNCR.dcm"
    plain = to_display(load_image(src))
    both = load_image(dicom_variant(src, PresentationLUTShape="INVERSE"))
    np.testing.assert_array_equal(to_display(both), plain)
    assert _mean(to_display(both), OUTSIDE_BODY) < _mean(to_display(both), MEDIASTINUM)
    # The same pixels declared MONOCHROME2 are not inverted, so they come out as the exact negative.
    mono2 = load_image(dicom_variant(src, PhotometricInterpretation="MONOCHROME2"))
    np.testing.assert_array_equal(to_display(mono2), 255 - plain)


def test_header_window_is_honoured(shared_dicom: Path, dicom_variant) -> None:
    src = shared_dicom / "udacity_nih_test1.dcm"  # 8-bit MONOCHROME2, no window in the header
    image = load_image(dicom_variant(src, WindowCenter=100, WindowWidth=51))
    assert default_window(image) == WindowPreset(100.0, 51.0, "")
    shown = to_display(image).astype(int)
    px = image.pixels.astype(int)
    # LINEAR (PS3.3 C.11.2.1.2.1): <= c - 0.5 - (w-1)/2 black, > c - 0.5 + (w-1)/2 white, linear between.
    assert (shown[px <= 74] == 0).all()
    assert (shown[px > 124] == 255).all()
    expected = np.rint(((px - 99.5) / 50 + 0.5) * 255)
    between = (px > 74) & (px <= 124)
    assert between.any()
    np.testing.assert_array_equal(shown[between], expected[between])


def test_header_sigmoid_window(shared_dicom: Path, dicom_variant) -> None:
    src = shared_dicom / "udacity_nih_test1.dcm"
    image = load_image(dicom_variant(src, WindowCenter=100, WindowWidth=40, VOILUTFunction="SIGMOID"))
    shown = to_display(image).astype(float)
    px = image.pixels.astype(float)
    expected = np.rint(255 / (1 + np.exp(-4 * (px - 100) / 40)))
    np.testing.assert_allclose(shown, expected, atol=1)


def test_voi_lut_sequence_is_used(pydicom_data: Path) -> None:
    path = pydicom_data / "vlut_04.dcm"
    image = load_image(path)
    ds = pydicom.dcmread(path)
    reference = apply_voi_lut(ds.pixel_array, ds).astype(np.float64)
    lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64)
    expected = np.rint((reference - lut.min()) / (lut.max() - lut.min()) * 255)
    np.testing.assert_array_equal(to_display(image), expected.astype(np.uint8))


def test_user_window_replaces_header_voi_but_keeps_polarity(pydicom_data: Path) -> None:
    image = load_image(pydicom_data / "RG1_UNCR.dcm")
    lung_level = float(np.median(image.pixels[LUNG]))
    narrow = WindowPreset(center=lung_level, width=2000)
    shown = to_display(image, window=narrow)
    assert not np.array_equal(shown, to_display(image))
    # MONOCHROME1: values above the window (air/lung side in stored units) are black, below are white.
    px = image.pixels
    assert (shown[px > lung_level + 1000] == 0).all()
    assert (shown[px < lung_level - 1001] == 255).all()
    # The model input never follows the user's window.
    np.testing.assert_array_equal(model_input(image), model_input(load_image(pydicom_data / "RG1_UNCR.dcm")))


def test_no_voi_uses_robust_percentile_window(pydicom_data: Path) -> None:
    image = load_image(pydicom_data / "JPEG2000_UNC.dcm")  # NM, 16-bit, no window, no VOI LUT
    window = default_window(image)
    lo, hi = np.percentile(image.pixels, [0.5, 99.5])
    assert window.center - window.width / 2 == pytest.approx(lo, abs=2)
    assert window.center + window.width / 2 == pytest.approx(hi, abs=2)
    shown = to_display(image)
    assert (shown[image.pixels <= lo] == 0).all() and (shown[image.pixels >= hi] == 255).all()


def test_modality_lut_rescale_gives_modality_units(pydicom_data: Path) -> None:
    path = pydicom_data / "MR2_UNCR.dcm"  # Rescale Slope 3.77
    ds = pydicom.dcmread(path)
    image = load_image(path)
    np.testing.assert_allclose(
        image.pixels, ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept), rtol=1e-6
    )


def test_eight_bit_dicom_model_input_is_value_over_255(shared_dicom: Path) -> None:
    image = load_image(shared_dicom / "udacity_nih_test2.dcm")
    assert image.pixels.dtype == np.uint8
    np.testing.assert_allclose(model_input(image), image.pixels / 255.0, atol=1e-6)


def test_pixel_value(pydicom_data: Path) -> None:
    image = load_image(pydicom_data / "RG1_UNCR.dcm")
    assert pixel_value(image, 10, 20) == float(image.pixels[20, 10])
    assert pixel_value(image, image.width, 0) is None
    assert pixel_value(image, -1, 0) is None


def test_voi_lut_stored_as_ow_bytes(pydicom_data: Path, tmp_path: Path) -> None:
    src = pydicom_data / "vlut_04.dcm"
    ds = pydicom.dcmread(src)
    item = ds.VOILUTSequence[0]
    packed = np.asarray(item.LUTData, dtype="<u2").tobytes()
    item["LUTData"].VR = "OW"
    item.LUTData = packed
    ds.save_as(tmp_path / "ow.dcm")
    image = load_image(tmp_path / "ow.dcm")
    assert image.meta.notes == []  # the LUT was used, not dropped
    np.testing.assert_array_equal(to_display(image), to_display(load_image(src)))
