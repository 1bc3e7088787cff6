"""Background work: folder scans, decoding and inference, off the GUI thread.

Design:
- Work runs as plain Python callables on `QThreadPool.globalInstance()`. Workers never touch a Qt
  object: they compute numpy arrays and dataclasses and hand them over by emitting signals of a
  `_Bridge` that lives in the GUI thread (queued delivery).
- Images go through one *lane*: at most one decode+inference job runs at a time (the engine is used
  by one worker), the queue is kept here in the GUI thread, so a study the user selects jumps to the
  front and work nobody waits for any more is dropped before it starts.
- The model loads once, lazily, in its own job (`load_model`); image jobs decode right away and wait
  for the model only when they reach inference.
- `shutdown` cancels everything queued and waits for what is in flight.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal

from cxrviewer.gui import backend
from cxrviewer.gui.records import most_abnormal
from cxrviewer.model import colormap

log = logging.getLogger(__name__)


class _Bridge(QObject):
    """Signals emitted from worker threads; lives in the GUI thread, so slots run there."""

    scanned = Signal(int, object)  # token, ScanOutcome
    started = Signal(str)  # image key: decoding for analysis began
    loaded = Signal(str, object)  # image key, backend.Decoded
    overlay = Signal(str, str, object)  # image key, label, premultiplied BGRA heat map (numpy)
    analysed = Signal(str, object)  # image key, Prediction
    failed = Signal(str, str)  # image key, message
    unanalysed = Signal(str, str)  # image key, why no analysis (no model)
    finished = Signal(str)  # image key: lane free
    model_ready = Signal(object)  # Engine
    model_failed = Signal(str)


@dataclass
class ImageJob:
    key: str
    path: Path
    analyse: bool = True  # False: decode for display only
    force: bool = False  # analyse despite a gate rejection
    image: Any = None  # an already decoded Image (skips decoding)
    cancel: threading.Event = field(default_factory=threading.Event)
    counted: bool = False  # its result was counted in the batch progress


class _EngineSlot:
    """The engine, filled once by the model job; image jobs wait on it (cancellably)."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.engine: Any = None
        self.error: str = ""

    def set(self, engine: Any, error: str = "") -> None:
        self.engine, self.error = engine, error
        self._done.set()

    def wait(self, cancel: threading.Event, stop: threading.Event) -> Any:
        while not self._done.wait(0.05):
            if cancel.is_set() or stop.is_set():
                return None
        return self.engine

    @property
    def done(self) -> bool:
        return self._done.is_set()


