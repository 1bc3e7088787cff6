"""The one exception type of the export layer."""

from __future__ import annotations


class ExportError(Exception):
    """An export could not be written; the message says which file or input and why, in plain words.

    Messages never contain patient identifiers (file names at most).
    """
