"""Thorax crop preprocessing: the model sees the lung fields' box, maps and peaks come back to original pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrviewer.imaging import load_image, model_input
from cxrviewer.imaging.anatomy import find_lung_fields
from cxrviewer.model.cam import cam_to_original
from cxrviewer.model.inference import Engine
from cxrviewer.model.preprocess import OUTSIDE, Letterbox, letterbox, preprocess, preprocessing_record

from .conftest import brightness_network, write_bundle
from .test_cam import gaussian_blob


@pytest.fixture(scope="module")
def film(shared_data: Path) -> np.ndarray:
    """A real NIH film (256 px) whose lungs the localiser finds."""
    return model_input(load_image(shared_data / "nih" / "images" / "00000001_000.png"))


@pytest.fixture(scope="module")
def crop_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    folder = tmp_path_factory.mktemp("crop_model")
    card = write_bundle(brightness_network(), folder, 256, ["Lung Lesion", "Pneumothorax"],
                        {"Lung Lesion": 0.0, "Pneumothorax": 1.0},
                        preprocessing=preprocessing_record(256, "thorax"))
    return Engine.from_card(card)


def test_crop_letterbox_round_trips_and_maps_only_its_region() -> None:
    box = Letterbox.fit(1000, 800, 256, (100, 50, 600, 700))
    assert box.cropped and box.region == (100, 50, 600, 700)
    assert box.content == (18, 0, 219, 256)  # 600 x 700 region, aspect kept inside 256
    for x, y in [(100.0, 50.0), (400.0, 400.0), (699.0, 749.0)]:
        assert box.to_original(*box.to_model(x, y)) == pytest.approx((x, y), abs=1e-9)
    grid = np.zeros((8, 8), np.float32)
    full = box.map_to_original(grid)
    assert full.shape == (800, 1000)
    assert np.all(full[50:750, 100:700] == 0.0)
    assert np.all(full[:50] == OUTSIDE) and np.all(full[:, 700:] == OUTSIDE)
    heat = cam_to_original(grid, box)
    assert heat[400, 400] == pytest.approx(0.5) and heat[10, 10] == 0.0  # no heat where the model did not look
    # A display copy at half size keeps the same region.
    half = box.resized(500, 400)
    assert half.region == (50, 25, 300, 350) and half.scale == pytest.approx(2 * box.scale)
    assert Letterbox.fit(300, 200, 64, (0, 0, 300, 200)) == Letterbox.fit(300, 200, 64)  # whole image: uncropped


def test_thorax_crop_letterboxes_the_localisers_box(film: np.ndarray) -> None:
    fields = find_lung_fields(film)
    assert fields.found
    x0, y0, x1, y1 = fields.box
    x, box = preprocess(film, 128, "thorax")
    assert box.region == (x0, y0, x1 - x0, y1 - y0)
    expected, _ = letterbox(film[y0:y1, x0:x1], 128)
    assert np.allclose(x[0], (expected - 0.5) / 0.25)
    whole, plain = preprocess(film, 128)
    assert not plain.cropped and not np.allclose(whole, x)
    with pytest.raises(ValueError, match="unknown crop mode"):
        preprocess(film, 128, "lungs")


def test_blank_image_falls_back_to_the_whole_image() -> None:
    _, box = preprocess(np.full((300, 200), 0.5, np.float32), 64, "thorax")
    assert not box.cropped


def test_engine_with_a_thorax_card_points_into_original_pixels(crop_engine: Engine, film: np.ndarray) -> None:
    assert crop_engine.crop == "thorax"
    x0, y0, x1, y1 = find_lung_fields(film).box
    cx, cy = x0 + 0.3 * (x1 - x0), y0 + 0.45 * (y1 - y0)  # in the right lung (image left)
    image = np.clip(0.5 * film + gaussian_blob(256, 256, cx, cy, 9.0), 0, 1)
    pred = crop_engine.predict_array(image)
    assert pred.letterbox.cropped
    found = pred.finding("Lung Lesion")
    assert found is not None and found.cam_peak is not None
    assert np.hypot(found.cam_peak[0] - cx, found.cam_peak[1] - cy) < 20  # under one CAM cell of the crop
    heat = pred.cam("Lung Lesion")
    assert heat is not None and heat.shape == (256, 256)
    rx, ry, rw, rh = pred.letterbox.region
    outside = np.ones((256, 256), bool)
    outside[ry:ry + rh, rx:rx + rw] = False
    assert outside.any() and np.all(heat[outside] == 0.0)


def test_cards_say_which_crop_and_refuse_unknown_ones(tmp_path: Path) -> None:
    assert "crop" not in preprocessing_record(256)  # cards of whole-image models are unchanged
    card = write_bundle(brightness_network(), tmp_path, 256, ["Lung Lesion", "Pneumothorax"],
                        {"Lung Lesion": 0.0, "Pneumothorax": 1.0},
                        preprocessing={**preprocessing_record(256), "crop": "heart"})
    from cxrviewer.model.weights import ModelError
    with pytest.raises(ModelError, match="crop 'heart'"):
        Engine.from_card(card)


def test_one_lung_search_serves_the_crop_and_the_outline(crop_engine: Engine, film: np.ndarray,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrviewer.model import inference
    from cxrviewer.model import preprocess as preprocessing

    calls = []

    def counted(image01: np.ndarray):  # noqa: ANN202
        calls.append(image01.shape)
        return find_lung_fields(image01)

    monkeypatch.setattr(inference, "find_lung_fields", counted)
    monkeypatch.setattr(preprocessing, "find_lung_fields", counted)
    monkeypatch.setattr(crop_engine, "lung_outline", True)
    pred = crop_engine.predict_array(film)
    assert len(calls) == 1 and pred.lung_outline and pred.letterbox.cropped
    assert pred.letterbox.region == _region(film)


def _region(film: np.ndarray) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = find_lung_fields(film).box
    return x0, y0, x1 - x0, y1 - y0
