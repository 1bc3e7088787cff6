"""The headless node: receive images, analyse each one, send the SR + Secondary Capture back.

Three kinds of threads, none of them touching another's data:

* pynetdicom's server / association threads run the `StorageSCP`; for each stored image they only put
  its inbox path on the analysis queue (bounded);
* one analysis thread loads the image, runs the model and exports DICOM SR + SC into a staged outbox
  batch (`export_study`), commits the batch, records the answer in the journal and wakes the delivery
  thread;
* one delivery thread sends everything pending in the outbox to the remote (`Outbox.deliver`, with
  retries) whenever woken, at start-up and every ``retry_interval`` seconds while anything is pending.

No acknowledged image is left without an answer. The inbox is the durable queue and the journal
(`cxrviewer.net.journal`) says which images this model has answered: at start the node removes what a
crash left half-written, reports the backlog (unanswered images, results waiting in the outbox) and
queues it; every ``retry_interval`` (sooner when a retry is due) it rescans for unanswered images, so a
full queue, a crash or a full outbox disk (results retried with a doubling back-off, up to
`MAX_RETRY_DELAY_S`) delays an answer but never loses it. An image that cannot be decoded or that the
input check rejects is answered with a notice SR saying why (`cxrviewer.report.dicom_notice`).

Answered once: an image already answered by this model (journal entry) is not analysed again when
re-sent. The results' UIDs are derived from the source SOP Instance UID and the model (weights and card
hashes), so should the same image be analysed twice (its journal entry removed, or a crash between
committing results and writing the entry), the PACS receives the same instances again and replaces
rather than duplicates them.

Our own SR / SC coming back (Manufacturer "cxrviewer project") and SR objects are stored, not analysed.
Logs carry inbox file names (hashed UIDs), SOP classes and findings, never patient identifiers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrviewer.imaging import ImageLoadError
from cxrviewer.imaging.guarded import GuardedLoader
from cxrviewer.model.card import ModelCard
from cxrviewer.net.config import NodeConfig
from cxrviewer.net.inbox import analysable
from cxrviewer.net.journal import Journal, model_key
from cxrviewer.net.outbox import DeliveryReport, Outbox
from cxrviewer.net.scp import Received, StorageSCP
from cxrviewer.net.send import SendResult
from cxrviewer.report.dicom_notice import build_notice_sr
from cxrviewer.report.dicom_source import read_reference
from cxrviewer.report.errors import ExportError
from cxrviewer.report.export import derived_uid, export_study

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
#: First delay before an image whose results could not be written is tried again; doubles up to the maximum.
FIRST_RETRY_DELAY_S = 5.0
MAX_RETRY_DELAY_S = 3600.0


@dataclass(frozen=True)
class Analysed:
    """One analysed image: the inbox file, the prediction status and the results written to the outbox."""

    source: Path
    status: str  # "ok" | "rejected" (notice sent) | "unreadable" (notice sent) | "answered" (before) | "error"
    message: str
    results: tuple[Path, ...] = ()


class Node:
    """Storage SCP + analysis + delivery; `start()` returns at once, `stop()` waits for the threads.

    The viewer runs one without an engine (it analyses in its own pipeline): ``receive=False`` leaves the
    receiver off (delivery only), ``on_received`` / ``on_refused`` report every stored object and every
    refusal (in pynetdicom's threads), ``queue_results`` writes a study's SR + SC into the outbox on the
    node's analysis thread, ``queue_files`` copies files there, and ``on_sent`` reports each C-STORE.
    """

    def __init__(self, config: NodeConfig, engine: Any = None, *, retry_interval: float = 60.0,
                 on_analysed: Callable[[Analysed], None] | None = None,
                 on_delivered: Callable[[DeliveryReport], None] | None = None,
                 on_received: Callable[[Received], None] | None = None,
                 on_refused: Callable[[str], None] | None = None,
                 on_sent: Callable[[SendResult], None] | None = None,
                 receive: bool = True) -> None:
        self.config = config.validated()
        self.engine = engine  # None: store only, no analysis
        self.retry_interval = float(retry_interval)
        self.on_analysed = on_analysed
        self.on_delivered = on_delivered
        self.on_received = on_received
        self.on_sent = on_sent
        self.receive = receive
        self.outbox = Outbox(self.config.outbox)
        self.scp = StorageSCP(self.config, on_received=self._received, on_refused=on_refused)
        self.journal = Journal(self.config.inbox, model_key(engine)) if engine is not None else None
        self._queue: queue.Queue[Path | Callable[[], None] | None] = queue.Queue(QUEUE_LIMIT)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loader = GuardedLoader()  # decoding with a time limit, in a helper process
        self._lock = threading.Lock()
        self._in_flight: set[Path] = set()  # queued or being analysed
        self._retry: dict[Path, tuple[float, float]] = {}  # not before (monotonic), current delay
        self._not_images: set[Path] = set()  # inbox files known not to be analysable
        self._next_scan = 0.0
        self.backlog_at_start = 0

    @property
    def address(self) -> tuple[str, int]:
        return self.scp.address

    def start(self) -> None:
        self.outbox.ensure()
        orphans = self.outbox.clean_orphans() + self.scp.inbox.clean_orphans()
        if orphans:
            log.warning("removed %d incomplete file(s) or folder(s) an interrupted earlier run left behind", orphans)
        waiting = len(self.outbox.pending())
        if waiting:
            log.warning("%d result(s) from an earlier run wait in the outbox; delivering them", waiting)
        if self.receive:
            self.scp.start()
        self._threads = [threading.Thread(target=self._analyse_loop, name="cxr-node-analysis", daemon=True),
                         threading.Thread(target=self._deliver_loop, name="cxr-node-delivery", daemon=True)]
        if self.journal is not None:
            self.backlog_at_start = self.rescan(at_start=True)
        for thread in self._threads:
            thread.start()
        self._wake.set()  # deliver what an earlier run left in the outbox

    def stop(self, timeout: float = 30.0) -> None:
        self.scp.stop()
        self._stop.set()
        self._wake.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        self._loader.close()

    def __enter__(self) -> Node:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- receiving and the backlog ----------------------------------------------------------------
    def _received(self, item: Received) -> None:
        if self.on_received is not None:
            self.on_received(item)
        if not item.analysable or self.journal is None:
            reason = "our own result" if item.ours else ("not an image" if not item.is_image else "analysis off")
            log.info("%s stored, not analysed (%s)", item.path.name, reason)
            return
        if self.journal.answered(item.path):
            log.info("%s received again: already answered by this model, not analysed again", item.path.name)
            return
        self._enqueue(item.path)

    def _enqueue(self, path: Path) -> bool:
        with self._lock:
            if path in self._in_flight:
                return False
            self._in_flight.add(path)
        try:
            self._queue.put_nowait(path)
        except queue.Full:
            with self._lock:
                self._in_flight.discard(path)
            log.warning("analysis queue full: %s waits in the inbox for the next rescan", path.name)
            return False
        return True

    def unanswered(self) -> list[Path]:
        """Analysable inbox images this model has not answered (oldest first)."""
        if self.journal is None:
            return []
        found = []
        for path in self.scp.inbox.files():
            if path in self._not_images or self.journal.answered(path):
                continue
            if not analysable(path):
                self._not_images.add(path)
                continue
            found.append(path)
        return found

    def rescan(self, at_start: bool = False) -> int:
        """Queue every unanswered image not already queued and not waiting for its retry time; return how many."""
        now = time.monotonic()
        queued = 0
        for path in self.unanswered():
            not_before, delay = self._retry.get(path, (0.0, 0.0))
            if not_before <= now and self._enqueue(path):
                queued += 1
                if path in self._retry:  # queued: not due again until it fails again (or succeeds)
                    self._retry[path] = (float("inf"), delay)
        self._next_scan = now + self.retry_interval
        if queued and at_start:
            log.warning("backlog: %d received image(s) were never answered (earlier run stopped or crashed); "
                        "analysing them now", queued)
        elif queued:
            log.info("rescan: %d unanswered image(s) queued", queued)
        return queued

    def _scan_timeout(self) -> float:
        due = [t for t, _ in self._retry.values()]
        wake = min([self._next_scan, *due])
        return max(0.05, wake - time.monotonic())

    # -- analysis ---------------------------------------------------------------------------------
    def _analyse_loop(self) -> None:
        while not self._stop.is_set():
            if self.journal is not None and self._scan_timeout() <= 0.05:  # due, even while images keep coming
                self.rescan()
            try:
                item = self._queue.get(timeout=self._scan_timeout() if self.journal is not None else None)
            except queue.Empty:
                continue
            if item is None:
                break
            if callable(item):
                item()
                continue
            try:
                done = self.analyse(item)
            except Exception:  # one bad image must never stop the node; it is tried again later
                log.exception("analysis of %s failed", item.name)
                done = Analysed(item, "error", "internal error")
                self._schedule_retry(item, "internal error")
            finally:
                with self._lock:
                    self._in_flight.discard(item)
            if done.results:
                self._wake.set()
            if self.on_analysed is not None:
                self.on_analysed(done)

    def _schedule_retry(self, path: Path, why: str) -> None:
        delay = min(MAX_RETRY_DELAY_S, max(FIRST_RETRY_DELAY_S, 2 * self._retry.get(path, (0.0, 0.0))[1]))
        self._retry[path] = (time.monotonic() + delay, delay)
        log.warning("%s: results not written (%s); trying again in %.0f s", path.name, why, delay)

    def analyse(self, path: Path) -> Analysed:
        """Analyse one inbox file, write its answer (SR + SC, or a notice SR) into the outbox and the journal."""
        if self.engine is None or self.journal is None:
            raise RuntimeError("this node has no model")
        if self.journal.answered(path):
            return Analysed(path, "answered", "already answered by this model")
        try:
            image = self._loader.load(path)
        except ImageLoadError as exc:
            log.warning("%s: not analysed: %s", path.name, exc.reason)
            return self._answer(path, "unreadable", f"the image could not be read: {exc.reason}", notice=True)
        prediction = self.engine.predict(image)
        if prediction.status != "ok":
            message = prediction.gate.message or "rejected by the input check"
            log.info("%s: no second opinion (%s)", path.name, message)
            return self._answer(path, "rejected", f"not analysed: {message}", image=image, prediction=prediction,
                                notice=True)
        positive = [f for f in prediction.findings if f.positive]
        top = prediction.findings[0]
        message = f"{len(positive)} positive finding(s); top {top.label} {top.probability:.2f}"
        log.info("%s analysed: %s", path.name, message)
        return self._answer(path, "ok", message, image=image, prediction=prediction)

    def _answer(self, path: Path, status: str, message: str, *, image: Any = None, prediction: Any = None,
                notice: bool = False) -> Analysed:
        """Stage the results (SR + SC of a prediction, and/or a notice SR), commit them, journal the answer."""
        assert self.journal is not None
        seed = self.journal.model
        staging = self.outbox.stage_batch(path.parent.name)
        try:
            files: list[Path] = []
            if image is not None:
                files += export_study(image, prediction, self.engine.card, staging, formats={"sr", "sc"},
                                      uid_seed=seed)
            if notice:
                files.append(self._write_notice(path, message, staging, seed))
            batch = self.outbox.commit_batch(staging)
        except (ExportError, OSError) as exc:
            self.outbox.discard_batch(staging)
            self._schedule_retry(path, str(exc) if isinstance(exc, ExportError) else (exc.strerror or str(exc)))
            return Analysed(path, "error", f"results not written ({exc})")
        results = tuple(batch / f.name for f in files)
        self._retry.pop(path, None)
        try:
            self.journal.record(path, "notice" if notice and image is None else "findings", message, results)
        except OSError as exc:  # the results go out; a rescan may analyse it again (same UIDs)
            log.warning("%s: answer sent but not journaled (%s)", path.name, exc)
        return Analysed(path, status, message, results)

    def _write_notice(self, path: Path, message: str, folder: Path, seed: str) -> Path:
        reference = read_reference(path)
        study, sop = str(reference.StudyInstanceUID), str(reference.SOPInstanceUID)
        sr = build_notice_sr(reference, message, self.engine.card,
                             series_uid=derived_uid(seed, "notice-series", study),
                             sop_uid=derived_uid(seed, "notice", sop))
        target = folder / f"{path.stem}.notice.sr.dcm"
        sr.save_as(target, enforce_file_format=True)
        return target

    def queue_results(self, images: Any, predictions: Any, card: ModelCard | None, label: str = "") -> None:
        """Write DICOM SR + Secondary Capture of an analysed study into a new outbox batch (on the analysis
        thread), then deliver; the outcome is reported through ``on_analysed`` (status "ok" or "error")."""
        items = list(images) if isinstance(images, list | tuple) else [images]
        preds = list(predictions) if isinstance(predictions, list | tuple) else [predictions]

        def job() -> None:
            source = Path(str(items[0].path)) if items else Path()
            try:
                staging = self.outbox.stage_batch(label or source.parent.name)
                try:
                    files = export_study(items, preds, card, staging, formats={"sr", "sc"})
                    batch = self.outbox.commit_batch(staging)
                except (ExportError, OSError) as exc:
                    self.outbox.discard_batch(staging)
                    done = Analysed(source, "error", str(exc))
                else:
                    done = Analysed(source, "ok", f"{len(files)} result(s) queued",
                                    tuple(batch / f.name for f in files))
                    self._wake.set()
            except Exception as exc:  # never let one study stop the node
                log.exception("writing results into the outbox failed")
                done = Analysed(source, "error", f"results not written ({type(exc).__name__})")
            if self.on_analysed is not None:
                self.on_analysed(done)

        self._queue.put(job)

    def queue_files(self, paths: Any, label: str = "files") -> list[Path]:
        """Copy existing DICOM files into the outbox (`NetError` when one cannot be read) and deliver them."""
        queued = self.outbox.add([Path(p) for p in paths], label=label)
        self._wake.set()
        return queued

    # -- delivery ---------------------------------------------------------------------------------
    def _deliver_loop(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(self.retry_interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            if self.config.remote is None or not self.outbox.pending():
                continue
            if not woken:
                log.info("retrying %d result(s) waiting in the outbox", len(self.outbox.pending()))
            try:
                report = self.outbox.deliver(self.config.remote, self.config.ae_title, self.config.limits,
                                             retries=self.config.send_retries, retry_delay=self.config.retry_delay,
                                             on_result=self.on_sent, stop=self._stop)
            except Exception:
                log.exception("delivery to %s failed", self.config.remote)
                continue
            if self.on_delivered is not None:
                self.on_delivered(report)
