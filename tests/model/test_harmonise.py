"""Detail harmonisation (`cxrviewer.model.harmonise`) on real NIH films, plain and as a new hospital sends them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.imaging import load_image
from cxrviewer.model.abroad import BLUR_THREADS_ENV, AbroadGate, band_energies, measure
from cxrviewer.model.card import ModelCard, ModelError
from cxrviewer.model.harmonise import METHOD, Harmoniser, bands, line_mask
from cxrviewer.model.inference import Engine
from cxrviewer.model.weights import bundled_card_path
from cxrviewer.report.json_report import result_entry
from cxrviewer.train.shift import apply_shift, shift_image
from cxrviewer.train.shift.abroad import model_film
from cxrviewer.train.shift.battery import main as battery
from cxrviewer.train.shift.card_records import write_harmonise_record

N_FILMS = 12
SETTING = {"method": METHOD, "radius": 3.0, "lines": 0.75}


@pytest.fixture(scope="module")
def gate() -> AbroadGate:
    card = ModelCard.read(bundled_card_path())
    assert card.gate is not None and "abroad" in card.gate
    return AbroadGate.from_record(card.gate["abroad"])


@pytest.fixture(scope="module")
def films(shared_data: Path) -> list[np.ndarray]:
    """Model-size films (decoded and letterboxed as the app does, padding cut off) of NIH "No Finding" films."""
    with (shared_data / "nih" / "labels.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["No Finding"] == "1"][:N_FILMS]
    return [model_film(load_image(shared_data / r["image"]), 256) for r in rows]


def distance(gate: AbroadGate, film: np.ndarray) -> float:
    return float(gate.mixture.score(np.log(band_energies(film) + 1e-5))[0])


def test_bands_add_up_to_the_film(films: list[np.ndarray]) -> None:
    coarse, octave = bands(films[0])
    assert np.allclose(coarse + sum(octave), films[0], atol=1e-5)


def test_blurs_on_several_threads_give_the_same_numbers(gate: AbroadGate, films: list[np.ndarray],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """cxrviewer-predict blurs on every core (`BLUR_THREADS_ENV`): measurements and harmonised films are unchanged."""
    harmoniser = Harmoniser(gate, 0.5)  # a small radius: these films are changed, every blur is used
    monkeypatch.delenv(BLUR_THREADS_ENV, raising=False)
    one = [(measure(f), harmoniser.film(f)) for f in films[:4]]
    monkeypatch.setenv(BLUR_THREADS_ENV, "3")
    three = [(measure(f), harmoniser.film(f)) for f in films[:4]]
    assert any(h.detail < 1.0 for _, h in one)
    for (m1, h1), (m3, h3) in zip(one, three, strict=True):
        assert np.array_equal(m1.spectrum, m3.spectrum) and np.array_equal(m1.line_image, m3.line_image)
        assert np.array_equal(h1.film, h3.film) and h1.detail == h3.detail


def test_a_film_like_the_training_films_is_left_alone(gate: AbroadGate, films: list[np.ndarray]) -> None:
    harmoniser = Harmoniser(gate, radius=gate.spectrum_threshold, lines=1.0)
    inside = [f for f in films if distance(gate, f) <= harmoniser.radius]
    assert len(inside) >= N_FILMS - 1
    for film in inside:
        done = harmoniser.film(film)
        assert done.film is film and not done.changed and done.describe() == ()  # bit for bit as trained
        square = np.pad(film, 5)
        assert harmoniser.square(square, (5, 5, film.shape[1], film.shape[0]))[0] is square


@pytest.mark.parametrize("transform", ["unsharp", "clahe"])
def test_edge_enhanced_films_are_brought_back_and_never_sharpened(gate: AbroadGate, films: list[np.ndarray],
                                                                  transform: str) -> None:
    harmoniser = Harmoniser(gate, radius=2.0)
    moved = 0
    for i, film in enumerate(films):
        shifted = apply_shift(film, transform, seed=i).film
        done = harmoniser.film(shifted)
        fixed = done.film
        before, after = distance(gate, shifted), distance(gate, fixed)
        assert fixed.shape == shifted.shape and fixed.dtype == np.float32
        assert 0.0 <= fixed.min() and fixed.max() <= 1.0
        assert np.all(band_energies(fixed) <= band_energies(shifted) * 1.01)  # detail only taken away
        assert after <= before + 1e-6
        if done.changed:
            assert done.detail < 1.0 and done.filled == 0.0 and "detail turned down" in done.describe()[0]
        moved += before > 4.0 and after < 0.6 * before
    assert moved >= N_FILMS // 2


def test_painted_lines_are_filled_in_and_plain_anatomy_is_not(gate: AbroadGate, films: list[np.ndarray]) -> None:
    covered, stray = [], []
    for i, film in enumerate(films):
        assert not line_mask(measure(film), gate, 1.0).any()  # ribs, vessels and scapulae are no device
        painted = apply_shift(film, "central_line", seed=i)
        assert painted.mask is not None
        mask = line_mask(measure(painted.film), gate, 1.0)
        covered.append(mask[painted.mask].mean())
        stray.append(mask[~painted.mask].mean())
    assert np.median(covered) > 0.5  # most catheters found and filled
    assert max(stray) < 0.02  # little of the film around them touched

    harmoniser = Harmoniser(gate, radius=gate.spectrum_threshold, lines=1.0)
    painted = apply_shift(films[1], "central_line", seed=1)
    done = harmoniser.film(painted.film)
    fixed = done.film
    assert done.filled > 0 and "lines and tubes filled in" in " ".join(done.describe())
    on = painted.mask & line_mask(measure(painted.film), gate, 1.0)
    assert on.any()  # the filled catheter is as dark as the film under it, not the painted white
    assert np.abs(fixed[on] - films[1][on]).mean() < 0.5 * np.abs(painted.film[on] - films[1][on]).mean()


def test_the_bundled_model_harmonises_its_inputs() -> None:
    engine = Engine.bundled(threads=1)
    assert engine.harmoniser is not None and engine.harmoniser.lines is not None
    assert "turned down" in engine.harmoniser.summary()


def test_the_record_round_trips_and_bad_records_are_refused(gate: AbroadGate) -> None:
    card = ModelCard.read(bundled_card_path())
    assert card.gate is not None
    abroad = card.gate["abroad"]
    h = Harmoniser(gate, 2.0, 1.0)
    back = Harmoniser.from_records(h.to_record(), abroad)
    assert (back.radius, back.lines) == (2.0, 1.0)
    assert Harmoniser.from_records({"method": h.to_record()["method"], "radius": 3.0}, abroad).lines is None
    for bad in ({"method": "other/1", "radius": 2.0}, {**h.to_record(), "radius": 0.0},
                {**h.to_record(), "lines": -1.0}):
        with pytest.raises(ValueError):
            Harmoniser.from_records(bad, abroad)
    with pytest.raises(ValueError, match="abroad statistics"):
        Harmoniser.from_records(h.to_record(), None)


@pytest.fixture(scope="module")
def harmonising_card(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A copy of the bundled model whose card the battery's ``--write-card`` gave a harmonisation setting."""
    folder = tmp_path_factory.mktemp("harmonising")
    src = bundled_card_path()
    card = ModelCard.read(src)
    for name in {src.name, card.weights.file, card.onnx.file if card.onnx else None} - {None}:
        shutil.copy(src.parent / str(name), folder / str(name))
    out = folder / "battery"
    args = ["--out", str(out), "--data", str(shared_data), "--model", str(folder / src.name), "--nih", "2",
            "--kermany", "0", "--shift", "clahe", "--harmonise-radius", "3", "--harmonise-lines", "0.75",
            "--write-card"]
    assert battery(args) == 0
    assert json.loads((out / "battery.json").read_text())["harmonise"] == SETTING
    return folder / src.name


