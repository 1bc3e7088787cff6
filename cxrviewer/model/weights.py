"""Model bundles: a JSON model card plus safetensors weights, checked against the card's SHA-256.

Nothing is ever unpickled. A bundle is refused, with a message naming the file and the cause, when
the weights are missing or altered, the card is malformed, names an unknown architecture or label,
or holds keys this version does not understand, or when the card's content does not match the seal
`save_bundle` wrote into it (a modified card loads only with ``allow_modified_card=True``, and then says
so: `ModelBundle.card_status`).

A card may also name the network exported to ONNX (``onnx``, written by `save_onnx`); `read_verified` gives its
bytes only when they match the card's SHA-256. torch loads only when the torch network is built: eagerly by
default, on first use of `ModelBundle.network` with ``load_bundle(..., lazy_network=True)`` (the engine, which
may never need it when ONNX Runtime runs the model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrviewer.fileio import atomic_write, atomic_write_bytes, atomic_write_text
from cxrviewer.model.card import (
    ALLOW_MODIFIED_FLAG,
    CARD_FORMAT,
    MODIFIED_CARD,
    CardError,
    ModelCard,
    ModelError,
    OnnxRef,
)

if TYPE_CHECKING:
    from cxrviewer.model.network import CXRNet

__all__ = ["CARD_FORMAT", "CardError", "ModelBundle", "ModelCard", "ModelError", "bundled_card_path",
           "load_bundle", "read_verified", "save_bundle", "save_onnx", "sha256_file", "validate_card"]

log = logging.getLogger(__name__)


class ModelBundle:
    """A verified model: its card and the network in eval mode (built on first use when loaded lazily)."""

    def __init__(self, card: ModelCard, card_path: Path, network: CXRNet | None = None, device: str = "cpu"):
        self.card = card
        self.card_path = card_path
        self._network = network
        self._device = device
        self._lock = threading.Lock()

    @property
    def network(self) -> CXRNet:
        """The torch network; a lazily loaded bundle checks and loads its weights here (ModelError if unusable)."""
        if self._network is None:
            with self._lock:
                if self._network is None:
                    self._network = _load_network(self.card, self.card_path, self._device)
        return self._network

    @property
    def network_loaded(self) -> bool:
        return self._network is not None

    @property
    def labels(self) -> list[str]:
        return list(self.card.labels)

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def crop(self) -> str | None:
        """The preprocessing crop mode the network was trained with (`cxrviewer.model.preprocess.CROPS`)."""
        return self.card.preprocessing.crop

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def sha256(self) -> str:
        return self.card.weights.sha256

    @property
    def card_sha256(self) -> str:
        """SHA-256 of the card's canonical content (reported beside the weights' SHA-256)."""
        return self.card.card_sha256

    @property
    def card_status(self) -> str:
        """"sealed", or "modified" for a card loaded with ``allow_modified_card``."""
        return self.card.card_status


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def validate_card(card: Any, where: str) -> ModelCard:
    """Parse and check a card's JSON object; return the `ModelCard` or raise ModelError naming the problem."""
    return ModelCard.from_json(card, where)


def _altered(path: Path) -> ModelError:
    return ModelError(f"{path.name}: SHA-256 does not match the model card "
                      "(file altered or belongs to another model); refusing to load it")


def read_verified(path: Path, sha256: str) -> bytes:
    """The bytes of a file the card names, read once and checked against its SHA-256 (ModelError otherwise).

    The caller hands these same bytes on (ONNX Runtime reads them from memory), so what runs is what was checked."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise _altered(path)
    return data


def _load_network(card: ModelCard, card_path: Path, device: str) -> CXRNet:
    """The card's network with its checked weights, in eval mode (torch loads here)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from cxrviewer.model.network import build_network

    weights_path = card_path.parent / card.weights.file
    if not weights_path.is_file():
        raise ModelError(f"{card_path}: weights file {weights_path.name} is missing")
    actual = sha256_file(weights_path)
    if actual != card.weights.sha256:
        raise _altered(weights_path)
    try:
        state = load_file(str(weights_path), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights_path.name}: not a valid safetensors file ({exc})") from None
    network = build_network(card.architecture, len(card.labels))
    try:
        network.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights_path.name}: weights do not fit {card.architecture} with "
                         f"{len(card.labels)} labels ({str(exc).splitlines()[0]})") from None
    return network.eval().to(device)


