"""The abroad check (`cxrviewer.model.abroad`) on real NIH films, plain and as a new hospital would send them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrviewer.imaging import Image, load_image
from cxrviewer.model.abroad import LINES, Abroad, AbroadGate, fit_abroad, measure
from cxrviewer.model.card import ModelCard, ModelError
from cxrviewer.model.weights import bundled_card_path
from cxrviewer.train.shift import shift_image
from cxrviewer.train.shift.abroad import model_film
from cxrviewer.train.shift.card_records import write_abroad_record

N_FILMS = 24
DEVICES = ("chest_drain", "tubes", "central_line", "icu_devices")


@pytest.fixture(scope="module")
def gate() -> AbroadGate:
    card = ModelCard.read(bundled_card_path())
    assert card.gate is not None and "abroad" in card.gate, "the bundled card carries no abroad statistics"
    return AbroadGate.from_record(card.gate["abroad"])


@pytest.fixture(scope="module")
def normals(shared_data: Path) -> list[Image]:
    """The first NIH "No Finding" films of the shared labels (plain films: few carry devices)."""
    with (shared_data / "nih" / "labels.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["No Finding"] == "1"]
    return [load_image(shared_data / r["image"]) for r in rows[:N_FILMS]]


def verdicts(gate: AbroadGate, images: list[Image], transform: str | None) -> list[Abroad]:
    shown = images if transform is None else [shift_image(im, transform, seed=i) for i, im in enumerate(images)]
    return [gate.check(measure(model_film(im, 256))) for im in shown]


def test_plain_films_are_not_abroad(gate: AbroadGate, normals: list[Image]) -> None:
    plain = verdicts(gate, normals, None)
    assert sum(a.warns for a in plain) <= 2, [round(a.score, 2) for a in plain]
    assert all(a.message is None for a in plain if not a.warns)


@pytest.mark.parametrize("transform", DEVICES)
def test_painted_tubes_and_drains_are_found(gate: AbroadGate, normals: list[Image], transform: str) -> None:
    plain = verdicts(gate, normals, None)
    painted = verdicts(gate, normals, transform)
    found = [a.lines > 1 and LINES in a.reasons for a in painted]
    assert np.mean(found) >= 0.75, f"{transform}: lines found on {sum(found)} of {len(found)} films"
    assert sum(a.lines > 1 for a in plain) <= 2
    paired = [p.lines > q.lines for p, q in zip(painted, plain, strict=True)]
    assert np.mean(paired) >= 0.9  # the same film scores higher with the device on it
    warned = next(a for a in painted if LINES in a.reasons)
    assert warned.message is not None and "Pneumothorax" in warned.message and "less reliable" in warned.message


@pytest.mark.parametrize("transform", ["clahe", "unsharp"])
def test_edge_enhancement_is_flagged_as_such(gate: AbroadGate, normals: list[Image], transform: str) -> None:
    plain = verdicts(gate, normals, None)
    enhanced = verdicts(gate, normals, transform)
    warned = [a for a in enhanced if a.processing > 1]
    assert len(warned) >= N_FILMS // 3, f"{transform}: {len(warned)} of {N_FILMS} flagged"
    assert sum(any(r.kind == "sharpened" for r in a.reasons) for a in warned) >= 0.7 * len(warned)
    assert np.mean([e.processing > p.processing for e, p in zip(enhanced, plain, strict=True)]) >= 0.9
    # edge enhancement is not mistaken for devices on most films
    assert sum(a.lines > 1 for a in enhanced) <= N_FILMS // 4
    assert "edge-enhanced" in (warned[0].message or "") and "Pneumothorax" in (warned[0].message or "")


def test_soft_films_are_flagged_as_soft(gate: AbroadGate, normals: list[Image]) -> None:
    blurred = verdicts(gate, normals, "blur")
    assert all(a.warns for a in blurred)
    assert sum(a.reasons[0].kind == "soft" for a in blurred) >= 0.7 * N_FILMS


def test_record_round_trip_and_refusals(gate: AbroadGate, normals: list[Image]) -> None:
    films = [model_film(im, 256) for im in normals]
    assert AbroadGate.from_record(gate.to_record()).check(measure(films[0])) == gate.check(measure(films[0]))
    with pytest.raises(ValueError, match="at least 100"):
        fit_abroad(films)
    rec = gate.to_record()
    for broken in ({**rec, "method": "other/1"}, {**rec, "sigmas": [1, 2]}, {**rec, "lines_threshold": 0.0},
                   {**rec, "mixture": {**rec["mixture"], "weights": [1.0]}}):
        with pytest.raises(ValueError):
            AbroadGate.from_record(broken)


def test_writing_the_record_reseals_only_the_gate(tmp_path: Path, gate: AbroadGate) -> None:
    src = bundled_card_path()
    card_path = tmp_path / src.name
    shutil.copy(src, card_path)
    before = json.loads(card_path.read_text())
    record = {**gate.to_record(), "n_images": 7}
    written = write_abroad_record(card_path, record)
    after = json.loads(card_path.read_text())
    assert written.card_status == "sealed" and ModelCard.read(card_path).card_status == "sealed"
    assert after["gate"]["abroad"]["n_images"] == 7
    assert {k: v for k, v in after.items() if k not in ("gate", "seal")} == \
        {k: v for k, v in before.items() if k not in ("gate", "seal")}
    assert {k: v for k, v in after["gate"].items() if k != "abroad"} == \
        {k: v for k, v in before["gate"].items() if k != "abroad"}
    edited = dict(after, description="edited by hand")
    card_path.write_text(json.dumps(edited))
    with pytest.raises(ModelError, match="does not match its seal"):
        write_abroad_record(card_path, record)
