"""Background work: folder scans, decoding and inference, off the GUI thread.

Design:
- Work runs as plain Python callables on `QThreadPool.globalInstance()`, analyses on a one-thread pool of
  their own at a lower OS priority (the event loop and decoding come first). Workers never touch a Qt
  object: they compute numpy arrays and dataclasses and hand them over by emitting signals of a
  `_Bridge` that lives in the GUI thread (queued delivery).
- Every image goes through two stages, each with its own queue kept here in the GUI thread:
  *decode* (the file -> a `backend.Decoded`, shown at once) and *analyse* (the model's findings).
  Decoding never waits for torch, the model or an analysis: the film is on screen while the model is
  still loading, and the next films decode while the current one is analysed. At most one analysis
  runs at a time (the engine is used by one worker); analyses wait in their queue until the model has
  loaded (or failed, which turns them into "not analysed"), and decoding for analysis runs at most
  `PREFETCH` images ahead of it, so a drop of hundreds of 2k films is not all held in memory. A film decoded
  ahead of its analysis once the model is loaded is also prepared on a lane of its own (`Ahead`, `Engine.prepare`:
  the gate's checks, the letterbox, abroad measurements and harmonisation), so the analysis thread runs little but
  the network and the second core does the rest; the lane starts nothing for `PREPARE_HOLD_S` after the user moves
  to another film.
- The study the user looks at jumps to the front of both queues (`front`, `prioritise`; one decode slot is
  kept free for it, and the analysis lane waits for its decoding); display-only work nobody waits for any
  more is dropped before it starts. Lung outlines are found for films on screen only (`find_outline`).
- The model loads once, lazily, in its own job (`load_model`); it is the only job that may import torch
  (an ONNX model needs none). A model that needs torch starts loading once the film being opened is on
  screen (importing torch keeps both cores and Python busy for seconds), at the latest MODEL_DEFER_MS after
  it was asked for; an ONNX model loads beside the first decoding.
- `shutdown` cancels everything queued and waits for what is in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal, SignalInstance

from cxrviewer.gui import backend, priorities
from cxrviewer.gui.records import most_abnormal
from cxrviewer.model import colormap

if TYPE_CHECKING:  # loaded in the workers, on first use
    from cxrviewer.imaging.image import Image
    from cxrviewer.model.inference import Engine, Prepared

log = logging.getLogger(__name__)

#: Images decoded for analysis ahead of the one being analysed (memory bound; displayed images are exempt).
PREFETCH = 2
#: Decodes running at once (the decoder's helper processes: `backend.DECODERS`).
DECODE_SLOTS = backend.DECODERS
#: Longest wait of a model load for the displayed film's decoding (`load_model(when_free=True)`).
MODEL_DEFER_MS = 3000
#: After the user moves to another film the prepare lane starts nothing new for this long (seconds): the switch's
#: painting and decoding get the cores (on a busy machine a third runnable thread made the event loop late).
PREPARE_HOLD_S = 0.25

class _Bridge(QObject):
    """Signals emitted from worker threads; lives in the GUI thread, so slots run there."""

    scanned = Signal(int, object)  # token, ScanOutcome
    decoded = Signal(object, object, str)  # ImageJob, backend.Decoded or None, error message ("" if none)
    started = Signal(str)  # image key: its analysis began
    overlay = Signal(str, str, object)  # image key, label, premultiplied BGRA heat map (numpy)
    analysed = Signal(object, object, str)  # ImageJob, Prediction or None, error message ("" if none)
    outlined = Signal(str, object)  # image key, lung-field contours (list of N x 2 arrays)
    model_ready = Signal(object)  # Engine
    model_failed = Signal(str)


@dataclass(eq=False)
class ImageJob:
    key: str
    path: Path
    analyse: bool = True  # False: decode for display only
    force: bool = False  # analyse despite a gate rejection
    image: Image | None = None  # an already decoded image (skips reading the file), then the decoded one
    urgent: bool = False  # the displayed image: decoded first, exempt from PREFETCH, screen-ready pixels
    cancel: threading.Event = field(default_factory=threading.Event)
    counted: bool = False  # its result was counted in the batch progress
    ahead: Ahead | None = None  # the engine's work before the network, done on the prepare lane


class Pipeline(QObject):
    """Queues images for decoding + analysis and reports results as Qt signals (GUI thread)."""

    scanned = Signal(int, object)
    started = Signal(str)
    loaded = Signal(str, object)
    overlay_ready = Signal(str, str, object)  # image key, label, BGRA heat map of its top finding
    outlined = Signal(str, object)  # image key, lung-field contours (`find_outline`)
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
        needed = DECODE_SLOTS + 2  # decodes + the model load + a scan may overlap
        if self._pool.maxThreadCount() < needed:
            self._pool.setMaxThreadCount(needed)
        # analyses run on a thread of their own, at a lower priority (`priorities.background_priority`): the CPU-heavy
        # work yields to the event loop and to decoding the film the user asks for
        self._analysis_pool = QThreadPool(self)
        self._analysis_pool.setMaxThreadCount(1)
        # the prepare lane: films decoded ahead of their analysis are prepared there (`Ahead`), so the analysis
        # thread runs little but the network and the second core does the rest
        self._prepare_pool = QThreadPool(self)
        self._prepare_pool.setMaxThreadCount(1)
        self._bridge = _Bridge()
        self._stop = threading.Event()
        self._model_requested = False
        self._model_deferred = False
        self._loads_torch: bool | None = None  # `backend.loads_torch`, asked once
        self._engine: Engine | None = None
        self._model_settled = False
        self._model_error = ""
        self._to_decode: deque[ImageJob] = deque()
        self._decoding: list[ImageJob] = []
        self._to_analyse: deque[ImageJob] = deque()  # decoded, waiting for the model or the analysis slot
        self._analysing: ImageJob | None = None
        self._focus = ""  # the image on screen (`prioritise`): its analysis comes next once it is decoded
        self._hold_until = 0.0  # `time.monotonic()` until which the prepare lane starts nothing (`PREPARE_HOLD_S`)
        self._scan_token = 0
        self._scans_running = 0
        self._batch_total = 0
        self._batch_done = 0
        b = self._bridge
        b.scanned.connect(self._on_scanned)
        b.decoded.connect(self._on_decoded)
        b.started.connect(self._on_started)
        b.overlay.connect(self.overlay_ready)
        b.outlined.connect(self.outlined)
        b.analysed.connect(self._on_analysed)
        b.model_ready.connect(self._on_model_ready)
        b.model_failed.connect(self._on_model_failed)
        self._pool.start(backend.warm_decoder)  # a decoding helper is ready before the first film arrives

    # --- model --------------------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        """The loaded engine, as far as the GUI thread has been told (None before model_ready)."""
        return self._engine

    @property
    def model_loaded(self) -> bool:
        """True once model_ready or model_failed has been delivered."""
        return self._model_settled

    def _on_model_ready(self, engine: Engine) -> None:
        self._engine, self._model_settled = engine, True
        self.model_ready.emit(engine)
        self._pump()

    def _on_model_failed(self, message: str) -> None:
        self._model_settled, self._model_error = True, message
        self.model_failed.emit(message)
        self._pump()

    def load_model(self, when_free: bool = False) -> None:
        """Start loading the model (once); results arrive as model_ready / model_failed. `when_free`: a model that
        imports torch waits until no scan runs and the displayed film is decoded (MODEL_DEFER_MS at most); an
        ONNX model loads at once, beside the decoding."""
        if self._model_requested or self._stop.is_set():
            return
        if when_free and self._display_pending() and self._heavy_model():
            if not self._model_deferred:
                self._model_deferred = True
                QTimer.singleShot(MODEL_DEFER_MS, self.load_model)
            return
        self._model_requested = True
        source, bridge = self.model_source, self._bridge

        def run() -> None:
            try:
                engine = backend.load_engine(source)
            except Exception as exc:  # whatever fails (a broken torch too), the app runs on without a model
                _emit(bridge.model_failed, backend.model_failure(exc))
                return
            _emit(bridge.model_ready, engine)

        self._pool.start(run)

    def _heavy_model(self) -> bool:
        if self._loads_torch is None:
            self._loads_torch = backend.loads_torch(self.model_source)
        return self._loads_torch

    def _load_model_when_free(self) -> None:
        self.load_model(when_free=True)

    def _load_deferred_model(self) -> None:
        if self._model_deferred and not self._display_pending():
            self.load_model()

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
        self.scanned.emit(token, outcome)  # the window lists the studies and says which film it shows
        self._load_deferred_model()
        self._pump()
        self._check_idle()

    def find_outline(self, key: str, image: Image) -> None:
        """Find a decoded image's lung fields in the background; the contours arrive as `outlined`. (Analyses find
        them only for the displayed film: nobody may ever look at the others.)"""
        if self._stop.is_set():
            return
        bridge = self._bridge

        def run() -> None:
            try:
                contours = backend.lung_outline(image)
            except Exception:  # an outline is an aid; the film and its findings stand without it
                log.warning("lung fields not found", exc_info=True)
                contours = []
            _emit(bridge.outlined, key, contours)

        self._pool.start(run)

    # --- image queues -------------------------------------------------------------------------------------

    def enqueue(
        self,
        key: str,
        path: Path,
        *,
        analyse: bool = True,
        force: bool = False,
        image: Image | None = None,
        front: bool = False,
    ) -> None:
        """Queue an image; `front` puts it before everything else (the study the user looks at)."""
        if self._stop.is_set():
            return
        self._drop_queued(key)
        job = ImageJob(key, Path(path), analyse, force, image, urgent=front)
        if front:
            self._to_decode.appendleft(job)
        else:
            self._to_decode.append(job)
        if analyse:
            self._batch_total += 1
            self.progress.emit(self._batch_done, self._batch_total)
            QTimer.singleShot(0, self._load_model_when_free)  # once the window has said which film it shows
        self._pump()

    def prioritise(self, key: str) -> bool:
        """Move an image's queued work to the front; display-only jobs of other images are dropped (stale).
        False when nothing of it is queued (it may be running: `is_pending`). Its analysis is the next one: the
        analysis lane waits for its decoding rather than start another film."""
        self._focus = key
        self._hold_until = time.monotonic() + PREPARE_HOLD_S
        for job in [j for j in self._to_decode if not j.analyse and j.key != key]:
            self._to_decode.remove(job)
        found = False
        for queue in (self._to_decode, self._to_analyse):
            queued = next((j for j in queue if j.key == key), None)
            if queued is not None:
                queue.remove(queued)
                queue.appendleft(queued)
                queued.urgent = found = True
        for job in self._decoding:
            job.urgent = job.urgent or job.key == key
        self._pump()
        return found

    def _hold(self) -> float:
        """Seconds the prepare lane still waits after the user's last move to another film (any thread)."""
        return max(0.0, self._hold_until - time.monotonic())

    def _display_pending(self) -> bool:
        """A scan runs or the displayed film is still being decoded."""
        return self._scans_running > 0 or any(j.urgent for j in (*self._to_decode, *self._decoding))

    def is_pending(self, key: str) -> bool:
        """Work on the image is queued or running."""
        return any(j.key == key for j in self._jobs())

    def _jobs(self) -> list[ImageJob]:
        running = [*self._decoding, *([self._analysing] if self._analysing is not None else [])]
        return [*self._to_decode, *self._to_analyse, *running]

    def cancel(self, key: str) -> None:
        """Forget an image: drop it from the queues; a running job stops at its next step."""
        self._drop_queued(key)
        for job in self._jobs():
            if job.key == key:
                job.cancel.set()

    def cancel_all(self, analyses_only: bool = False) -> None:
        """Drop queued work (only the analyses with `analyses_only`; display jobs stay) and stop the running
        jobs at their next step."""
        dropped: list[ImageJob] = []
        for queue in (self._to_decode, self._to_analyse):
            for job in [j for j in queue if j.analyse or not analyses_only]:
                queue.remove(job)
                job.cancel.set()  # its preparation on the prepare lane too
                dropped.append(job)
        self._batch_total -= sum(1 for j in dropped if j.analyse)
        for job in [*self._decoding, *([self._analysing] if self._analysing is not None else [])]:
            if job.analyse or not analyses_only:
                job.cancel.set()
        self.progress.emit(self._batch_done, max(self._batch_total, 0))
        for job in dropped:
            if job.analyse:
                self.cancelled.emit(job.key)
        self._check_idle()

    def _drop_queued(self, key: str) -> None:
        for queue in (self._to_decode, self._to_analyse):
            for job in [j for j in queue if j.key == key]:
                queue.remove(job)
                job.cancel.set()  # its preparation on the prepare lane too
                if job.analyse:
                    self._batch_total -= 1

    def _pump(self) -> None:
        if self._stop.is_set():
            return
        bridge, stop = self._bridge, self._stop
        while len(self._decoding) < DECODE_SLOTS:
            job = self._next_to_decode()
            if job is None:
                break
            self._to_decode.remove(job)
            self._decoding.append(job)
            self._pool.start(lambda job=job: _decode_job(job, bridge, stop))
        if self._model_settled and self._engine is None:  # no model: decoded films are left unanalysed
            while self._to_analyse:
                job = self._to_analyse.popleft()
                self._count_done(job)
                self.unanalysed.emit(job.key, self._model_error or "no model available")
        if self._analysing is None and self._to_analyse and self._engine is not None and not self._focus_decoding():
            job = self._analysing = self._to_analyse.popleft()
            engine = self._engine
            self._analysis_pool.start(lambda: _analyse_job(job, engine, bridge, stop))

    def _focus_decoding(self) -> bool:
        """The film on screen is still being decoded for its analysis (which then goes first)."""
        return any(j.key == self._focus and j.analyse for j in (*self._to_decode, *self._decoding))

    def _next_to_decode(self) -> ImageJob | None:
        """Display work and the displayed image first; analyses only up to PREFETCH ahead of the model, and
        never in the last free slot (kept for the film the user asks for next)."""
        ahead = len(self._to_analyse) + sum(1 for j in self._decoding if j.analyse)
        prefetching = sum(1 for j in self._decoding if j.analyse and not j.urgent)
        return next((j for j in self._to_decode if not j.analyse or j.urgent
                     or (ahead < PREFETCH and prefetching < DECODE_SLOTS - 1)), None)

    def _on_decoded(self, job: ImageJob, decoded: backend.Decoded | None, message: str) -> None:
        if job in self._decoding:
            self._decoding.remove(job)
        cancelled = job.cancel.is_set() or self._stop.is_set()
        if decoded is not None and not self._stop.is_set():
            self.loaded.emit(job.key, decoded)
        if message:  # unreadable: the image is in error whether it was to be analysed or only shown
            self._count_done(job)
            self.failed.emit(job.key, message)
        elif job.analyse:
            if cancelled or decoded is None:
                self._uncount(job)
            else:
                job.image = decoded.image
                if job.urgent:
                    self._to_analyse.appendleft(job)
                else:
                    self._to_analyse.append(job)
                    if self._engine is not None:  # it waits for the analysis slot: prepare it meanwhile
                        ahead = job.ahead = Ahead(self._engine, decoded.image, self._hold, job.cancel, self._stop)
                        self._prepare_pool.start(ahead.run)
        self._load_deferred_model()
        self._pump()
        self._check_idle()

    def _on_started(self, key: str) -> None:
        self.started.emit(key)

    def _on_analysed(self, job: ImageJob, prediction: object, message: str) -> None:
        if self._analysing is job:
            self._analysing = None
        if prediction is not None:
            self._count_done(job)
            self.analysed.emit(job.key, prediction)
        elif message:
            self._count_done(job)
            self.failed.emit(job.key, message)
        else:  # cancelled before a result
            self._uncount(job)
        self._pump()
        self._check_idle()

    def _count_done(self, job: ImageJob) -> None:
        if job.analyse and not job.counted:
            job.counted = True
            self._batch_done += 1
            self.progress.emit(self._batch_done, self._batch_total)

    def _uncount(self, job: ImageJob) -> None:
        """An analysis stopped before its result."""
        if job.analyse and not job.counted:
            job.counted = True
            self._batch_total -= 1
            self.progress.emit(self._batch_done, max(self._batch_total, 0))
            self.cancelled.emit(job.key)

    def _check_idle(self) -> None:
        if not self.busy:
            self._batch_done = self._batch_total = 0
            self.idle.emit()

    @property
    def busy(self) -> bool:
        return bool(self._jobs()) or self._scans_running > 0

    # --- shutdown -----------------------------------------------------------------------------------------

    def shutdown(self, timeout_ms: int = 60000) -> bool:
        """Cancel queued work, stop running jobs at their next step and wait for the workers."""
        self._stop.set()
        self.cancel_all()
        finished = all([pool.waitForDone(timeout_ms) for pool in (self._analysis_pool, self._prepare_pool, self._pool)])
        if not finished:
            log.warning("background work still running after %d ms", timeout_ms)
        backend.close_decoder()
        return finished


