"""Model bundles: a JSON model card plus safetensors weights, checked against the card's SHA-256.

Nothing is ever unpickled. A bundle is refused, with a message naming the file and the cause, when
the weights are missing or altered, the card is malformed, names an unknown architecture or label,
or holds keys this version does not understand.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cxrviewer.labels import KNOWN_LABELS
from cxrviewer.model.network import ARCHITECTURES, CXRNet, build_network

CARD_FORMAT = "cxrviewer-model-card/1"
CARD_KEYS_REQUIRED = {"format", "name", "version", "architecture", "input_size", "preprocessing", "labels",
                      "thresholds", "weights"}
CARD_KEYS_OPTIONAL = {"description", "high_sensitivity_thresholds", "validation", "cam", "datasets",
                      "not_covered", "created", "trainer_version", "training", "gate", "intended_use",
                      "limitations", "ensemble_of"}


class ModelError(Exception):
    """A model bundle cannot be used; the message says which file and why."""


@dataclass
class ModelBundle:
    """A loaded, verified model: the network in eval mode and its card."""

    network: CXRNet
    card: dict[str, Any]
    card_path: Path

    @property
    def labels(self) -> list[str]:
        return list(self.card["labels"])

    @property
    def input_size(self) -> int:
        return int(self.card["input_size"])

    @property
    def name(self) -> str:
        return str(self.card["name"])

    @property
    def sha256(self) -> str:
        return str(self.card["weights"]["sha256"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def validate_card(card: Any, where: str) -> dict[str, Any]:
    """Check a card's structure; return it or raise ModelError naming the problem."""
    if not isinstance(card, dict):
        raise ModelError(f"{where}: the model card is not a JSON object")
    if card.get("format") != CARD_FORMAT:
        raise ModelError(f"{where}: not a cxrviewer model card (format {card.get('format')!r}, "
                         f"expected {CARD_FORMAT!r})")
    missing = CARD_KEYS_REQUIRED - card.keys()
    if missing:
        raise ModelError(f"{where}: model card lacks {', '.join(sorted(missing))}")
    unknown = card.keys() - CARD_KEYS_REQUIRED - CARD_KEYS_OPTIONAL
    if unknown:
        raise ModelError(f"{where}: model card has unknown keys {', '.join(sorted(unknown))}")
    if card["architecture"] not in ARCHITECTURES:
        raise ModelError(f"{where}: unknown architecture {card['architecture']!r}")
    labels = card["labels"]
    if not isinstance(labels, list) or not labels or len(set(labels)) != len(labels):
        raise ModelError(f"{where}: labels must be a non-empty list without repeats")
    bad = [lab for lab in labels if lab not in KNOWN_LABELS]
    if bad:
        raise ModelError(f"{where}: unknown labels {', '.join(map(str, bad))}")
    thresholds = card["thresholds"]
    if not isinstance(thresholds, dict) or set(thresholds) != set(labels):
        raise ModelError(f"{where}: thresholds must give one operating point per label")
    if not all(isinstance(v, int | float) and 0.0 <= v <= 1.0 for v in thresholds.values()):
        raise ModelError(f"{where}: thresholds must be probabilities in [0, 1]")
    size = card["input_size"]
    if not isinstance(size, int) or not 32 <= size <= 2048:
        raise ModelError(f"{where}: input_size must be an integer between 32 and 2048")
    weights = card["weights"]
    if not isinstance(weights, dict) or not {"file", "sha256"} <= weights.keys():
        raise ModelError(f"{where}: weights entry must name a file and its sha256")
    if Path(str(weights["file"])).name != weights["file"]:
        raise ModelError(f"{where}: the weights file must sit beside the card (no directories)")
    return card


def load_bundle(card_path: str | Path, device: str = "cpu") -> ModelBundle:
    """Load and verify a model bundle from its card (JSON) path."""
    card_path = Path(card_path)
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{card_path}: model card not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{card_path}: model card is not readable JSON ({exc})") from None
    validate_card(card, str(card_path))
    weights_path = card_path.parent / card["weights"]["file"]
    if not weights_path.is_file():
        raise ModelError(f"{card_path}: weights file {weights_path.name} is missing")
    actual = sha256_file(weights_path)
    if actual != card["weights"]["sha256"]:
        raise ModelError(f"{weights_path.name}: SHA-256 does not match the model card "
                         "(file altered or belongs to another model); refusing to load it")
    try:
        state = load_file(str(weights_path), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{weights_path.name}: not a valid safetensors file ({exc})") from None
    network = build_network(card["architecture"], len(card["labels"]))
    try:
        network.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{weights_path.name}: weights do not fit {card['architecture']} with "
                         f"{len(card['labels'])} labels ({str(exc).splitlines()[0]})") from None
    network.eval().to(device)
    return ModelBundle(network, card, card_path)


def save_bundle(network: CXRNet, card: dict[str, Any], card_path: str | Path, fp16: bool = True) -> Path:
    """Write weights (safetensors) beside the card and fill in the card's file name and SHA-256."""
    card_path = Path(card_path)
    card_path.parent.mkdir(parents=True, exist_ok=True)
    weights_path = card_path.with_suffix(".safetensors")
    state = {k: (v.detach().half() if fp16 and v.is_floating_point() else v.detach()).contiguous().cpu()
             for k, v in network.state_dict().items()}
    tmp_weights = weights_path.with_name(weights_path.name + ".tmp")
    save_file(state, str(tmp_weights), metadata={"format": "cxrviewer"})
    tmp_weights.chmod(0o644)  # readable by every user of a system-wide installation
    tmp_weights.replace(weights_path)
    card = dict(card)
    card["format"] = CARD_FORMAT
    card["architecture"] = network.arch
    card["weights"] = {"file": weights_path.name, "sha256": sha256_file(weights_path),
                       "dtype": "float16" if fp16 else "float32"}
    validate_card(card, str(card_path))
    tmp_card = card_path.with_name(card_path.name + ".tmp")
    tmp_card.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
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
