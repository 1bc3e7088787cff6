"""A model that reads the thorax crop: the viewer's heat map lies over the region the model saw, nothing outside."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrviewer.gui import backend

from .conftest import MODEL_LABELS, POSITIVE, _thresholds


@pytest.fixture(scope="module")
def crop_prediction(tmp_path_factory: pytest.TempPathFactory, shared_data: Path):  # noqa: ANN201
    import torch

    from cxrviewer.imaging import load_image
    from cxrviewer.model.inference import Engine
    from cxrviewer.model.network import build_network
    from cxrviewer.model.preprocess import preprocessing_record
    from cxrviewer.model.weights import save_bundle

    torch.manual_seed(0)
    card = {"name": "gui-crop", "version": "test", "input_size": 128, "labels": MODEL_LABELS,
            "preprocessing": preprocessing_record(128, "thorax"), "thresholds": _thresholds(),
            "cam": {"method": "cam", "smoothing_cells": 0.7}}
    path = save_bundle(build_network("resnet18", len(MODEL_LABELS)), card,
                       tmp_path_factory.mktemp("crop") / "crop.json")
    return Engine.from_card(path).predict(load_image(shared_data / "nih" / "demo" / "00000001_000.png"))


def test_heat_map_covers_only_the_thorax_the_model_saw(crop_prediction) -> None:  # noqa: ANN001
    box = crop_prediction.letterbox
    assert box.cropped and crop_prediction.image_size == (512, 512)
    x, y, w, h = box.region
    for label in POSITIVE:
        small = backend.heat_map(crop_prediction, label, max_side=256)
        full = crop_prediction.cam(label)
        assert small is not None and full is not None and small.shape == (256, 256)
        assert np.all(full[:y] == 0.0) and np.all(full[y + h:] == 0.0) and np.all(full[:, x + w:] == 0.0)
        assert full[y + h // 2, x + w // 2] > 0.0
        # the display copy is the same map at half size (edges of the region may differ by one pixel)
        reference = cv2.resize(full, (256, 256), interpolation=cv2.INTER_AREA)
        inner = (slice(y // 2 + 2, (y + h) // 2 - 2), slice(x // 2 + 2, (x + w) // 2 - 2))
        assert np.abs(small[inner] - reference[inner]).max() < 0.02
        assert np.all(small[: y // 2 - 1] == 0.0)


def test_outline_shows_the_crop_the_model_read(crop_prediction) -> None:  # noqa: ANN001
    from cxrviewer.gui.film_display import analysed_region
    from cxrviewer.model.preprocess import Letterbox

    shown = analysed_region(crop_prediction.letterbox)
    assert shown is not None
    rect, note = shown
    assert rect == tuple(float(v) for v in crop_prediction.letterbox.region) and "thorax crop" in note
    assert analysed_region(Letterbox.fit(512, 512, 128)) is None  # square film, whole image: nothing to outline
    (x, y, w, h), note = analysed_region(Letterbox.fit(800, 400, 128))
    assert (x, y, w, h) == (0.0, 0.0, 800.0, 400.0) and "thorax" not in note
