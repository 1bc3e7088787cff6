"""Tampered model bundles are refused with `ModelError` and a clear message; nothing is ever unpickled.

Each test starts from a real bundle (untrained ResNet-18 written with `save_bundle`) copied into its own
folder, damages one thing, and calls `load_bundle` (and, for a few, the `cxrviewer-predict` CLI).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from model_fixtures import read_card, write_card, write_tiny_bundle

from cxrviewer.model.weights import ModelBundle, ModelError, load_bundle


@pytest.fixture(scope="module")
def pristine(tiny_card: Path) -> Path:
    return tiny_card


@pytest.fixture(scope="module")
def other(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second, different bundle: another architecture and label count."""
    return write_tiny_bundle(tmp_path_factory.mktemp("other"), arch="mobilenet_v3_large",
                             labels=["Cardiomegaly", "Edema"], seed=1, name="other")


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the pristine bundle (card path) that a test may damage."""
    for f in pristine.parent.iterdir():
        shutil.copy2(f, tmp_path / f.name)
    return tmp_path / pristine.name


def weights_of(card: Path) -> Path:
    return card.parent / read_card(card)["weights"]["file"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(card: Path, *words: str) -> str:
    """Assert load_bundle refuses `card` with a message naming the file and containing `words`."""
    with pytest.raises(ModelError) as info:
        load_bundle(card)
    message = str(info.value)
    assert "Traceback" not in message and len(message) < 400
    assert card.name in message or weights_of(card).name in message, message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def test_pristine_bundle_loads(bundle: Path) -> None:
    loaded = load_bundle(bundle)
    assert isinstance(loaded, ModelBundle) and loaded.labels and loaded.sha256 == sha256(weights_of(bundle))


@pytest.mark.parametrize("where", ["header", "middle", "last"])
def test_one_flipped_byte_is_refused(bundle: Path, where: str) -> None:
    weights = weights_of(bundle)
    data = bytearray(weights.read_bytes())
    header_len = struct.unpack("<Q", data[:8])[0]
    offset = {"header": 8 + header_len // 2, "middle": len(data) // 2, "last": len(data) - 1}[where]
    data[offset] ^= 0x01
    weights.write_bytes(bytes(data))
    refused(bundle, "sha-256 does not match")


def test_card_pointing_to_other_weights_is_refused(bundle: Path, other: Path) -> None:
    """Another model's weights under this card's file name: the SHA-256 differs."""
    shutil.copy2(weights_of(other), weights_of(bundle))
    refused(bundle, "sha-256 does not match")


def test_card_naming_other_weights_with_their_sha_is_refused(bundle: Path, other: Path) -> None:
    """A card edited to point at another model's file *and* its hash: the tensors do not fit the card."""
    target = weights_of(other)
    shutil.copy2(target, bundle.parent / target.name)
    card = read_card(bundle)
    card["weights"] = {**card["weights"], "file": target.name, "sha256": sha256(target)}
    write_card(bundle, card)
    refused(bundle, "do not fit")


# --- pickles ----------------------------------------------------------------------------------------------


class Canary:
    """Unpickling runs `exec` of code that creates a marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",))


def plain_pickle(marker: Path) -> bytes:
    return pickle.dumps({"features.0.weight": Canary(marker)}, protocol=4)


def torch_zip_pickle(marker: Path) -> bytes:
    """The layout of a `torch.save` file (zip with data.pkl): what `torch.load(weights_only=False)` executes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", plain_pickle(marker))
        zf.writestr("archive/version", "3\n")
        zf.writestr("archive/byteorder", "little")
    return buf.getvalue()


@pytest.mark.parametrize("make", [plain_pickle, torch_zip_pickle], ids=["pickle", "torch-zip"])
def test_pickle_disguised_as_safetensors_is_refused_unexecuted(bundle: Path, tmp_path: Path,
                                                               make: Callable[[Path], bytes]) -> None:
    marker = tmp_path / "canary.txt"
    payload = make(marker)
    # The canary is live: unpickling this payload does run it.
    pickle.loads(plain_pickle(marker))
    assert marker.read_text() == "unpickled"
    marker.unlink()

    weights = weights_of(bundle)
    weights.write_bytes(payload)
    card = read_card(bundle)
    card["weights"]["sha256"] = sha256(weights)  # the card vouches for it: must still be refused
    write_card(bundle, card)
    refused(bundle, "not a valid safetensors file")
    assert not marker.exists(), "the pickle was executed"


def test_truncated_safetensors_with_matching_sha_is_refused(bundle: Path) -> None:
    weights = weights_of(bundle)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    card = read_card(bundle)
    card["weights"]["sha256"] = sha256(weights)
    write_card(bundle, card)
    refused(bundle, "not a valid safetensors file")


def test_safetensors_header_claiming_huge_size_is_refused(bundle: Path) -> None:
    weights = weights_of(bundle)
    weights.write_bytes(struct.pack("<Q", 2**62) + b'{"x": 1}')
    card = read_card(bundle)
    card["weights"]["sha256"] = sha256(weights)
    write_card(bundle, card)
    refused(bundle, "not a valid safetensors file")


# --- the card ---------------------------------------------------------------------------------------------


def edit_card(card_path: Path, edit: Callable[[dict], None]) -> Path:
    card = read_card(card_path)
    edit(card)
    return write_card(card_path, card)


def test_unknown_card_keys_are_refused(bundle: Path) -> None:
    edit_card(bundle, lambda c: c.update(exec_on_load="rm -rf /", weights_url="http://example.invalid/w"))
    refused(bundle, "unknown keys", "exec_on_load")


def test_unknown_label_is_refused(bundle: Path) -> None:
    def edit(card: dict) -> None:
        card["labels"][0] = "Covid Detector"
        card["thresholds"] = {lab: 0.5 for lab in card["labels"]}

    edit_card(bundle, edit)
    refused(bundle, "unknown labels", "Covid Detector")


def test_unknown_architecture_is_refused(bundle: Path) -> None:
    edit_card(bundle, lambda c: c.update(architecture="vit_h_14_from_the_internet"))
    refused(bundle, "unknown architecture")


def test_missing_weights_are_refused(bundle: Path) -> None:
    weights_of(bundle).unlink()
    refused(bundle, "missing")


def test_weights_outside_the_card_folder_are_refused(bundle: Path) -> None:
    edit_card(bundle, lambda c: c["weights"].update(file="../" + c["weights"]["file"]))
    refused(bundle, "beside the card")


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"format": "cxrviewer-model-card/1"}', "\xff\xfe"])
def test_malformed_card_is_refused(bundle: Path, text: str) -> None:
    bundle.write_bytes(text.encode("latin-1"))
    with pytest.raises(ModelError) as info:
        load_bundle(bundle)
    assert bundle.name in str(info.value)


def test_cli_refuses_a_tampered_model_without_traceback(bundle: Path, shared_data: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from cxrviewer.predict import main

    weights = weights_of(bundle)
    data = bytearray(weights.read_bytes())
    data[len(data) // 3] ^= 0x80
    weights.write_bytes(bytes(data))
    image = sorted((shared_data / "nih" / "images").glob("*.png"))[0]
    assert main(["--model", str(bundle), "--quiet", str(image)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "SHA-256 does not match" in err and "Traceback" not in err
