"""Site-shift transforms and the battery, on real NIH films."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxrviewer.imaging import load_image, model_input
from cxrviewer.imaging.anatomy import find_lung_fields
from cxrviewer.imaging.image import Image
from cxrviewer.imaging.voi import auto_voi
from cxrviewer.train.shift import SHIFTS, apply_shift, film_of, parse_shifts, shift_image
from cxrviewer.train.shift.battery import _mean_auroc
from cxrviewer.train.shift.battery import main as battery
from cxrviewer.train.shift.films import nih_samples, pack_patients

FILMS = ("00000001_000.png", "00000013_005.png", "00000032_001.png")
DEVICES = [n for n, s in SHIFTS.items() if s.group == "device"]
RANDOM = DEVICES + [n for n, s in SHIFTS.items() if s.group in ("acquisition", "overlay")] + ["noise"]


@pytest.fixture(scope="module")
def images(shared_data: Path) -> list[Image]:
    return [load_image(shared_data / "nih" / "images" / name) for name in FILMS]


@pytest.mark.parametrize("name", list(SHIFTS))
def test_transform_is_deterministic_and_keeps_the_film_format(images: list[Image], name: str) -> None:
    for k, image in enumerate(images):
        film = film_of(image)
        a, b = apply_shift(film, name, seed=k), apply_shift(film, name, seed=k)
        assert np.array_equal(a.film, b.film), f"{name} differs between two runs with seed {k}"
        assert a.film.shape == film.shape and a.film.dtype == np.float32
        assert 0.0 <= a.film.min() and a.film.max() <= 1.0
        assert np.abs(a.film - film).mean() > 1e-4, f"{name} left {FILMS[k]} unchanged"
        if name in RANDOM:
            assert not np.array_equal(a.film, apply_shift(film, name, seed=k + 17).film), f"{name} ignores its seed"


@pytest.mark.parametrize("name", DEVICES)
def test_devices_only_brighten_and_only_where_painted(images: list[Image], name: str) -> None:
    for k, image in enumerate(images):
        film = film_of(image)
        out = apply_shift(film, name, seed=k)
        assert out.mask is not None and out.mask.any()
        assert np.array_equal(out.film[~out.mask], film[~out.mask]), f"{name} changed pixels it did not paint"
        assert (out.film >= film - 1e-6).all(), f"{name} made a pixel darker (paint must be radio-opaque)"
        assert (out.film[out.mask] > film[out.mask] + 0.02).mean() > 0.3  # the paint is visibly brighter
        assert out.mask.mean() < 0.1  # devices, not a veil over the film


def test_icu_devices_are_the_single_devices_drawn_together(images: list[Image]) -> None:
    film = film_of(images[0])
    together = apply_shift(film, "icu_devices", seed=5)
    masks = [apply_shift(film, n, seed=5).mask for n in ("ecg_leads", "central_line", "tubes")]
    assert together.mask is not None and all(m is not None for m in masks)
    assert np.array_equal(together.mask, np.logical_or.reduce(masks))


@pytest.mark.parametrize("name", ["text", "border"])
def test_text_and_border_leave_the_lungs_and_the_tags_alone(images: list[Image], name: str) -> None:
    for k, image in enumerate(images):
        film = film_of(image)
        out = apply_shift(film, name, seed=k)
        assert out.mask is not None and out.mask.any()
        assert np.array_equal(out.film[~out.mask], film[~out.mask])
        lungs = find_lung_fields(film).mask
        assert (out.mask & lungs).sum() <= 0.05 * lungs.sum(), f"{name} covers the lung fields of {FILMS[k]}"
        shifted = shift_image(image, name, seed=k)
        assert shifted.meta.view_position == image.meta.view_position and shifted.flags == image.flags


def test_paint_is_opaque_whatever_the_polarity(images: list[Image]) -> None:
    """A MONOCHROME1 copy of a real film (inverted pixels): devices lower its pixel values, display the same."""
    image = images[1]
    inverted = Image(image.path, (255 - image.pixels).astype(np.uint8),
                     replace(image.meta, photometric="MONOCHROME1"), [], auto_voi(255 - image.pixels, True, 8))
    assert np.array_equal(model_input(inverted), model_input(image))
    plain, mono1 = shift_image(image, "icu_devices", seed=2), shift_image(inverted, "icu_devices", seed=2)
    painted = plain.pixels.astype(int) > image.pixels.astype(int)
    assert painted.any() and mono1.meta.photometric == "MONOCHROME1"
    assert (mono1.pixels.astype(int)[painted] < inverted.pixels.astype(int)[painted]).all()
    assert np.array_equal(model_input(mono1), model_input(plain))


def test_unknown_transform_names_are_listed() -> None:
    assert parse_shifts("text, jpeg") == ["text", "jpeg"]
    assert parse_shifts("all") == list(SHIFTS)
    with pytest.raises(ValueError, match="unknown site-shift transform.*portabel.*known: portable_ap"):
        parse_shifts("portabel")


def test_pack_draw_keeps_whole_patients_under_the_cap(shared_data: Path) -> None:
    samples = nih_samples(shared_data)
    keep = pack_patients(samples, "nih", 500)
    kept = [s for s in samples if s.patient_id in keep]
    assert 450 < len(kept) <= 500
    assert pack_patients(samples, "nih", 500) == keep  # the same draw every time


def test_tiny_battery_writes_the_table(shared_data: Path, tmp_path: Path, one_torch_thread: None) -> None:
    args = ["--out", str(tmp_path), "--data", str(shared_data), "--nih", "4", "--kermany", "0",
            "--shift", "text,ecg_leads"]
    assert battery(args) == 0
    result = json.loads((tmp_path / "battery.json").read_text())
    site = result["sites"]["nih"]
    assert list(site) == ["plain", "text", "ecg_leads"]
    for name, rec in site.items():
        assert rec["films"] == 4 and rec["normal_films"] == 2
        assert set(rec["auroc"]) == set(result["labels"]) and rec["flags_per_normal_film"] is not None
        assert 0.0 <= rec["pneumothorax_flag_rate"] <= 1.0
        assert rec["shift"]["Pneumothorax"]["median"] is not None
        assert (rec["gate"]["auroc_vs_plain"] is None) == (name == "plain")
    assert all(v == 0.0 for v in site["plain"]["shift"]["Pneumothorax"].values())
    assert site["ecg_leads"]["shift"]["Pneumothorax"]["p90"] != 0.0  # the painted films were predicted anew
    md = (tmp_path / "battery.md").read_text()
    assert "| ecg_leads | device |" in md and "gate AUROC vs plain" in md
    raw = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert raw == ["nih_ecg_leads_seed0.npz", "nih_plain_seed0.npz", "nih_text_seed0.npz", "setting.json"]
    assert battery(args) == 0  # a rerun resumes from raw/ and gives the same numbers
    assert json.loads((tmp_path / "battery.json").read_text()) == result
    # ... but never with another harmonisation's (or card's) predictions
    assert battery([*args, "--harmonise-radius", "5"]) == 2
    assert battery([*args, "--harmonise-radius", "5", "--out", str(tmp_path / "other")]) == 0


def test_bootstrap_auroc_matches_sklearn_with_ties_and_masks() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < 0.3).astype(np.float32)
    p = np.round(rng.random((200, 3)), 1)  # many ties
    m = np.ones_like(y)
    m[:60, 1] = 0
    ref = np.mean([roc_auc_score(y[m[:, j] > 0, j], p[m[:, j] > 0, j]) for j in range(3)])
    assert _mean_auroc(y, p, m) == pytest.approx(ref, abs=1e-12)
