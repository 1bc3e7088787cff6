"""Atomic file writes, for every layer: a temporary beside the target, flushed to disk, renamed into place.

A reader (or a crash) never sees a half-written file: `write_temp` runs a writer on a hidden temporary
(``.<name>.<random>.tmp``) in the target's folder and flushes it to disk; `atomic_write` renames it over the
target (`os.replace`, atomic on POSIX and Windows). Any failure removes the temporary and re-raises the
original `OSError` (callers turn it into their own message: `cxrviewer.report.atomic` into an
`ExportError`). Finished files get the usual permissions (0666 minus the umask); `mode` overrides them.
`TEMP_SUFFIX` lets a folder's owner recognise what a crash left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"

# Temporaries are created private (0600); finished files get 0666 minus the umask.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

Writer = Callable[[Path], object]  # fills the path it is given; what it returns is ignored
Data = bytes | bytearray | memoryview


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def write_temp(target: str | Path, writer: Writer, mode: int | None = None) -> Path:
    """Run `writer` on a new temporary beside `target`, flush it to disk and return its path."""
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, (0o666 & ~_UMASK) if mode is None else mode)
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp


def atomic_write(target: str | Path, writer: Writer, mode: int | None = None) -> Path:
    """Write one file atomically: `writer` fills a temporary, which then replaces `target`."""
    target = Path(target)
    tmp = write_temp(target, writer, mode)
    try:
        os.replace(tmp, target)
    except BaseException:
        remove_quietly(tmp)
        raise
    return target


def atomic_write_stream(target: str | Path, write: Callable[[BinaryIO], object], mode: int | None = None) -> Path:
    """`write(file)` into an open binary temporary, then replace `target` (for np.save, np.savez, torch.save)."""

    def to_file(path: Path) -> None:
        with open(path, "wb") as fh:
            write(fh)

    return atomic_write(target, to_file, mode)


def atomic_write_bytes(target: str | Path, data: Data | Sequence[Data], mode: int | None = None) -> Path:
    """Write `data` (one buffer, or several written in order without joining them) to `target` atomically."""
    chunks = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)

    def write(fh: BinaryIO) -> None:
        for chunk in chunks:
            fh.write(chunk)

    return atomic_write_stream(target, write, mode)


def atomic_write_text(target: str | Path, text: str, mode: int | None = None) -> Path:
    """Write `text` as UTF-8 to `target` atomically."""
    return atomic_write_bytes(target, text.encode("utf-8"), mode)


def atomic_write_json(target: str | Path, obj: object, indent: int = 2) -> Path:
    """Write `obj` as JSON to `target` atomically."""
    return atomic_write_text(target, json.dumps(obj, indent=indent))
