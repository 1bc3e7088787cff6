"""Decoding under a wall-clock limit: files are decoded in helper processes that are killed when they overrun.

A C decoder (OpenJPEG, GDCM, libjpeg) stuck on a hostile file cannot be interrupted from a Python
thread; a separate process can. `GuardedLoader.load(path)` hands the path to a long-lived helper
process (started once, with Python's "spawn" method so it is safe beside Qt and torch threads), waits
at most `timeout` seconds for the decoded `Image` and otherwise kills the helper and raises
`ImageLoadError` ("decoding took longer than 30 s ..."); the next file gets a fresh helper. A helper
that dies while decoding (a crashing decoder) gives an `ImageLoadError` too, never a crash of the app.
Several threads may call `load` at once: each borrows its own helper from a small pool, or waits for
whichever comes first, a helper given back or one started beside the wait.

Cost per file: the decode itself plus one pickled copy of the pixels (about 3 ms for a 2k x 2k 16-bit
film); the helper's start-up (imports, about 0.5 s) is paid once and does not count against the limit.
Frozen (PyInstaller) programs must call `multiprocessing.freeze_support()` first thing in their entry
script, or the helper would start the program itself again. Where no helper can start at all, files are
decoded in the calling process (without the limit) after one logged warning, rather than not at all.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import signal
import threading
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.imaging.image import Image

log = logging.getLogger(__name__)

#: Default limit for one file's decode. A 4k x 4k lossless JPEG 2000 decodes in about 3 s on one slow core.
DEFAULT_TIMEOUT_S = 30.0
#: The decoding function the helpers run, as "module:function" (tests substitute slow or crashing ones).
DEFAULT_LOADER = "cxrviewer.imaging.loader:load_image"
#: How long a new helper may take to import the imaging stack before it counts as failed.
START_TIMEOUT_S = 120.0

_CTX = multiprocessing.get_context("spawn")


def _resolve(spec: str) -> Callable[[str | Path], Image]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _serve(conn: Connection, spec: str) -> None:
    """Helper process main loop: receive a path, answer ("ok", Image) or ("error", reason)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    from cxrviewer.imaging.loader import GENERIC_REASON
    from cxrviewer.imaging.log_privacy import install_log_privacy

    install_log_privacy()  # this process's stderr is the parent's: no element values on it

    loader = _resolve(spec)
    conn.send(("ready",))
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):
            return
        if path is None:
            return
        try:
            answer: tuple = ("ok", loader(path))
        except ImageLoadError as exc:
            answer = ("error", exc.reason)
        except MemoryError:
            answer = ("error", "not enough memory to open the image")
        except Exception:  # the loader boundary should have caught it; never let the helper die for it
            answer = ("error", GENERIC_REASON)
        try:
            conn.send(answer)
        except Exception:  # an Image that cannot be pickled: say so rather than hang the parent
            conn.send(("error", GENERIC_REASON))
        del answer


class _HelperGone(Exception):
    """An idle helper had died before a file was handed to it (the caller retries with a new one)."""


class _Helper:
    """One helper process and the parent's end of its pipe."""

    def __init__(self, spec: str) -> None:
        parent, child = _CTX.Pipe()
        self.conn = parent
        self.process = _CTX.Process(target=_serve, args=(child, spec), name="cxr-decoder", daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(START_TIMEOUT_S):
            self.kill()
            raise OSError("the decoding helper process did not start")
        try:
            self.conn.recv()
        except EOFError:
            self.kill()
            raise OSError("the decoding helper process stopped while starting") from None

    def load(self, path: Path, timeout: float) -> Image:
        try:
            self.conn.send(str(path))
        except (OSError, ValueError):  # the helper went away while idle: the file never reached it
            self.kill()
            raise _HelperGone from None
        if not self.conn.poll(timeout):
            self.kill()
            raise ImageLoadError(path, f"decoding took longer than {timeout:g} s and was stopped "
                                       "(damaged file or a decoder fault)")
        try:
            answer = self.conn.recv()
        except (EOFError, OSError):
            self.kill()
            raise ImageLoadError(path, "the image decoder crashed on this file (damaged file)") from None
        if answer[0] == "ok":
            image = answer[1]
            image.path = path  # the caller's spelling of the path, as in-process loading gives
            return image
        raise ImageLoadError(path, answer[1])

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(2.0)
        self.kill()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5.0)
        self.conn.close()


