"""CAM smoothing from the card: the viewer's maps and peaks are the smoothed grid, the trainer scores the same."""

from __future__ import annotations

import numpy as np
import pytest

from cxrviewer.model.cam import CAM_SMOOTHING, cam_peak, smooth_cams
from cxrviewer.model.inference import Engine
from cxrviewer.model.preprocess import Letterbox

from .conftest import brightness_network, write_bundle
from .test_cam import gaussian_blob


def test_smoothing_moves_the_peak_to_the_broad_evidence_not_a_lone_cell() -> None:
    grid = np.zeros((16, 16), np.float32)
    grid[2, 2] = 3.0  # one isolated hot cell
    grid[9:12, 9:12] = 2.0  # a broad region of evidence
    box = Letterbox.fit(256, 256, 256)
    raw = cam_peak(grid, box)
    smooth = cam_peak(smooth_cams(grid, CAM_SMOOTHING), box)
    assert raw[0] < 64 and raw[1] < 64  # the raw maximum is the lone cell
    assert 144 < smooth[0] < 192 and 144 < smooth[1] < 192  # the smoothed one is the region's centre
    assert np.array_equal(smooth_cams(grid, 0.0), grid) and np.array_equal(smooth_cams(grid, None), grid)
    stack = np.stack([grid, -grid])
    assert np.allclose(smooth_cams(stack, 0.7)[1], -smooth_cams(grid, 0.7))
    assert abs(smooth_cams(grid, 0.7).mean() - grid.mean()) < 0.02  # nearly mean-preserving


def test_engine_applies_the_cards_smoothing(tmp_path, brightness_card) -> None:
    card = write_bundle(brightness_network(), tmp_path, 256, ["Lung Lesion", "Pneumothorax"],
                        {"Lung Lesion": 0.0, "Pneumothorax": 1.0}, cam={"method": "cam", "smoothing_cells": 1.0})
    smoothed, plain = Engine.from_card(card), Engine.from_card(brightness_card)
    image = 0.2 + 0.8 * gaussian_blob(300, 300, 100, 180, 20)
    a, b = smoothed.predict_array(image), plain.predict_array(image)
    assert smoothed.cam_smoothing == 1.0 and plain.cam_smoothing is None
    assert np.allclose(a.cams_logit, smooth_cams(b.cams_logit, 1.0), atol=1e-5)
    assert a.finding("Lung Lesion").probability == pytest.approx(b.finding("Lung Lesion").probability)
