"""The input gate's verdict, in a module of its own so that headless readers (reports, the CLI) can name
it without loading torch (`cxrviewer.model.gate` re-exports it)."""

from __future__ import annotations

from enum import StrEnum


class GateStatus(StrEnum):
    """Whether the second opinion applies to an image. A `str`: JSON and logs show "ok" / "rejected"."""

    OK = "ok"  # the model's output is shown (possibly with warnings, or with the check overridden)
    REJECTED = "rejected"  # the input check refused the image; no findings are given
