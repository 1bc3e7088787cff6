"""The shared real chest DICOMs: decoding, metadata, flags; and plain messages for broken DICOM files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from cxrviewer.imaging import Flag, ImageLoadError, load_image, to_display
from cxrviewer.imaging import dicom as dicom_module

EXPECTED_FLAGS = {
    "pydicom-data_RG1_J2KI.dcm": set(),
    "siim-acr_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm": set(),
    "udacity_nih_test1.dcm": set(),
    "udacity_nih_test2.dcm": set(),
    "udacity_nih_test3.dcm": set(),
    "edge_cases/udacity_nih_test4.dcm": {Flag.BODY_PART},  # RIBCAGE
    "edge_cases/udacity_nih_test5.dcm": {Flag.MODALITY},  # CT
    "edge_cases/udacity_nih_test6.dcm": {Flag.CONTRADICTORY},  # Patient Position XX
    "edge_cases/pydicom-data_RG3_J2KI_tibia.dcm": {Flag.BODY_PART},  # EXTREMITY
}


def test_every_shared_dicom_is_listed(shared_dicom: Path) -> None:
    found = {str(p.relative_to(shared_dicom)) for p in shared_dicom.rglob("*.dcm")}
    assert found == set(EXPECTED_FLAGS)


@pytest.mark.parametrize("name", sorted(EXPECTED_FLAGS))
def test_shared_dicom_loads_with_right_flags(shared_dicom: Path, name: str) -> None:
    image = load_image(shared_dicom / name)
    ds = pydicom.dcmread(shared_dicom / name, stop_before_pixels=True)
    assert (image.height, image.width) == (ds.Rows, ds.Columns)
    assert {f.kind for f in image.flags} == EXPECTED_FLAGS[name]
    assert all(f.message for f in image.flags)
    assert float(image.pixels.std()) > 10, "decoded pixels must show an image, not a flat field"
    assert image.meta.study_uid == ds.StudyInstanceUID and image.meta.sop_uid == ds.SOPInstanceUID
    assert image.meta.modality == ds.Modality


def test_view_position_from_patient_position(shared_dicom: Path) -> None:
    # The Udacity files keep PA/AP in Patient Position, not View Position.
    assert load_image(shared_dicom / "udacity_nih_test1.dcm").meta.view_position == "PA"
    ap = load_image(shared_dicom / "udacity_nih_test2.dcm")
    assert ap.meta.view_position == "AP" and ap.view == "frontal"
    assert load_image(shared_dicom / "edge_cases/udacity_nih_test6.dcm").view == "unknown"


def test_jpeg_baseline_and_jpeg2000_metadata(shared_dicom: Path) -> None:
    siim = load_image(shared_dicom / "siim-acr_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")
    assert siim.pixels.dtype == np.uint8 and siim.pixels.shape == (1024, 1024)
    assert siim.meta.pixel_spacing == pytest.approx((0.168, 0.168))
    assert siim.meta.view_position == "PA" and siim.meta.body_part == "CHEST"
    rg1 = load_image(shared_dicom / "pydicom-data_RG1_J2KI.dcm")
    assert rg1.meta.photometric == "MONOCHROME1" and rg1.meta.bits_stored == 15
    assert rg1.meta.pixel_spacing is None  # the header says 0\0: unknown, not zero
    assert [(w.center, w.width) for w in rg1.meta.window_presets] == [(15000.0, 30000.0)]
    assert int(rg1.pixels.max()) < 2**15


def test_contradicting_view_and_lateral_flags(shared_dicom: Path, dicom_variant) -> None:
    src = shared_dicom / "udacity_nih_test1.dcm"  # Patient Position PA
    clash = load_image(dicom_variant(src, ViewPosition="AP"))
    assert {f.kind for f in clash.flags} == {Flag.CONTRADICTORY}
    lateral = load_image(dicom_variant(src, ViewPosition="LL", PatientPosition=None))
    assert {f.kind for f in lateral.flags} == {Flag.LATERAL}
    assert lateral.view == "lateral"
    no_body_part = load_image(dicom_variant(src, BodyPartExamined=None))
    assert no_body_part.flags == []
    thorax = load_image(dicom_variant(src, BodyPartExamined="THORAX"))
    assert thorax.flags == []


def test_multiframe_shows_first_frame(pydicom_data: Path) -> None:
    path = pydicom_data / "emri_small.dcm"  # 10 frames
    image = load_image(path)
    np.testing.assert_array_equal(image.pixels, pydicom.dcmread(path).pixel_array[0])
    assert any("frame 1 of 10" in note for note in image.meta.notes)


def test_colour_dicom_becomes_gray_with_note(pydicom_data: Path) -> None:
    image = load_image(pydicom_data / "US1_UNCR.dcm")
    assert image.pixels.ndim == 2
    assert any("grayscale" in note for note in image.meta.notes)
    assert to_display(image).shape == (480, 640)


def test_jpeg_ls_without_decoder_says_so(pydicom_data: Path, monkeypatch) -> None:
    class Unavailable:
        is_available = False

    monkeypatch.setattr(dicom_module, "get_decoder", lambda uid: Unavailable())
    with pytest.raises(ImageLoadError, match="JPEG-LS compressed DICOM: decoder not installed"):
        load_image(pydicom_data / "emri_small_jpeg_ls_lossless.dcm")


def test_installed_decoders_cover_radiograph_syntaxes(pydicom_data: Path, shared_dicom: Path) -> None:
    # JPEG 2000 (pylibjpeg-openjpeg / gdcm), JPEG Baseline (gdcm), JPEG Lossless, JPEG-LS, RLE really decode.
    for path in (
        pydicom_data / "RG1_J2KI.dcm",
        shared_dicom / "siim-acr_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
        pydicom_data / "JPEG-LL.dcm",
        pydicom_data / "emri_small_jpeg_ls_lossless.dcm",
        pydicom_data / "emri_small_RLE.dcm",
    ):
        assert load_image(path).pixels.std() > 0, path.name


def _message(path: Path) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert str(info.value).startswith(path.name + ": ")
    return info.value.reason


def test_plain_messages_for_broken_files(tmp_path: Path, pydicom_data: Path, dicom_variant) -> None:
    text = tmp_path / "notes.dcm"
    text.write_text("not an image at all\n" * 20)
    assert _message(text) == "not a DICOM file"
    assert _message(tmp_path / "missing.dcm") == "file not found"
    assert "folder" in _message(tmp_path)

    src = pydicom_data / "RG1_UNCR.dcm"
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    assert _message(cut) == "truncated pixel data"

    assert _message(dicom_variant(src, PixelData=None)) == "no pixel data"


def test_too_large_is_refused_before_decoding(pydicom_data: Path, dicom_variant, monkeypatch) -> None:
    big = dicom_variant(pydicom_data / "RG1_J2KI.dcm", Rows=9000)
    monkeypatch.setattr(dicom_module, "pixel_array", lambda *a, **k: pytest.fail("decoded a refused image"))
    assert "too large" in _message(big) and "8192" in _message(big)