def _emit(signal: SignalInstance, *args: object) -> None:
    """Emit from a worker; the receiver may already be gone at shutdown."""
    try:
        signal.emit(*args)
    except RuntimeError:  # the bridge was deleted (app closing)
        pass


def _decode_job(job: ImageJob, bridge: _Bridge, stop: threading.Event) -> None:
    """Decode one image in a worker thread (never imports torch). Only numpy / dataclasses leave it."""
    decoded, message = None, ""
    try:
        if not (job.cancel.is_set() or stop.is_set()):
            decoded = backend.decode(job.path, job.image, screen_ready=job.urgent)
    except backend.image_errors() as exc:
        message = str(exc)
    except MemoryError:
        message = f"{job.path.name}: not enough memory to open this image"
    except Exception as exc:  # never let one file take the worker (or the app) down
        log.exception("unexpected error decoding %s", job.path.name)
        message = f"{job.path.name}: unexpected error ({type(exc).__name__})"
    finally:
        _emit(bridge.decoded, job, decoded, message)


class Ahead:
    """A film's `Engine.prepare` done ahead of its analysis on the prepare lane; the analysis takes it (waiting
    if it is under way) or, when it has not started, skips it and prepares the film itself."""

    def __init__(self, engine: Engine, image: Image, hold: Callable[[], float], *cancelled: threading.Event) -> None:
        """`hold()`: seconds the lane should still leave the cores to the user's last action (0: none)."""
        self.engine, self.image, self.hold, self.cancelled = engine, image, hold, cancelled
        self._lock = threading.Lock()
        self._state = "queued"  # running, done, skipped
        self._done = threading.Event()
        self._result: Prepared | None = None

    def run(self) -> None:
        """On the prepare lane, at the normal priority: niced (+5, +15), it held the GIL while the scheduler kept it
        waiting, and the event loop stalled behind it (53 and 66 ms beats in the viewer benchmark). It waits while
        the user has just moved to another film (`hold`); the analysis may take the film over meanwhile."""
        while (wait := self.hold()) > 0 and self._state == "queued" \
                and not any(event.is_set() for event in self.cancelled):
            time.sleep(min(wait, 0.05))
        with self._lock:
            if self._state != "queued":
                return
            self._state = "running"
        try:
            if not any(event.is_set() for event in self.cancelled):
                self._result = self.engine.prepare(self.image)
        except Exception:  # the analysis prepares the film again and reports what fails
            log.debug("preparing %s ahead of its analysis failed", self.image.path.name, exc_info=True)
        finally:
            with self._lock:
                self._state = "done"
            self._done.set()

    def take(self) -> Prepared | None:
        """The prepared film for the analysis thread (None: prepare it there)."""
        with self._lock:
            if self._state in ("queued", "skipped"):
                self._state = "skipped"
                return None
        self._done.wait()
        return self._result


