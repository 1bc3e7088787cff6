"""Atomic file writing for exports (`cxrviewer.fileio` underneath), with `ExportError` messages.

`StagedFiles` extends this to a group of files (one export): all are written to temporaries first and
renamed only when every one succeeded, so a failed export leaves neither half-written files nor a
partial set behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from cxrviewer import fileio
from cxrviewer.fileio import Writer, remove_quietly
from cxrviewer.report.errors import ExportError


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def ensure_folder(folder: str | Path) -> Path:
    """Create `folder` if needed and check that files can be created in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create export folder {folder}: {_reason(exc)}") from None
    if not folder.is_dir():
        raise ExportError(f"export target {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ExportError(f"export folder {folder} is not writable: permission denied")
    return folder


def write_to_temp(target: Path, writer: Writer) -> Path:
    """Run `writer(temp_path)` for a temporary file beside `target`; remove it again on any failure."""

    def checked(path: Path) -> None:
        writer(path)
        if not path.is_file() or path.stat().st_size == 0:
            raise ExportError(f"cannot write {target}: the writer produced no data")

    try:
        return fileio.write_temp(target, checked)
    except OSError as exc:
        raise ExportError(f"cannot write {target}: {_reason(exc)}") from None


def atomic_write(target: str | Path, writer: Writer) -> Path:
    """Write one file atomically: `writer` fills a temporary path, which then replaces `target`."""
    target = Path(target)
    tmp = write_to_temp(target, writer)
    try:
        os.replace(tmp, target)
    except OSError as exc:
        remove_quietly(tmp)
        raise ExportError(f"cannot write {target}: {_reason(exc)}") from None
    return target


def atomic_write_bytes(target: str | Path, data: bytes) -> Path:
    """Write `data` to `target` atomically."""
    return atomic_write(target, lambda p: p.write_bytes(data))


class StagedFiles:
    """A group of files written all-or-nothing.

    Use as a context manager: `stage` writes each file to a temporary beside its target; leaving the
    block normally renames them all into place, leaving it with an exception removes the temporaries.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self.written: list[Path] = []

    def stage(self, target: str | Path, writer: Writer) -> Path:
        target = Path(target)
        if any(t == target for t, _ in self._staged):
            raise ExportError(f"two exported files would share the name {target.name}")
        self._staged.append((target, write_to_temp(target, writer)))
        return target

    def abort(self) -> None:
        for _, tmp in self._staged:
            remove_quietly(tmp)
        self._staged.clear()

    def commit(self) -> list[Path]:
        """Rename every staged file into place (each rename is atomic)."""
        try:
            while self._staged:
                target, tmp = self._staged[0]
                os.replace(tmp, target)
                self._staged.pop(0)
                self.written.append(target)
        except OSError as exc:
            target = self._staged[0][0]
            self.abort()
            raise ExportError(f"cannot write {target}: {_reason(exc)}") from None
        return list(self.written)

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
