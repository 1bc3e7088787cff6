"""PNG/JPEG/TIFF files, 8- and 16-bit, gray and colour, intact and broken."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrviewer.imaging import ImageLoadError, default_window, load_image, model_input, to_display
from cxrviewer.imaging import raster as raster_module

NIH_PNG = "nih/images/00000001_000.png"
KERMANY_JPEG = "kermany/images/train_IM-0115-0001.jpeg"


def test_nih_png_8bit(shared_data: Path) -> None:
    path = shared_data / NIH_PNG
    image = load_image(path)
    reference = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image.pixels.dtype == np.uint8 and image.meta.source_format == "png"
    np.testing.assert_array_equal(image.pixels, reference)
    # 8-bit raster: model input is value / 255 (how the training PNGs are read), display unchanged.
    np.testing.assert_allclose(model_input(image), reference / 255.0, atol=1e-6)
    np.testing.assert_array_equal(to_display(image), reference)
    assert image.flags == [] and image.meta.notes == []


def test_kermany_rgb_jpeg_becomes_gray(shared_data: Path) -> None:
    image = load_image(shared_data / KERMANY_JPEG)
    assert image.pixels.ndim == 2 and image.pixels.shape == (224, 224)
    assert image.meta.source_format == "jpeg"
    assert any("grayscale" in note for note in image.meta.notes)


def test_colour_png_gets_colour_note(shared_data: Path, tmp_path: Path) -> None:
    gray = cv2.imread(str(shared_data / NIH_PNG), cv2.IMREAD_GRAYSCALE)
    colour = np.dstack([gray, np.zeros_like(gray), 255 - gray])
    path = tmp_path / "colour.png"
    cv2.imwrite(str(path), colour)
    image = load_image(path)
    assert image.pixels.shape == gray.shape
    assert "colour image converted to grayscale" in image.meta.notes


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_raster_full_range(shared_data: Path, tmp_path: Path, suffix: str) -> None:
    gray = cv2.imread(str(shared_data / NIH_PNG), cv2.IMREAD_GRAYSCALE).astype(np.uint16)
    deep = gray * 16 + 1000  # a 12-bit-like range inside 16-bit storage
    path = tmp_path / f"deep{suffix}"
    assert cv2.imwrite(str(path), deep)
    image = load_image(path)
    assert image.pixels.dtype == np.uint16 and image.meta.bits_stored == 16
    np.testing.assert_array_equal(image.pixels, deep)
    window = default_window(image)
    lo, hi = np.percentile(deep, [0.5, 99.5])
    assert window.center - window.width / 2 == pytest.approx(lo, abs=16)
    assert window.center + window.width / 2 == pytest.approx(hi, abs=16)
    unit = model_input(image)
    assert unit.min() == 0.0 and unit.max() == 1.0
    # Same picture as the 8-bit source, up to the contrast stretch.
    assert np.corrcoef(unit.ravel(), gray.ravel())[0, 1] > 0.99


def test_truncated_and_fake_files(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / NIH_PNG).read_bytes()
    cut_png = tmp_path / "cut.png"
    cut_png.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(cut_png)
    jpeg = (shared_data / KERMANY_JPEG).read_bytes()
    cut_jpeg = tmp_path / "cut.jpg"
    cut_jpeg.write_bytes(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(cut_jpeg)
    fake = tmp_path / "fake.png"
    fake.write_text("hello")
    with pytest.raises(ImageLoadError, match="not a DICOM file or a supported image"):
        load_image(fake)
    header_only = tmp_path / "header_only.png"
    header_only.write_bytes(data[:40])
    with pytest.raises(ImageLoadError) as info:
        load_image(header_only)
    assert info.value.path == str(header_only)


def test_too_large_raster_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "wide.png"
    cv2.imwrite(str(path), np.zeros((4, 9000), dtype=np.uint8))
    monkeypatch.setattr(raster_module.cv2, "imdecode", lambda *a: pytest.fail("decoded a refused image"))
    with pytest.raises(ImageLoadError, match="too large"):
        load_image(path)
