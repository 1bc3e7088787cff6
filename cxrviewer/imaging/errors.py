"""The one exception type the imaging layer raises for files it cannot open."""

from __future__ import annotations

from pathlib import Path


class ImageLoadError(Exception):
    """A file could not be opened as an image; the message names the file and the cause in plain words."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{Path(path).name}: {reason}")
