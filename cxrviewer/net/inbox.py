"""The inbox: received objects written atomically, one folder per study.

Layout: ``INBOX/study-<16 hex>/<Modality>-<16 hex>.dcm``. The hex parts are SHA-256 digests of the
Study and SOP Instance UIDs: folder and file names (which do reach the logs) carry no identifiers,
yet the same study always lands in the same folder and a re-sent instance replaces its earlier copy.
Each file is written to a hidden temporary beside its target, flushed to disk and renamed into place
(`cxrviewer.fileio.atomic_write_bytes`), so a reader of the inbox never sees a half-written file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cxrviewer.fileio import TEMP_SUFFIX, atomic_write_bytes, remove_quietly
from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.imaging.header import read_header
from cxrviewer.net.errors import NetError
from cxrviewer.net.sopclasses import IMAGE_CLASSES
from cxrviewer.report.dicom_common import MANUFACTURER

LEGACY_TEMP_SUFFIX = ".part"  # temporaries of earlier versions, cleaned like ours


def digest(uid: str) -> str:
    return hashlib.sha256(str(uid).encode("ascii", "replace")).hexdigest()[:16]


def _modality(value: str) -> str:
    text = re.sub(r"[^A-Za-z0-9]", "", str(value or ""))[:8]
    return text.upper() or "OT"


class Inbox:
    """A folder of received DICOM files grouped by study."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def ensure(self) -> Path:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NetError(f"cannot create inbox folder {self.root}: {exc.strerror or exc}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise NetError(f"inbox folder {self.root} is not writable")
        return self.root

    def study_dir(self, study_uid: str) -> Path:
        return self.root / f"study-{digest(study_uid)}"

    def target(self, study_uid: str, sop_uid: str, modality: str) -> Path:
        return self.study_dir(study_uid) / f"{_modality(modality)}-{digest(sop_uid)}.dcm"

    def store(self, data: bytes | Sequence[bytes | memoryview], *, study_uid: str, sop_uid: str,
              modality: str) -> tuple[Path, bool]:
        """Write one received object (DICOM file bytes, possibly in pieces); return (path, whether it
        replaced an earlier copy)."""
        target = self.target(study_uid, sop_uid, modality)
        target.parent.mkdir(parents=True, exist_ok=True)
        existed = target.exists()
        atomic_write_bytes(target, data, mode=0o644)
        return target, existed

    def files(self) -> list[Path]:
        """Every stored object, oldest first (temporaries excluded)."""
        found = [p for p in self.root.glob("study-*/*.dcm") if not p.name.startswith(".")]
        return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def clean_orphans(self) -> int:
        """Remove the temporaries of stores a crash interrupted (call before the receiver starts)."""
        removed = 0
        for suffix in (TEMP_SUFFIX, LEGACY_TEMP_SUFFIX):
            for tmp in self.root.glob(f"study-*/.*{suffix}"):
                remove_quietly(tmp)
                removed += 1
        return removed


def analysable(path: Path) -> bool:
    """Whether an inbox file is an image the node analyses (an image class, not our own result)."""
    try:
        ds = read_header(path)
    except (ImageLoadError, OSError, MemoryError):  # stored by the SCP, so readable; damaged since: not ours
        return False
    return str(ds.get("SOPClassUID", "")) in IMAGE_CLASSES and str(ds.get("Manufacturer", "")) != MANUFACTURER
