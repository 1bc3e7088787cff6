"""CAM geometry and colour scale: peaks land where the evidence is, in original pixel coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrviewer.imaging import load_image, model_input
from cxrviewer.model.cam import cam_peak, cam_to_original, grid_peak, local_probability
from cxrviewer.model.inference import Engine
from cxrviewer.model.preprocess import Letterbox

SIZE = 256  # brightness model input; its CAM grid is 8 x 8 (32 model pixels per cell)
TOLERANCE = 14.0  # model pixels (0.44 of a CAM cell)


def gaussian_blob(width: int, height: int, cx: float, cy: float, sigma: float) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)).astype(np.float32)


@pytest.fixture(scope="module")
def engine(brightness_card: Path) -> Engine:
    return Engine.from_card(brightness_card)


def test_fixed_scale_is_sigmoid_not_min_max() -> None:
    # A map at a constant 2 % logit stays cold everywhere; a per-image stretch would make it glow.
    logit_2pct = np.log(0.02 / 0.98)
    cold = local_probability(np.full((7, 7), logit_2pct) + np.linspace(-0.1, 0.1, 49).reshape(7, 7))
    assert cold.max() < 0.03
    assert local_probability(np.array([0.0]))[0] == pytest.approx(0.5)
    assert local_probability(np.array([-1000.0, 1000.0])).tolist() == [0.0, 1.0]  # no overflow


def test_grid_peak_subcell() -> None:
    y, x = np.mgrid[0:8, 0:8]
    grid = -((x - 4.3) ** 2) - (y - 2.8) ** 2  # parabola: refinement is exact
    assert grid_peak(grid) == pytest.approx((4.3, 2.8), abs=1e-9)


def test_peak_ignores_padding_cells() -> None:
    box = Letterbox.fit(800, 400, SIZE)  # content occupies model rows 64..191: grid rows 2..5
    grid = np.zeros((8, 8))
    grid[0, 3] = 10.0  # maximum in the padding above the image
    grid[4, 6] = 5.0
    x, y = cam_peak(grid, box)
    assert box.to_model(x, y) == pytest.approx(((6 + 0.5) * 32 - 0.5, (4 + 0.5) * 32 - 0.5), abs=1e-6)


@pytest.mark.parametrize("width,height", [(900, 450), (450, 900), (700, 600)])
def test_cam_peak_follows_blob_through_letterbox(engine: Engine, width: int, height: int) -> None:
    rng = np.random.default_rng(width + height)
    scale = SIZE / max(width, height)
    for _ in range(4):
        cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
        image = 0.2 + 0.8 * gaussian_blob(width, height, cx, cy, 0.05 * max(width, height))
        pred = engine.predict_array(image)
        assert pred.gate.status == "ok" and pred.image_size == (width, height)
        found = pred.finding("Lung Lesion")
        assert found is not None and found.positive and found.cam_peak is not None
        err = np.hypot(found.cam_peak[0] - cx, found.cam_peak[1] - cy) * scale
        assert err < TOLERANCE, (width, height, cx, cy, found.cam_peak)
        # The padding exceeds the tolerance: a mapping that ignored the letterbox would fail.
        assert max(pred.letterbox.pad_x, pred.letterbox.pad_y) > TOLERANCE


def test_heat_map_is_in_original_pixels(engine: Engine) -> None:
    width, height, cx, cy = 900, 450, 680.0, 120.0
    image = 0.2 + 0.8 * gaussian_blob(width, height, cx, cy, 45)
    pred = engine.predict_array(image)
    heat = pred.cam("Lung Lesion")
    assert heat is not None and heat.shape == (height, width) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0
    iy, ix = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert np.hypot(ix - cx, iy - cy) * SIZE / width < 24  # within 3/4 of a cell (bilinear map)
    background = 1 / (1 + np.e)  # sigmoid(bias -1) where the image is dark
    assert heat[height - 1, 0] == pytest.approx(background, abs=1e-3)
    assert heat[int(cy), int(cx)] - background > 0.5 * (heat.max() - background)
    # The finding that never reaches its cutoff has no map and no peak.
    assert pred.cam("Pneumothorax") is None and pred.finding("Pneumothorax").cam_peak is None
    assert pred.cam("Pneumothorax", below_cutoff=True).shape == (height, width)


def test_cam_mean_is_the_logit(engine: Engine) -> None:
    image = 0.2 + 0.8 * gaussian_blob(640, 480, 200, 300, 50)
    pred = engine.predict_array(image)
    for i, label in enumerate(pred.labels):
        p = pred.finding(label).probability
        assert pred.cams_logit[i].mean() == pytest.approx(np.log(p / (1 - p)), abs=1e-4)


def test_cam_peak_on_real_non_square_dicom(engine: Engine, shared_data: Path) -> None:
    """The 1841 x 1955 JPEG 2000 CR, darkened, with a bright blob at known original coordinates."""
    image01 = model_input(load_image(shared_data / "dicom" / "pydicom-data_RG1_J2KI.dcm"))
    height, width = image01.shape
    assert (width, height) == (1841, 1955)
    scale = SIZE / max(width, height)
    for cx, cy in [(1400.0, 500.0), (400.0, 1500.0), (1000.0, 1100.0)]:
        image = np.clip(0.3 * image01 + 0.7 * gaussian_blob(width, height, cx, cy, 90), 0, 1)
        found = engine.predict_array(image).finding("Lung Lesion")
        assert found is not None and found.cam_peak is not None
        err = np.hypot(found.cam_peak[0] - cx, found.cam_peak[1] - cy) * scale
        assert err < TOLERANCE, (cx, cy, found.cam_peak)


def test_fast_resampling_matches_letterbox_mapping() -> None:
    rng = np.random.default_rng(1)
    grid = rng.normal(0, 2, (10, 10)).astype(np.float32)
    for width, height in [(1841, 1955), (3000, 2000), (200, 150)]:
        box = Letterbox.fit(width, height, 320)
        fast = cam_to_original(grid, box)
        exact = local_probability(box.map_to_original(grid))
        assert fast.shape == exact.shape == (height, width)
        assert np.abs(fast - exact).max() < 0.03 and np.abs(fast - exact).mean() < 1e-3
