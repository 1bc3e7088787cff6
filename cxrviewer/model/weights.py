"""Model bundles: a JSON model card plus safetensors weights, checked against the card's SHA-256.

Nothing is ever unpickled. A bundle is refused, with a message naming the file and the cause, when
the weights are missing or altered, the card is malformed, names an unknown architecture or label,
or holds keys this version does not understand, or when the card's content does not match the seal
`save_bundle` wrote into it (a modified card loads only with ``allow_modified_card=True``, and then says
so: `ModelBundle.card_status`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cxrviewer.model.card import ALLOW_MODIFIED_FLAG, CARD_FORMAT, MODIFIED_CARD, CardError, ModelCard, ModelError
from cxrviewer.model.network import CXRNet, build_network

__all__ = ["CARD_FORMAT", "CardError", "ModelBundle", "ModelCard", "ModelError", "bundled_card_path",
           "load_bundle", "save_bundle", "sha256_file", "validate_card"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelBundle:
    """A loaded, verified model: the network in eval mode and its card."""

    network: CXRNet
    card: ModelCard
    card_path: Path

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


def load_bundle(card_path: str | Path, device: str = "cpu", *, allow_modified_card: bool = False) -> ModelBundle:
    """Load and verify a model bundle from its card (JSON) path.

    A card whose content does not match its seal (or that has none) is refused unless `allow_modified_card`;
    the bundle then reports it (`ModelBundle.card_status` "modified")."""
    card_path = Path(card_path)
    card = ModelCard.read(card_path)
    weights_path = card_path.parent / card.weights.file
    if not weights_path.is_file():
        raise ModelError(f"{card_path}: weights file {weights_path.name} is missing")
    actual = sha256_file(weights_path)
    if actual != card.weights.sha256:
        raise ModelError(f"{weights_path.name}: SHA-256 does not match the model card "
                         "(file altered or belongs to another model); refusing to load it")
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
    network.eval().to(device)
    problem = card.seal_problem()
    if problem is not None:
        if not allow_modified_card:
            raise ModelError(f"{card_path}: {MODIFIED_CARD}: {problem}; refusing to load it "
                             f"({ALLOW_MODIFIED_FLAG} loads it anyway, marked as modified)")
        log.warning("%s: loading a %s as asked: %s", card_path.name, MODIFIED_CARD, problem)
    return ModelBundle(network, card, card_path)


def save_bundle(network: CXRNet, card: ModelCard | Mapping[str, Any], card_path: str | Path,
                fp16: bool = True) -> Path:
    """Write weights (safetensors) beside the card and write the card with the weights' file name and SHA-256,
    sealed (`ModelCard.sealed`).

    ``card`` is a `ModelCard` or its JSON object; ``format``, ``architecture``, ``weights`` and ``seal`` are
    filled in here (a JSON object may leave them out).
    """
    card_path = Path(card_path)
    card_path.parent.mkdir(parents=True, exist_ok=True)
    weights_path = card_path.with_suffix(".safetensors")
    state = {k: (v.detach().half() if fp16 and v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in network.state_dict().items()}
    tmp_weights = weights_path.with_name(weights_path.name + ".tmp")
    save_file(state, str(tmp_weights), metadata={"format": "cxrviewer"})
    tmp_weights.chmod(0o644)  # readable by every user of a system-wide installation
    tmp_weights.replace(weights_path)
    doc = card.to_json() if isinstance(card, ModelCard) else dict(card)
    doc["format"] = CARD_FORMAT
    doc["architecture"] = network.arch
    doc["weights"] = {"file": weights_path.name, "sha256": sha256_file(weights_path),
                      "dtype": "float16" if fp16 else "float32"}
    doc.pop("seal", None)
    parsed = ModelCard.from_json(doc, str(card_path)).sealed()
    tmp_card = card_path.with_name(card_path.name + ".tmp")
    tmp_card.write_text(parsed.dumps(), encoding="utf-8")
    tmp_card.replace(card_path)
    return card_path


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


def torch_threads(n: int | None = None) -> None:
    """Use all available cores for intra-op parallelism (call once at start-up)."""
    if n:
        torch.set_num_threads(n)
