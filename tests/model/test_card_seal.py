"""The model card's seal: the genuine bundled card loads as sealed; a copied card with edited operating points
(issue 21's construction: Pneumothorax 0.999, Cardiomegaly 0.0) is refused by the loader and by
`cxrviewer-predict` unless explicitly allowed, and then every output says "modified model card"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxrviewer.model.card import CARD_MODIFIED, CARD_SEALED, MODIFIED_CARD, ModelCard, canonical_card_json
from cxrviewer.model.inference import Engine
from cxrviewer.model.weights import ModelError, bundled_card_path, load_bundle, save_bundle

V1_CARD = Path(__file__).parent / "data" / "card-0.1.0-resnet18os16-160.json"


@pytest.fixture(scope="module")
def genuine() -> Path:
    return bundled_card_path()


def copy_bundle(card: Path, folder: Path) -> Path:
    """The card and its weights file copied into `folder` (the card's bytes unchanged)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = json.loads(card.read_text(encoding="utf-8"))["weights"]["file"]
    shutil.copy2(card.parent / weights, folder / weights)
    shutil.copy2(card, folder / card.name)
    return folder / card.name


def edited_copy(card: Path, folder: Path) -> Path:
    """The issue's construction: a copied card with thresholds.Pneumothorax 0.999 and Cardiomegaly 0.0."""
    path = copy_bundle(card, folder)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["thresholds"]["Pneumothorax"] = 0.999
    doc["thresholds"]["Cardiomegaly"] = 0.0
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def edited(genuine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return edited_copy(genuine, tmp_path_factory.mktemp("edited"))


def test_bundled_card_is_sealed(genuine: Path) -> None:
    card = ModelCard.read(genuine)
    assert card.seal is not None and card.card_status == CARD_SEALED
    assert card.card_sha256 == card.seal.sha256
    bundle = load_bundle(genuine)
    assert bundle.card_status == CARD_SEALED and bundle.card_sha256 == card.seal.sha256
    assert bundle.sha256 == card.weights.sha256  # the weights' hash is still reported on its own


def test_edited_thresholds_are_refused_naming_the_file_and_the_flag(edited: Path) -> None:
    for load in (load_bundle, Engine.from_card):
        with pytest.raises(ModelError) as info:
            load(edited)
        message = str(info.value)
        assert str(edited) in message and MODIFIED_CARD in message and "--allow-modified-card" in message
        assert "\n" not in message and len(message) < 400


def test_edited_card_loads_only_when_allowed_and_says_so(edited: Path, genuine: Path) -> None:
    engine = Engine.from_card(edited, allow_modified_card=True, threads=1)
    assert engine.card_status == CARD_MODIFIED and engine.bundle.card_status == CARD_MODIFIED
    assert engine.thresholds["Pneumothorax"] == 0.999 and engine.thresholds["Cardiomegaly"] == 0.0
    sealed = ModelCard.read(genuine)
    assert engine.sha256 == sealed.weights.sha256  # same weights ...
    assert engine.card_sha256 != sealed.card_sha256  # ... but not the same card
    note = engine.card.integrity_note()
    assert note is not None and MODIFIED_CARD in note.lower() and engine.card_sha256[:16] in note


def test_reformatting_keeps_the_seal_and_any_changed_value_breaks_it(genuine: Path, tmp_path: Path) -> None:
    doc = json.loads(genuine.read_text(encoding="utf-8"))
    reordered = dict(reversed(list(doc.items())))
    reordered["preprocessing"] = dict(reversed(list(doc["preprocessing"].items())))
    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps(reordered, separators=(",", ":")), encoding="utf-8")
    assert ModelCard.read(compact).card_status == CARD_SEALED
    spaced = tmp_path / "spaced.json"
    spaced.write_text(json.dumps(doc, indent=7, sort_keys=True), encoding="utf-8")
    assert ModelCard.read(spaced).card_status == CARD_SEALED
    assert canonical_card_json(reordered) == canonical_card_json(doc)

    for edit in (lambda d: d.update(name=d["name"] + " "),  # even a value read only by people
                 lambda d: d["validation"]["per_label"]["Edema"].update(auroc=0.99),
                 lambda d: d.pop("seal")):
        changed = json.loads(genuine.read_text(encoding="utf-8"))
        edit(changed)
        card = ModelCard.from_json(changed, "changed.json")
        assert card.card_status == CARD_MODIFIED and card.seal_problem()
    assert "no seal" in (ModelCard.from_json(changed, "x").seal_problem() or "")


def test_save_bundle_seals_what_it_writes(tmp_path: Path) -> None:
    """A card written by the trainer's save_bundle is sealed, also when the card it was given carried a stale
    seal; an old card without a seal is read unchanged (its round trip is tested in test_card.py) but not
    sealed."""
    from cxrviewer.model.network import build_network

    old = ModelCard.read(V1_CARD)
    assert old.seal is None and old.card_status == CARD_MODIFIED and "seal" not in old.to_json()
    stale = old.replace(name="copy", gate=None).sealed().replace(version="9")  # edited after sealing
    assert stale.card_status == CARD_MODIFIED
    path = save_bundle(build_network("resnet18", len(old.labels)), stale, tmp_path / "copy.json", fp16=False)
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["seal"]["sha256"] == ModelCard.from_json(written).card_sha256
    bundle = load_bundle(path)
    assert bundle.card_status == CARD_SEALED and bundle.card.version == "9"


def test_cli_refuses_the_edited_card_in_one_line(edited: Path, shared_data: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from cxrviewer.predict import main

    image = shared_data / "nih" / "images" / "00000001_000.png"
    assert main(["--model", str(edited), "--quiet", str(image)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert MODIFIED_CARD in err and "--allow-modified-card" in err and edited.name in err


def test_cli_reports_the_card_hash_and_state(edited: Path, genuine: Path, shared_data: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from cxrviewer.predict import main

    image = shared_data / "nih" / "images" / "00000001_000.png"
    assert main(["--quiet", "--threads", "1", "--output", str(tmp_path / "genuine.json"), str(image)]) == 0
    assert main(["--model", str(edited), "--allow-modified-card", "--quiet", "--threads", "1",
                 "--output", str(tmp_path / "edited.json"), str(image)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    real = json.loads((tmp_path / "genuine.json").read_text())["model"]
    fake = json.loads((tmp_path / "edited.json").read_text())
    seal = ModelCard.read(genuine).seal
    assert seal is not None
    assert real["card"] == CARD_SEALED and real["card_sha256"] == seal.sha256 and "card_note" not in real
    model = fake["model"]
    assert model["card"] == CARD_MODIFIED and MODIFIED_CARD in model["card_note"].lower()
    assert model["card_sha256"] != real["card_sha256"] and model["sha256"] == real["sha256"]
    assert model["name"] == real["name"] and model["labels"] == real["labels"]  # the contract keys stay
    thresholds = {f["label"]: f["threshold"] for f in fake["results"][0]["findings"]}
    assert thresholds["Pneumothorax"] == 0.999 and thresholds["Cardiomegaly"] == 0.0


def test_node_refuses_the_edited_card_unless_allowed(edited: Path) -> None:
    from cxrviewer.net.cli import UsageError, _load_engine, build_parser

    argv = ["--allow-ae", "PACS", "--model", str(edited), "--threads", "1"]
    with pytest.raises(UsageError, match=MODIFIED_CARD):
        _load_engine(build_parser().parse_args(argv))
    engine = _load_engine(build_parser().parse_args([*argv, "--allow-modified-card"]))
    assert engine.card_status == CARD_MODIFIED