class Pipeline(QObject):
    """Queues images for decoding + analysis and reports results as Qt signals (GUI thread)."""

    scanned = Signal(int, object)
    started = Signal(str)
    loaded = Signal(str, object)
    overlay_ready = Signal(str, str, object)  # image key, label, BGRA heat map of its top finding
    analysed = Signal(str, object)
    failed = Signal(str, str)
    unanalysed = Signal(str, str)
    model_ready = Signal(object)
    model_failed = Signal(str)
    cancelled = Signal(str)  # image key: its analysis was stopped before a result
    progress = Signal(int, int)  # done, total (of the current batch)
    idle = Signal()

    def __init__(self, model_source: backend.ModelSource, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model_source = model_source
        self._pool = QThreadPool.globalInstance()
        if self._pool.maxThreadCount() < 3:  # lane + model load + scan may overlap
            self._pool.setMaxThreadCount(3)
        self._bridge = _Bridge()
        self._stop = threading.Event()
        self._slot = _EngineSlot()
        self._model_requested = False
        self._engine: Any = None
        self._model_settled = False
        self._queue: deque[ImageJob] = deque()
        self._current: ImageJob | None = None
        self._scan_token = 0
        self._scans_running = 0
        self._batch_total = 0
        self._batch_done = 0
        b = self._bridge
        b.scanned.connect(self._on_scanned)
        b.started.connect(self.started)
        b.loaded.connect(self.loaded)
        b.overlay.connect(self.overlay_ready)
        b.analysed.connect(self._on_analysed)
        b.failed.connect(self._on_failed)
        b.unanalysed.connect(self._on_unanalysed)
        b.finished.connect(self._on_finished)
        b.model_ready.connect(self._on_model_ready)
        b.model_failed.connect(self._on_model_failed)

    # --- model --------------------------------------------------------------------------------------------

    @property
    def engine(self) -> Any:
        """The loaded engine, as far as the GUI thread has been told (None before model_ready)."""
        return self._engine

    @property
    def model_loaded(self) -> bool:
        """True once model_ready or model_failed has been delivered."""
        return self._model_settled

    def _on_model_ready(self, engine: object) -> None:
        self._engine, self._model_settled = engine, True
        self.model_ready.emit(engine)

    def _on_model_failed(self, message: str) -> None:
        self._model_settled = True
        self.model_failed.emit(message)

    def load_model(self) -> None:
        """Start loading the model (once); results arrive as model_ready / model_failed."""
        if self._model_requested or self._stop.is_set():
            return
        self._model_requested = True
        source, slot, bridge = self.model_source, self._slot, self._bridge

        def run() -> None:
            try:
                engine = backend.load_engine(source)
            except Exception as exc:  # ModelError or an unexpected failure: the app runs without a model
                message = (
                    str(exc)
                    if isinstance(exc, backend.model_errors())
                    else (f"the model could not be loaded ({type(exc).__name__}: {exc})")
                )
                if not isinstance(exc, backend.model_errors()):
                    log.exception("model load failed")
                slot.set(None, message)
                _emit(bridge.model_failed, message)
                return
            slot.set(engine)
            _emit(bridge.model_ready, engine)

        self._pool.start(run)

    # --- scanning -----------------------------------------------------------------------------------------

    def scan(self, paths: list[Path]) -> int:
        """Scan files/folders in the background; returns a token echoed by `scanned`."""
        self._scan_token += 1
        token, bridge, stop = self._scan_token, self._bridge, self._stop
        self._scans_running += 1

        def run() -> None:
            if stop.is_set():
                _emit(bridge.scanned, token, backend.ScanOutcome())
                return
            try:
                outcome = backend.scan(paths)
            except Exception as exc:  # a scan must never take the app down
                log.exception("scan failed")
                outcome = backend.ScanOutcome(
                    errors=[(Path(p), f"{Path(p).name}: could not be read ({exc})") for p in paths]
                )
            _emit(bridge.scanned, token, outcome)

        self._pool.start(run)
        return token

    def _on_scanned(self, token: int, outcome: object) -> None:
        self._scans_running -= 1
        self.scanned.emit(token, outcome)
        self._check_idle()

    # --- image lane ---------------------------------------------------------------------------------------

    def enqueue(
        self,
        key: str,
        path: Path,
        *,
        analyse: bool = True,
        force: bool = False,
        image: Any = None,
        front: bool = False,
    ) -> None:
        """Queue an image; `front` puts it before everything else (the study the user looks at)."""
        if self._stop.is_set():
            return
        self._drop_queued(key)
        job = ImageJob(key, Path(path), analyse, force, image)
        if front:
            self._queue.appendleft(job)
        else:
            self._queue.append(job)
        if analyse:
            self._batch_total += 1
            self.progress.emit(self._batch_done, self._batch_total)
            self.load_model()
        self._pump()

    def prioritise(self, key: str) -> bool:
        """Move a queued image to the front; display-only jobs of other images are dropped (stale)."""
        job = next((j for j in self._queue if j.key == key), None)
        stale = [j for j in self._queue if not j.analyse and j.key != key]
        for j in stale:
            self._queue.remove(j)
        if job is None:
            return False
        self._queue.remove(job)
        self._queue.appendleft(job)
        return True

    def is_pending(self, key: str) -> bool:
        return any(j.key == key for j in self._queue) or (self._current is not None and self._current.key == key)

    def cancel(self, key: str) -> None:
        """Forget an image: drop it from the queue; a running job stops at its next step."""
        self._drop_queued(key)
        if self._current is not None and self._current.key == key:
            self._current.cancel.set()

    def cancel_all(self, analyses_only: bool = False) -> None:
        """Drop queued work (only the analyses with `analyses_only`; display jobs stay) and stop the running
        job at its next step."""
        dropped = [j for j in self._queue if j.analyse or not analyses_only]
        for job in dropped:
            self._queue.remove(job)
        self._batch_total -= sum(1 for j in dropped if j.analyse)
        if self._current is not None and (self._current.analyse or not analyses_only):
            self._current.cancel.set()
        self.progress.emit(self._batch_done, max(self._batch_total, 0))
        for job in dropped:
            if job.analyse:
                self.cancelled.emit(job.key)

    def _drop_queued(self, key: str) -> None:
        for job in [j for j in self._queue if j.key == key]:
            self._queue.remove(job)
            if job.analyse:
                self._batch_total -= 1

    def _pump(self) -> None:
        if self._current is not None or not self._queue or self._stop.is_set():
            return
        job = self._queue.popleft()
        self._current = job
        slot, bridge, stop = self._slot, self._bridge, self._stop
        self._pool.start(lambda: _run_image_job(job, slot, bridge, stop))

    def _on_analysed(self, key: str, prediction: object) -> None:
        self._count_done(key)
        self.analysed.emit(key, prediction)

    def _on_failed(self, key: str, message: str) -> None:
        self._count_done(key)
        self.failed.emit(key, message)

    def _on_unanalysed(self, key: str, message: str) -> None:
        self._count_done(key)
        self.unanalysed.emit(key, message)

    def _count_done(self, key: str) -> None:
        job = self._current
        if job is not None and job.key == key and job.analyse and not job.counted:
            job.counted = True
            self._batch_done += 1
            self.progress.emit(self._batch_done, self._batch_total)

    def _on_finished(self, key: str) -> None:
        job = self._current
        if job is not None and job.key == key:
            if job.analyse and not job.counted:  # cancelled before a result
                self._batch_total -= 1
                self.progress.emit(self._batch_done, max(self._batch_total, 0))
                self._current = None
                self.cancelled.emit(key)
            self._current = None  # (also for display-only jobs and finished analyses)
        self._pump()
        self._check_idle()

    def _check_idle(self) -> None:
        if self._current is None and not self._queue and self._scans_running == 0:
            self._batch_done = self._batch_total = 0
            self.idle.emit()

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._queue) or self._scans_running > 0

    # --- shutdown -----------------------------------------------------------------------------------------

    def shutdown(self, timeout_ms: int = 60000) -> bool:
        """Cancel queued work, stop running jobs at their next step and wait for the workers."""
        self._stop.set()
        self.cancel_all()
        finished = self._pool.waitForDone(timeout_ms)
        if not finished:
            log.warning("background work still running after %d ms", timeout_ms)
        backend.close_decoder()
        return finished


