"""Measured records stored into a sealed model card after training: the abroad check's reference
(`cxrviewer.model.abroad`) and the harmonisation the site-shift battery chose (`cxrviewer.model.harmonise`).

Each writer reads the card right before writing it (temporary file + rename), changes only its own entry, checks
that the engine can read the result and re-seals the card. A modified card is refused: re-sealing would present
edited values as the trainer's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxrviewer.fileio import atomic_write_text
from cxrviewer.model.abroad import AbroadGate
from cxrviewer.model.card import ModelCard, ModelError
from cxrviewer.model.harmonise import Harmoniser


def _reseal(card_path: Path, what: str, change: Callable[[ModelCard], ModelCard]) -> ModelCard:
    card = ModelCard.read(card_path)
    problem = card.seal_problem()
    if problem is not None:
        raise ModelError(f"{card_path}: {problem}; not re-sealing it with {what}")
    updated = change(card).sealed()
    atomic_write_text(card_path, updated.dumps())
    return updated


def write_abroad_record(card_path: Path, record: dict[str, Any]) -> ModelCard:
    """Store `record` as ``gate["abroad"]`` and re-seal; a card without a gate entry is refused."""

    def change(card: ModelCard) -> ModelCard:
        if card.gate is None:
            raise ModelError(f"{card_path}: the card has no gate entry to add abroad statistics to")
        updated = card.replace(gate={**dict(card.gate), "abroad": record})
        AbroadGate.from_record(record)  # what the engine will read
        harmonise = updated.preprocessing.harmonise
        if harmonise is not None:  # a harmonising card keeps working on the new reference
            Harmoniser.from_records(dict(harmonise), record)
        return updated

    return _reseal(card_path, "abroad statistics", change)


def write_harmonise_record(card_path: Path, record: dict[str, Any] | None) -> ModelCard:
    """Store `record` as ``preprocessing["harmonise"]`` (None: remove it) and re-seal; the card must carry the
    abroad statistics the harmoniser uses."""

    def change(card: ModelCard) -> ModelCard:
        if record is not None:
            Harmoniser.from_records(record, (card.gate or {}).get("abroad"))
        return card.replace(preprocessing=dataclasses.replace(card.preprocessing, harmonise=record))

    return _reseal(card_path, "a harmonisation record", change)