def _analyse_job(job: ImageJob, engine: Engine, bridge: _Bridge, stop: threading.Event) -> None:
    """Analyse one decoded image in a worker thread. Only numpy / dataclasses leave this function."""
    prediction, message = None, ""
    priorities.background_priority()
    image = job.image  # set when it was decoded (`_on_decoded`), before it was queued here
    try:
        if image is None:
            message = f"{job.path.name}: not decoded"
        elif not (job.cancel.is_set() or stop.is_set()):
            _emit(bridge.started, job.key)
            prepared = job.ahead.take() if job.ahead is not None else None
            if job.cancel.is_set() or stop.is_set():  # cancelled while its preparation finished
                return
            prediction = engine.predict(image, force=job.force, prepared=prepared)
            if job.urgent and prediction.findings and not prediction.lung_outline:  # the displayed film's outline
                prediction.lung_outline = backend.lung_outline(image)
            top = most_abnormal(list(prediction.findings))
            if top is not None and top.positive:  # the map shown first is coloured here, not on the GUI thread
                heat = backend.heat_map(prediction, top.label, colormap.OVERLAY_SIDE)
                if heat is not None:
                    _emit(bridge.overlay, job.key, top.label, colormap.overlay_bgra(heat))
    except backend.model_errors() as exc:
        prediction, message = None, str(exc)
    except MemoryError:
        prediction, message = None, f"{job.path.name}: not enough memory to analyse this image"
    except Exception as exc:  # never let one file take the worker (or the app) down
        log.exception("unexpected error analysing %s", job.path.name)
        prediction, message = None, f"{job.path.name}: unexpected error during analysis ({type(exc).__name__})"
    finally:
        job.image = job.ahead = None  # the pixels are no longer needed here
        _emit(bridge.analysed, job, prediction, message)
