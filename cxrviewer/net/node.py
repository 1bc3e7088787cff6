"""The headless node: receive images, analyse each one, send the SR + Secondary Capture back.

Three kinds of threads, none of them touching another's data:

* pynetdicom's server / association threads run the `StorageSCP`; for each stored image they only put
  a `Received` on the analysis queue (bounded; a full queue leaves the file in the inbox, unanalysed);
* one analysis thread loads the image, runs the model and exports DICOM SR + SC into a new outbox batch
  (`export_study`, atomic), then wakes the delivery thread;
* one delivery thread sends everything pending in the outbox to the remote (`Outbox.deliver`, with
  retries) whenever woken, at start-up and every ``retry_interval`` seconds while anything is pending.

Our own SR / SC coming back (Manufacturer "cxrviewer project") and SR objects are stored, not analysed.
Logs carry inbox file names (hashed UIDs), SOP classes and findings, never patient identifiers.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrviewer.imaging import ImageLoadError
from cxrviewer.imaging.guarded import GuardedLoader
from cxrviewer.model.card import ModelCard
from cxrviewer.net.config import NodeConfig
from cxrviewer.net.outbox import DeliveryReport, Outbox
from cxrviewer.net.scp import Received, StorageSCP
from cxrviewer.net.send import SendResult
from cxrviewer.report.errors import ExportError
from cxrviewer.report.export import export_study

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class Analysed:
    """One analysed image: the inbox file, the prediction status and the results written to the outbox."""

    source: Path
    status: str  # "ok" | "rejected" | "error"
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
        self._queue: queue.Queue[Received | Callable[[], None] | None] = queue.Queue(QUEUE_LIMIT)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loader = GuardedLoader()  # decoding with a time limit, in a helper process

    @property
    def address(self) -> tuple[str, int]:
        return self.scp.address

    def start(self) -> None:
        self.outbox.ensure()
        if self.receive:
            self.scp.start()
        self._threads = [threading.Thread(target=self._analyse_loop, name="cxr-node-analysis", daemon=True),
                         threading.Thread(target=self._deliver_loop, name="cxr-node-delivery", daemon=True)]
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

    # -- receiving --------------------------------------------------------------------------------
    def _received(self, item: Received) -> None:
        if self.on_received is not None:
            self.on_received(item)
        if not item.analysable or self.engine is None:
            reason = "our own result" if item.ours else ("not an image" if not item.is_image else "analysis off")
            log.info("%s stored, not analysed (%s)", item.path.name, reason)
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            log.warning("analysis queue full: %s stays in the inbox unanalysed", item.path.name)

    # -- analysis ---------------------------------------------------------------------------------
    def _analyse_loop(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                break
            if callable(item):
                item()
                continue
            try:
                done = self.analyse(item.path)
            except Exception:  # one bad image must never stop the node
                log.exception("analysis of %s failed", item.path.name)
                done = Analysed(item.path, "error", "internal error")
            if done.results:
                self._wake.set()
            if self.on_analysed is not None:
                self.on_analysed(done)

    def analyse(self, path: Path) -> Analysed:
        """Analyse one inbox file and write its SR + SC into a new outbox batch."""
        try:
            image = self._loader.load(path)
        except ImageLoadError as exc:
            log.warning("%s: not analysed: %s", path.name, exc.reason)
            return Analysed(path, "error", "could not be loaded")
        prediction = self.engine.predict(image)
        if prediction.status != "ok":
            message = prediction.gate.message or "rejected by the input check"
            log.info("%s: no second opinion (%s)", path.name, message)
        else:
            positive = [f for f in prediction.findings if f.positive]
            top = prediction.findings[0]
            message = f"{len(positive)} positive finding(s); top {top.label} {top.probability:.2f}"
            log.info("%s analysed: %s", path.name, message)
        batch = self.outbox.new_batch(path.parent.name)
        try:
            files = export_study(image, prediction, self.engine.card, batch, formats={"sr", "sc"})
        except ExportError as exc:
            log.warning("%s: results not written: %s", path.name, exc)
            batch.rmdir()
            return Analysed(path, "error", str(exc))
        return Analysed(path, prediction.status, message, tuple(files))

    def queue_results(self, images: Any, predictions: Any, card: ModelCard | None, label: str = "") -> None:
        """Write DICOM SR + Secondary Capture of an analysed study into a new outbox batch (on the analysis
        thread), then deliver; the outcome is reported through ``on_analysed`` (status "ok" or "error")."""
        items = list(images) if isinstance(images, list | tuple) else [images]
        preds = list(predictions) if isinstance(predictions, list | tuple) else [predictions]

        def job() -> None:
            source = Path(str(items[0].path)) if items else Path()
            try:
                batch = self.outbox.new_batch(label or source.parent.name)
                try:
                    files = export_study(items, preds, card, batch, formats={"sr", "sc"})
                except ExportError as exc:
                    batch.rmdir()
                    done = Analysed(source, "error", str(exc))
                else:
                    done = Analysed(source, "ok", f"{len(files)} result(s) queued", tuple(files))
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

    def deliver_now(self) -> None:
        """Wake the delivery thread (everything pending in the outbox is sent)."""
        self._wake.set()

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