def test_the_written_card_is_sealed_and_only_its_preprocessing_changed(harmonising_card: Path,
                                                                       tmp_path: Path) -> None:
    before, after = json.loads(bundled_card_path().read_text()), json.loads(harmonising_card.read_text())
    assert ModelCard.read(harmonising_card).card_status == "sealed"
    assert after["preprocessing"] == {**before["preprocessing"], "harmonise": SETTING}
    assert before["preprocessing"].get("harmonise") != SETTING
    assert {k: v for k, v in after.items() if k not in ("preprocessing", "seal")} == \
        {k: v for k, v in before.items() if k not in ("preprocessing", "seal", "harmonise")}
    edited = tmp_path / harmonising_card.name
    edited.write_text(json.dumps({**after, "description": "edited"}))
    with pytest.raises(ModelError, match="does not match its seal"):
        write_harmonise_record(edited, None)


def test_the_engine_harmonises_and_says_so(harmonising_card: Path, shared_data: Path) -> None:
    """CLAHE and a painted drain on real NIH films: the harmonising engine's Pneumothorax probability falls back
    toward the plain film's, the plain film is predicted exactly as before, and the verdict names what was done."""
    plain_engine, engine = Engine.from_card(harmonising_card, threads=1), Engine.from_card(harmonising_card, threads=1)
    plain_engine.harmoniser = None  # the same card as it would run without harmonisation
    assert engine.harmoniser is not None and (engine.harmoniser.radius, engine.harmoniser.lines) == (3.0, 0.75)
    films = [load_image(shared_data / "dicom" / f"udacity_nih_test{i}.dcm") for i in (1, 2, 3)]
    closer = 0
    for i, film in enumerate(films):
        plain = plain_engine.predict(film).finding("Pneumothorax")
        same = engine.predict(film)
        assert same.gate.abroad is not None and same.gate.abroad.harmonised is not None
        if not same.gate.abroad.adjusted:  # a film inside the radius is untouched
            assert same.finding("Pneumothorax") == plain
        for transform in ("clahe", "chest_drain"):
            shifted = shift_image(film, transform, seed=i)
            before = plain_engine.predict(shifted, force=True).finding("Pneumothorax")
            after = engine.predict(shifted, force=True)
            assert before is not None and plain is not None and after.finding("Pneumothorax") is not None
            closer += abs(after.finding("Pneumothorax").probability - plain.probability) < \
                abs(before.probability - plain.probability)
            verdict = after.gate.abroad
            assert verdict is not None and verdict.adjusted
            if verdict.warns:
                assert "The model saw it with" in (verdict.message or "")
            entry = result_entry("film.dcm", after)
            assert entry["abroad"]["harmonised"] == verdict.harmonised
    assert closer >= 5  # of 6