class GuardedLoader:
    """`load_image` with a time limit, through a pool of at most `size` helper processes (thread-safe).

    A `load` that finds no idle helper waits for whichever comes first: a helper another `load` gives back, or
    one started for it in the background (one start at a time). So a second file decoded while the only helper
    is busy takes that helper after its ~20 ms decode instead of paying a helper's start-up (~0.5 s of imports),
    and a helper stuck on a hostile file still gets a replacement beside it.

    `timeout` <= 0 decodes in the calling process (no limit, no helper)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT_S, size: int = 1, loader: str | None = None) -> None:
        self.timeout = timeout
        self.spec = loader or DEFAULT_LOADER
        self.size = max(1, size)
        self._slots = threading.BoundedSemaphore(self.size)
        self._idle: list[_Helper] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a helper was given back or started, or none can start
        self._lent = 0  # helpers out on a `load`
        self._starting = False  # a helper is being started (one at a time)
        self._starter: threading.Thread | None = None  # the thread starting one for a waiting `load`
        self._generation = 0  # `close` counts up: a helper whose start began before it is not kept
        self._in_process = False  # set when helper processes cannot start in this environment
        self._finalizer = weakref.finalize(self, _close_all, self._idle, self._lock)

    def load(self, path: str | Path) -> Image:
        """Decode `path` (raises `ImageLoadError` for bad files, overruns and decoder crashes)."""
        path = Path(path)
        if self.timeout <= 0 or self._in_process:
            return _resolve(self.spec)(path)
        with self._slots:
            for attempt in range(2):
                helper = self._borrow()
                if helper is None:  # no helper process can run here: decode without the limit, not not at all
                    return _resolve(self.spec)(path)
                try:
                    return helper.load(path, self.timeout)
                except _HelperGone:
                    if attempt:
                        raise ImageLoadError(path, "the decoding helper process stopped unexpectedly") from None
                finally:
                    self._give_back(helper)
        raise AssertionError("unreachable")

    def start(self, count: int = 1) -> None:
        """Start helpers ahead of the first file, in the calling thread, one after the other, until `count` of them
        (at most `size`) are running: a `load` meanwhile takes the first one ready instead of starting another, so
        the first file does not pay the helpers' imports twice over."""
        if self.timeout <= 0:
            return
        count = min(max(1, count), self.size)
        while True:
            with self._changed:
                self._drop_dead()
                if self._in_process or len(self._idle) + self._lent >= count:
                    return
                if self._starting:  # another start is under way: wait for it, then count again
                    self._changed.wait()
                    continue
                self._starting = True
                generation = self._generation
            self._start_one(generation)

    def _start_one(self, generation: int) -> None:
        """Start one helper (the caller set `_starting`); it joins the idle ones, or a failure ends helpers."""
        helper: _Helper | None = None
        try:
            helper = _Helper(self.spec)
        except OSError as exc:
            log.warning("decoding without a time limit: %s", exc)
            self._in_process = True
        finally:
            with self._changed:
                self._starting = False
                keep = helper is not None and generation == self._generation
                if helper is not None and keep:
                    self._idle.append(helper)
                self._changed.notify_all()
        if helper is not None and not keep:  # closed meanwhile
            helper.close()

    def _drop_dead(self) -> None:
        """Forget idle helpers that died (killed by the system between files); called holding the lock."""
        for helper in [h for h in self._idle if not h.alive]:
            self._idle.remove(helper)
            helper.kill()

    def _borrow(self) -> _Helper | None:
        with self._changed:
            while True:
                while self._idle:
                    helper = self._idle.pop()
                    if helper.alive:
                        self._lent += 1
                        return helper
                    helper.kill()
                if self._in_process:
                    return None
                if not self._starting and self._lent < self.size:
                    self._starting = True  # one more helper, started beside this wait (not by the waiting thread)
                    self._starter = threading.Thread(target=self._start_one, args=(self._generation,),
                                                     name="cxr-decoder-start", daemon=True)
                    self._starter.start()
                self._changed.wait()

    def _give_back(self, helper: _Helper) -> None:
        with self._changed:
            self._lent -= 1
            alive = helper.alive
            if alive:
                self._idle.append(helper)
            self._changed.notify_all()  # a waiting `load` takes it, or starts a replacement for a dead one
        if not alive:
            helper.kill()

    def close(self) -> None:
        """Stop the idle helper processes (also done when the loader is collected or Python exits); a helper being
        started for a `load` is waited for and stopped (no thread or process outlives this).

        A later `load` starts new ones."""
        with self._lock:
            self._generation += 1
            starter, self._starter = self._starter, None
        if starter is not None and starter is not threading.current_thread():
            starter.join(START_TIMEOUT_S)
        _close_all(self._idle, self._lock)

    def __enter__(self) -> GuardedLoader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _close_all(idle: list[_Helper], lock: threading.Lock) -> None:
    with lock:
        helpers = list(idle)
        idle.clear()
    for helper in helpers:
        helper.close()
