"""The outbox: results wait here until the remote has confirmed them; a failed send never loses one.

Layout: ``OUTBOX/pending/<batch>/*.dcm`` holds what still has to go; ``OUTBOX/sent/<batch>/`` receives each
file once the remote answered success (or deletes it, with ``keep_sent=False``). A file is moved out of
``pending`` only after its own C-STORE succeeded, so a crash, a dead network or a remote killed in the
middle of a batch leaves every unconfirmed result in ``pending`` for the next `deliver`.

Files arrive either by `add` (copied in atomically) or by writing into a hidden staging folder
(`stage_batch()`, e.g. with `cxrviewer.report.export.export_study`) that `commit_batch` renames into
``pending`` in one step, so a crash never leaves half a study's results to be sent; hidden temporaries and
staging folders are never sent, and `clean_orphans` removes what a crash left of them.
`deliver` retries objects that did not reach the remote (connection refused, association lost,
out-of-resources status) up to ``retries`` times with a doubling delay; files the remote refused for
good stay in ``pending`` too (a corrected configuration may deliver them) and are reported as failed.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cxrviewer.fileio import atomic_write_bytes
from cxrviewer.net.config import Limits, RemoteNode
from cxrviewer.net.errors import NetError
from cxrviewer.net.send import DELIVERED, FAILED, NOT_SENT, SendResult, send_files

log = logging.getLogger(__name__)

STAGING_PREFIX = ".staging-"


@dataclass
class DeliveryReport:
    """What one `deliver` call did: the last result per file, and how many files are still pending."""

    results: list[SendResult] = field(default_factory=list)
    pending: int = 0
    attempts: int = 0

    @property
    def delivered(self) -> list[SendResult]:
        return [r for r in self.results if r.status == DELIVERED]

    @property
    def undelivered(self) -> list[SendResult]:
        return [r for r in self.results if r.status != DELIVERED]

    def summary(self) -> str:
        parts = [f"{len(self.delivered)} delivered"]
        failed = sum(r.status == FAILED for r in self.results)
        not_sent = sum(r.status == NOT_SENT for r in self.results)
        if failed:
            parts.append(f"{failed} refused by the remote")
        if not_sent:
            parts.append(f"{not_sent} not sent")
        parts.append(f"{self.pending} waiting in the outbox")
        return ", ".join(parts)


def retryable(result: SendResult) -> bool:
    """Worth another attempt now: never reached the remote, or the remote was out of resources."""
    return result.status == NOT_SENT or (result.code is not None and 0xA700 <= result.code <= 0xA7FF)


def _batch_name(label: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._")[:60] or "batch"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{safe}-{uuid.uuid4().hex[:6]}"


class Outbox:
    """A folder of results waiting for delivery; thread-safe within one process."""

    def __init__(self, root: str | Path, keep_sent: bool = True) -> None:
        self.root = Path(root)
        self.pending_dir = self.root / "pending"
        self.sent_dir = self.root / "sent"
        self.keep_sent = keep_sent
        self._lock = threading.Lock()

    def ensure(self) -> Path:
        try:
            self.pending_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NetError(f"cannot create outbox folder {self.pending_dir}: {exc.strerror or exc}") from None
        return self.pending_dir

    def new_batch(self, label: str = "batch") -> Path:
        """A fresh folder under ``pending`` to write one study's results into (sent as soon as files appear)."""
        folder = self.ensure() / _batch_name(label)
        folder.mkdir()
        return folder

    def stage_batch(self, label: str = "batch") -> Path:
        """A fresh hidden folder under ``pending`` to write one study's results into; `commit_batch` sends it."""
        folder = self.ensure() / f"{STAGING_PREFIX}{_batch_name(label)}"
        folder.mkdir()
        return folder

    def commit_batch(self, staging: Path) -> Path:
        """Make a staged batch pending (one rename); an empty one is removed. Returns the pending folder."""
        target = staging.with_name(staging.name.removeprefix(STAGING_PREFIX))
        if not any(staging.iterdir()):
            staging.rmdir()
            return target
        os.replace(staging, target)
        return target

    def discard_batch(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def clean_orphans(self) -> int:
        """Remove staging folders and temporaries a crash left behind (call before anything writes here)."""
        removed = 0
        if not self.pending_dir.is_dir():
            return 0
        for entry in self.pending_dir.iterdir():
            if entry.name.startswith(STAGING_PREFIX) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
            elif entry.is_dir():
                for tmp in entry.glob(".*"):
                    tmp.unlink(missing_ok=True)
                    removed += 1
                if not any(entry.iterdir()):
                    entry.rmdir()
        return removed

    def add(self, paths: Iterable[str | Path], label: str = "batch") -> list[Path]:
        """Copy files into a new batch (each atomically); return their outbox paths."""
        sources = [Path(p) for p in paths]
        folder = self.new_batch(label)
        copied = []
        for path in sources:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise NetError(f"cannot read {path.name} for the outbox: {exc.strerror or exc}") from None
            copied.append(atomic_write_bytes(folder / path.name, data))
        return copied

    def pending(self) -> list[Path]:
        """Files waiting for delivery, oldest batch first."""
        if not self.pending_dir.is_dir():
            return []
        files = [p for p in self.pending_dir.glob("*/*.dcm")
                 if not p.name.startswith(".") and not p.parent.name.startswith(".")]
        return sorted(files, key=lambda p: (p.parent.name, p.name))

    def _done(self, path: Path) -> None:
        """Take a delivered file out of ``pending`` (into ``sent`` or deleted)."""
        try:
            if self.keep_sent:
                target = self.sent_dir / path.parent.name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
            else:
                path.unlink()
        except FileNotFoundError:
            return
        folder = path.parent
        if not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)

    def deliver(self, remote: RemoteNode, calling_ae: str, limits: Limits | None = None, *, retries: int = 2,
                retry_delay: float = 2.0, paths: Iterable[Path] | None = None,
                on_result: Callable[[SendResult], None] | None = None,
                stop: threading.Event | None = None) -> DeliveryReport:
        """Send pending files (all, or `paths` among them) and move each confirmed one out of ``pending``."""
        with self._lock:
            todo = self.pending() if paths is None else [Path(p) for p in paths if Path(p).is_file()]
            report = DeliveryReport()
            last: dict[Path, SendResult] = {}

            def record(result: SendResult) -> None:
                last[result.path] = result
                if result.delivered:
                    self._done(result.path)
                if on_result is not None:
                    try:
                        on_result(result)
                    except Exception:
                        log.exception("outbox on_result listener failed")

            attempt = 0
            while todo:
                attempt += 1
                results = send_files(todo, remote, calling_ae, limits, on_result=record)
                todo = [r.path for r in results if retryable(r)]
                if not todo or attempt > retries:
                    break
                delay = retry_delay * (2 ** (attempt - 1))
                log.info("%d object(s) not delivered to %s; retrying in %.1f s", len(todo), remote, delay)
                if stop is not None and stop.wait(delay):
                    break
                if stop is None:
                    time.sleep(delay)
            report.results = list(last.values())
            report.attempts = attempt
            report.pending = len(self.pending())
        if report.results:
            log.info("outbox delivery to %s: %s", remote, report.summary())
        return report