def _emit(signal: Any, *args: Any) -> None:
    """Emit from a worker; the receiver may already be gone at shutdown."""
    try:
        signal.emit(*args)
    except RuntimeError:  # the bridge was deleted (app closing)
        pass


def _run_image_job(job: ImageJob, slot: _EngineSlot, bridge: _Bridge, stop: threading.Event) -> None:
    """Decode (and analyse) one image in a worker thread. Only numpy / dataclasses leave this function."""
    errors = backend.model_errors()
    try:
        if job.cancel.is_set() or stop.is_set():
            return
        if job.analyse:
            _emit(bridge.started, job.key)
        decoded = backend.decode(job.path, job.image)
        _emit(bridge.loaded, job.key, decoded)
        if not job.analyse or job.cancel.is_set() or stop.is_set():
            return
        engine = slot.wait(job.cancel, stop)
        if engine is None:
            if slot.done:
                _emit(bridge.unanalysed, job.key, slot.error or "no model available")
            return
        if job.cancel.is_set() or stop.is_set():
            return
        prediction = engine.predict(decoded.image, force=job.force)
        top = most_abnormal(list(prediction.findings))
        if top is not None and top.positive:  # the map shown first is coloured here, not on the GUI thread
            heat = backend.heat_map(prediction, top.label, colormap.OVERLAY_SIDE)
            if heat is not None:
                _emit(bridge.overlay, job.key, top.label, colormap.overlay_bgra(heat))
        _emit(bridge.analysed, job.key, prediction)
    except errors as exc:
        _emit(bridge.failed, job.key, str(exc))
    except MemoryError:
        _emit(bridge.failed, job.key, f"{job.path.name}: not enough memory to open this image")
    except Exception as exc:  # never let one file take the worker (or the app) down
        log.exception("unexpected error on %s", job.path.name)
        _emit(bridge.failed, job.key, f"{job.path.name}: unexpected error ({type(exc).__name__})")
    finally:
        _emit(bridge.finished, job.key)
