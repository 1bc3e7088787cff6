"""The node's journal: which received image has been answered, by which model, with what.

C-STORE success is sent once an image is safely in the inbox; from then on the node owes the sender an
answer (findings, or a notice that the image could not be analysed). The inbox itself is the durable
queue: an analysable image without a journal entry for the current model is unanswered, whether the node
crashed, the queue overflowed or the outbox disk was full. The node rescans for such images at start and
periodically (`unanswered`).

Layout: ``INBOX/.journal/<study folder>.<file stem>.json`` (names are the inbox's hashed names, no
identifiers), written atomically once the results are committed to the outbox::

    {"file": "study-…/CR-….dcm", "model": "<weights sha256[:16]>-<card sha256[:16]>",
     "answer": "findings" | "notice", "results": ["…sr.dcm", "…sc.dcm"], "message": "…", "at": "…"}

One entry per image and model: an image is answered once; re-sending it does not produce new results
(`answered`). Entries of another model do not count, so a new model answers the backlog again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cxrviewer.fileio import atomic_write_text

log = logging.getLogger(__name__)

FOLDER = ".journal"


def model_key(engine: Any) -> str:
    """The journal's name for the model behind `engine`: weights and card hashes (16 hex digits each)."""
    return f"{engine.sha256[:16]}-{engine.card_sha256[:16]}"


class Journal:
    """Answer records for the images of one inbox, for one model."""

    def __init__(self, inbox_root: str | Path, model: str) -> None:
        self.inbox_root = Path(inbox_root)
        self.root = self.inbox_root / FOLDER
        self.model = model
        self._answered: set[Path] = set()  # known answered by this model (entries are never taken back here)

    def entry_path(self, image: Path) -> Path:
        return self.root / f"{image.parent.name}.{image.stem}.json"

    def entry(self, image: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(self.entry_path(image).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def answered(self, image: Path) -> bool:
        if image in self._answered:
            return True
        entry = self.entry(image)
        if entry is not None and entry.get("model") == self.model:
            self._answered.add(image)
            return True
        return False

    def forget(self, image: Path) -> None:
        """Remove the entry of `image` (it will be answered again, with the same result UIDs)."""
        self._answered.discard(image)
        self.entry_path(image).unlink(missing_ok=True)

    def record(self, image: Path, answer: str, message: str, results: Sequence[Path] = ()) -> Path:
        """Write the entry for `image` (atomically; `OSError` when the disk refuses)."""
        self.root.mkdir(parents=True, exist_ok=True)
        entry = {"file": f"{image.parent.name}/{image.name}", "model": self.model, "answer": answer,
                 "results": [p.name for p in results], "message": message,
                 "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        path = atomic_write_text(self.entry_path(image), json.dumps(entry, indent=1) + "\n")
        self._answered.add(image)
        return path

    def unanswered(self, images: Iterable[Path]) -> list[Path]:
        return [p for p in images if not self.answered(p)]
