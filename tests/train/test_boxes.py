"""Box supervision of the CAMs: boxes scaled to the model input, moved with the augmentation, turned into
per-cell targets, and taken from training images only."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cxrviewer.train.augment import AugmentConfig, augment_with_geometry
from cxrviewer.train.boxes import MAX_BOXES, box_loss, boxes_by_image, cell_targets, padded
from cxrviewer.train.cli import main as train_main
from cxrviewer.train.datasets import write_rows
from cxrviewer.train.loop import TrainConfig, _training_boxes, load_samples
from cxrviewer.train.splits import patient_folds

LABELS = ["Cardiomegaly", "Atelectasis", "Pleural Effusion", "Lung Opacity", "Lung Lesion", "Pneumonia",
          "Pneumothorax"]


def _bbox_rows(shared_data: Path) -> list[dict[str, str]]:
    with open(shared_data / "nih" / "bbox.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_real_boxes_are_scaled_to_the_model_input(shared_data: Path) -> None:
    rows = _bbox_rows(shared_data)
    first = rows[0]
    paths = [shared_data / r["image"] for r in rows[:30]]
    found = boxes_by_image(shared_data / "nih" / "bbox.csv", shared_data, paths, LABELS, 128)
    assert set(found) == set(range(30)) - {i for i, p in enumerate(paths) if p in paths[:i]}
    scale = 128 / 256  # the shared NIH films are 256 x 256, their boxes in 256-px coordinates
    lab, x0, y0, x1, y1 = found[0][0]
    assert LABELS[int(lab)] == first["label"]
    assert (x0, y0) == pytest.approx((float(first["x"]) * scale, float(first["y"]) * scale), abs=1e-3)
    assert (x1 - x0, y1 - y0) == pytest.approx((float(first["w"]) * scale, float(first["h"]) * scale), abs=1e-3)
    # a label the model does not train, or an image not among the paths, gives no box
    assert not boxes_by_image(shared_data / "nih" / "bbox.csv", shared_data, paths, ["Edema"], 128)
    assert not boxes_by_image(shared_data / "nih" / "bbox.csv", shared_data, paths[:0], LABELS, 128)


@pytest.mark.parametrize("seed", range(6))
def test_boxes_follow_the_augmentation(seed: int) -> None:
    """A bright rectangle where the box is: after augmentation the moved box still frames it."""
    size = 128
    img = np.zeros((size, size), np.uint8)
    box = np.array([[2, 40, 30, 80, 70]], np.float32)
    img[30:70, 40:80] = 255
    cfg = AugmentConfig(brightness=0, contrast=0, gamma=(1, 1), blur_p=0, noise_p=0, jpeg_p=0, aspect_p=0.5,
                        hflip_p=0.5, rotate_deg=0)  # rotation enlarges the corners' bounding box by design
    x, geometry = augment_with_geometry(img, np.random.default_rng(seed), cfg)
    moved = padded(box, geometry)
    assert moved.shape == (MAX_BOXES, 5) and (moved[1:, 0] == -1).all() and moved[0, 0] == 2
    ys, xs = np.nonzero(x > 0.5)
    assert moved[0, 1:] == pytest.approx([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], abs=2.0)


@pytest.mark.parametrize("kind", ["softmax", "cells"])
def test_cell_targets_and_loss_push_the_map_into_the_box(kind: str) -> None:
    boxes = torch.full((2, MAX_BOXES, 5), -1.0)
    boxes[0, 0] = torch.tensor([1, 32, 48, 80, 96])  # cells x 2..4, y 3..5 of a 10 x 10 map over 160 px
    target, has = cell_targets(boxes, 3, (10, 10), 160)
    assert has.tolist() == [[False, True, False], [False, False, False]]
    expected = torch.zeros(10, 10)
    expected[3:6, 2:5] = 1
    assert torch.equal(target[0, 1], expected) and target[1].sum() == 0
    cams = torch.zeros(2, 3, 10, 10, requires_grad=True)
    loss = box_loss(cams, boxes, 160, kind)
    loss.backward()
    grad = cams.grad[0, 1]
    assert (grad[expected == 1] < 0).all() and (grad[expected == 0] > 0).all()  # raise inside, lower outside
    assert cams.grad[1].abs().sum() == 0 and cams.grad[0, [0, 2]].abs().sum() == 0  # no box: no push
    if kind == "softmax":  # only where the mass sits moves, not the map's mean (= the image logit)
        assert float(grad.sum()) == pytest.approx(0.0, abs=1e-6)
    assert box_loss(cams, torch.full((2, MAX_BOXES, 5), -1.0), 160, kind) is None
    with pytest.raises(ValueError, match="unknown box loss"):
        box_loss(cams, boxes, 160, "dice")


@pytest.fixture(scope="module")
def nih_with_boxes(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> str:
    """An NIH spec over 60 images with boxes and 60 without."""
    boxed = {Path(r["image"]).name for r in _bbox_rows(shared_data)}
    with open(shared_data / "nih" / "Data_Entry_2017_subset.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    subset = ([r for r in rows if r["Image Index"] in boxed][:60]
              + [r for r in rows if r["Image Index"] not in boxed][:60])
    path = write_rows(tmp_path_factory.mktemp("nihbox") / "nih.csv", subset)
    return f"nih,csv={path},images={shared_data / 'nih' / 'images'}"


def test_boxes_come_from_training_images_only(nih_with_boxes: str, shared_data: Path) -> None:
    cfg = TrainConfig(datasets=[nih_with_boxes], out_dir="unused", folds=3, box_csv=str(shared_data / "nih" /
                      "bbox.csv"), box_root=str(shared_data), input_size=64)
    samples = load_samples(cfg)
    folds = patient_folds(samples, 3, 0)
    train_idx, val_idx = np.flatnonzero(folds != 0), np.flatnonzero(folds == 0)
    every = boxes_by_image(Path(cfg.box_csv), shared_data, [s.path for s in samples], LABELS, 64)
    assert any(i in every for i in val_idx)  # the held-out fold has boxes ...
    rows = _training_boxes(cfg, samples, train_idx, LABELS, main_proc=False)
    assert rows and set(rows) <= set(train_idx.tolist())  # ... and training never sees them
    assert all(np.array_equal(rows[i], every[i]) for i in rows)
    assert not _training_boxes(TrainConfig(datasets=[], out_dir="x"), samples, train_idx, LABELS, False)


def test_fit_with_box_supervision(nih_with_boxes: str, shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["fit", "--dataset", nih_with_boxes, "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--input-size", "64", "--batch-size", "16", "--workers", "0", "--folds", "3", "--epochs", "1",
            "--quiet", "--labels", "Cardiomegaly,Atelectasis,Pleural Effusion,Lung Opacity",
            "--bbox", str(shared_data / "nih" / "bbox.csv"), "--bbox-root", str(shared_data), "--box-supervision",
            "--box-weight", "0.5"]
    assert train_main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["box_csv"].endswith("bbox.csv") and config["box_weight"] == 0.5
    card = json.loads((out / "model.json").read_text())
    assert card["validation"]["pointing_game"]["total"]["n"] > 0  # held-out boxes still scored
    with pytest.raises(SystemExit):
        train_main(args[:-7] + ["--box-supervision"])  # boxes without a box file: a usage error


def test_model_readme_says_whether_maps_beat_the_priors() -> None:
    from cxrviewer.train.model_readme import _cam_verdict

    def game(cam: int, centre: int, mean_box: int) -> dict:
        per = {"Cardiomegaly": {"n": 40, "cam": 40, "centre": 39, "mean_box": 40},
               "Pneumothorax": {"n": 60, "cam": cam - 40, "centre": centre - 39, "mean_box": mean_box - 40}}
        return {"per_label": per, "hit_rate": {"cam": cam / 100, "centre": centre / 100, "mean_box": mean_box / 100}}

    assert "do not beat a fixed-location prior" in _cam_verdict(game(40, 41, 44))
    assert "only slightly better" in _cam_verdict(game(45, 41, 44))
    assert "do not beat" in _cam_verdict(game(44, 41, 44))  # a tie is not a win
    text = _cam_verdict(game(90, 41, 44))
    assert "2.0x as often" in text and "trail" not in text
    mixed = {"per_label": {"Pneumothorax": {"n": 10, "cam": 1, "centre": 2, "mean_box": 0}},
             "hit_rate": {"cam": 0.5, "centre": 0.2, "mean_box": 0.1}}
    assert "trail a prior for Pneumothorax" in _cam_verdict(mixed)
    assert _cam_verdict(None) == "Their localisation was not measured."