def load_bundle(card_path: str | Path, device: str = "cpu", *, allow_modified_card: bool = False,
                lazy_network: bool = False) -> ModelBundle:
    """Load and verify a model bundle from its card (JSON) path.

    A card whose content does not match its seal (or that has none) is refused unless `allow_modified_card`;
    the bundle then reports it (`ModelBundle.card_status` "modified"). `lazy_network`: check and load the weights
    on the first use of `ModelBundle.network` (their file must exist now), so that a caller running the ONNX
    export never loads torch."""
    card_path = Path(card_path)
    card = ModelCard.read(card_path)
    weights_path = card_path.parent / card.weights.file
    if not weights_path.is_file():
        raise ModelError(f"{card_path}: weights file {weights_path.name} is missing")
    network = None if lazy_network else _load_network(card, card_path, device)
    problem = card.seal_problem()
    if problem is not None:
        if not allow_modified_card:
            raise ModelError(f"{card_path}: {MODIFIED_CARD}: {problem}; refusing to load it "
                             f"({ALLOW_MODIFIED_FLAG} loads it anyway, marked as modified)")
        log.warning("%s: loading a %s as asked: %s", card_path.name, MODIFIED_CARD, problem)
    return ModelBundle(card, card_path, network, device)


def save_bundle(network: CXRNet, card: ModelCard | Mapping[str, Any], card_path: str | Path,
                fp16: bool = True) -> Path:
    """Write weights (safetensors) beside the card and write the card with the weights' file name and SHA-256,
    sealed (`ModelCard.sealed`).

    ``card`` is a `ModelCard` or its JSON object; ``format``, ``architecture``, ``weights`` and ``seal`` are
    filled in here (a JSON object may leave them out). An ``onnx`` entry is dropped: it described other weights
    (`save_onnx` adds the export of these).
    """
    from safetensors.torch import save_file

    card_path = Path(card_path)
    card_path.parent.mkdir(parents=True, exist_ok=True)
    weights_path = card_path.with_suffix(".safetensors")
    state = {k: (v.detach().half() if fp16 and v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in network.state_dict().items()}
    # 0644: readable by every user of a system-wide installation
    atomic_write(weights_path, lambda p: save_file(state, str(p), metadata={"format": "cxrviewer"}), mode=0o644)
    doc = card.to_json() if isinstance(card, ModelCard) else dict(card)
    doc["format"] = CARD_FORMAT
    doc["architecture"] = network.arch
    doc["weights"] = {"file": weights_path.name, "sha256": sha256_file(weights_path),
                      "dtype": "float16" if fp16 else "float32"}
    doc.pop("seal", None)
    doc.pop("onnx", None)
    _write_sealed(ModelCard.from_json(doc, str(card_path)), card_path)
    return card_path


def _write_sealed(card: ModelCard, card_path: Path) -> None:
    """Write `card`, sealed over its content, to `card_path` (atomically)."""
    atomic_write_text(card_path, card.sealed().dumps(), mode=0o644)


def save_onnx(card_path: str | Path, model: bytes, *, opset: int, exported_with: str,
              parity: Mapping[str, Any]) -> Path:
    """Write the ONNX export `model` beside a sealed card (``<card stem>.onnx``) and re-seal the card with its
    file name and SHA-256 under ``onnx``; the card's other content is kept as it was. Returns the ONNX path.

    A modified card is refused: re-sealing it would present edited values as the trainer's."""
    card_path = Path(card_path)
    card = ModelCard.read(card_path)
    problem = card.seal_problem()
    if problem is not None:
        raise ModelError(f"{card_path}: {MODIFIED_CARD}: {problem}; not re-sealing it with an ONNX export")
    onnx_path = card_path.with_suffix(".onnx")
    if onnx_path.name == card.weights.file:
        raise ModelError(f"{card_path}: the ONNX file would replace the weights file {onnx_path.name}")
    atomic_write_bytes(onnx_path, model, mode=0o644)
    ref = OnnxRef(file=onnx_path.name, sha256=hashlib.sha256(model).hexdigest(), opset=opset,
                  exported_with=exported_with, parity=dict(parity))
    _write_sealed(card.replace(onnx=ref), card_path)
    return onnx_path


def bundled_card_path() -> Path:
    """The model card shipped with the app (``models/`` in the source tree, installed as package data).

    The repository holds exactly one card; an installation upgraded in place can keep an older one beside
    it, so the most recently created card wins (cards without a readable date count as oldest).
    """
    root = resources.files("cxrviewer._models")
    cards = [Path(str(p)) for p in root.iterdir() if p.name.endswith(".json")]
    if not cards:
        raise ModelError("no bundled model found in the installation (models/*.json)")

    def created(path: Path) -> str:
        try:
            return str(json.loads(path.read_text(encoding="utf-8")).get("created", ""))
        except (OSError, ValueError, AttributeError):
            return ""

    return max(sorted(cards), key=created)

