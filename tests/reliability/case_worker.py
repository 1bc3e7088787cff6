"""Run loader cases in a child process, each with a time limit and a measured memory peak.

`Worker` (used by the tests and scripts) starts ``python case_worker.py`` and talks to it with one JSON
object per line. The child loads a file with `load_image` (or scans folders with `scan_paths`), checks the
display/model invariants of any image it gets, and answers with the outcome, the time taken and the
peak memory of the call. A case that runs past its limit is a hang: the child is killed (by its own pid)
and a fresh one started; a child that dies is a crash. Memory: the child's peak RSS is reset before each
case (Linux ``/proc/self/clear_refs``), so the reported peak belongs to that case alone; numpy/Python
allocations are also traced (tracemalloc), which catches large allocations that were never touched.
An address-space limit (RLIMIT_AS, a few GB above the start-up size) keeps a runaway from hurting the
machine; hitting it shows up as a "not enough memory" message, which the tests refuse.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
AS_HEADROOM = 3 << 30  # bytes of address space the child may add after start-up


# --- parent side ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    outcome: str  # "image" | "error" | "exception" | "hang" | "crash"
    message: str = ""
    exc_type: str = ""
    digest: str = ""
    shape: tuple[int, ...] = ()
    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # rise of the child's peak RSS during the call
    traced_peak_mb: float = 0.0  # peak of traced (numpy/Python) allocations during the call
    detail: str = ""
    extra: dict[str, Any] | None = None

    @property
    def peak_mb(self) -> float:
        return max(self.peak_rss_mb, self.traced_peak_mb)


class Worker:
    """A child process that runs one case at a time under a time limit (restarted after a hang/crash)."""

    def __init__(self, timeout: float = 20.0, trace: bool = True) -> None:
        self.timeout = timeout
        self.trace = trace
        self.proc: subprocess.Popen[str] | None = None
        self.restarts = 0

    def _start(self) -> subprocess.Popen[str]:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        args = [sys.executable, str(HERE / "case_worker.py")] + (["--trace"] if self.trace else [])
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env, cwd=str(REPO))
        ready = self._read(proc, 120.0)
        if ready is None or ready.get("ready") is not True:
            self._kill(proc)
            raise RuntimeError(f"case worker did not start: {ready}")
        return proc

    @staticmethod
    def _read(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any] | None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = proc.stdout.readline()
        return json.loads(line) if line else {"eof": True}

    @staticmethod
    def _kill(proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.kill()  # our own child, by its pid
        proc.wait(timeout=30)

    def call(self, request: dict[str, Any], timeout: float | None = None) -> Outcome:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None
        start = time.monotonic()
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        reply = self._read(proc, timeout or self.timeout)
        elapsed = time.monotonic() - start
        if reply is None:
            self._kill(proc)
            self.proc, self.restarts = None, self.restarts + 1
            return Outcome("hang", seconds=elapsed, detail=f"no answer within {timeout or self.timeout:.0f} s")
        if reply.get("eof"):
            code = proc.wait(timeout=30)
            self.proc, self.restarts = None, self.restarts + 1
            return Outcome("crash", seconds=elapsed, detail=f"worker died (exit status {code})")
        reply["shape"] = tuple(reply.get("shape") or ())
        return Outcome(**reply)

    def load(self, path: Path, timeout: float | None = None) -> Outcome:
        return self.call({"op": "load", "path": str(path)}, timeout)

    def scan(self, paths: list[Path], timeout: float | None = None) -> Outcome:
        return self.call({"op": "scan", "paths": [str(p) for p in paths]}, timeout)

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._kill(self.proc)
            self.proc = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- child side -------------------------------------------------------------------------------------------


def _status_kb(field_name: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _digest(arr: Any) -> str:
    import hashlib

    import numpy as np

    a = np.ascontiguousarray(arr)
    return hashlib.sha1(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()


def _check_image(image: Any) -> str:
    """'' if the image satisfies what the viewer and the model rely on, else what is wrong."""
    import numpy as np

    from cxrviewer.imaging import model_input, to_display

    px = image.pixels
    if px.ndim != 2 or px.size == 0:
        return f"pixels have shape {px.shape}"
    if np.issubdtype(px.dtype, np.floating) and not np.isfinite(px).all():
        return "non-finite pixel values"
    display = to_display(image)
    if display.dtype != np.uint8 or display.shape != px.shape:
        return f"display is {display.dtype} {display.shape}"
    unit = model_input(image)
    if unit.dtype != np.float32 or unit.shape != px.shape:
        return f"model input is {unit.dtype} {unit.shape}"
    if not np.isfinite(unit).all() or unit.min() < 0 or unit.max() > 1:
        return "model input not finite in [0, 1]"
    return ""


def _measure(fn: Any, trace: bool) -> tuple[Any, BaseException | None, dict[str, float]]:
    import gc
    import tracemalloc

    gc.collect()
    reset = _reset_peak()
    rss0 = _status_kb("VmRSS")
    if trace:
        tracemalloc.reset_peak()
        traced0 = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    err: BaseException | None = None
    result = None
    try:
        result = fn()
    except BaseException as exc:  # judged by the parent
        err = exc
    seconds = time.perf_counter() - t0
    peak = (_status_kb("VmHWM") - rss0) / 1024 if reset else 0.0
    traced = (tracemalloc.get_traced_memory()[1] - traced0) / 2**20 if trace else 0.0
    return result, err, {"seconds": seconds, "peak_rss_mb": max(0.0, peak), "traced_peak_mb": max(0.0, traced)}


def _handle(req: dict[str, Any], trace: bool) -> dict[str, Any]:
    import traceback

    from cxrviewer.imaging import ImageLoadError, load_image, scan_paths

    if req["op"] == "load":
        path = Path(req["path"])
        image, err, numbers = _measure(lambda: load_image(path), trace)
        if isinstance(err, ImageLoadError):
            return {"outcome": "error", "message": str(err), "exc_type": "ImageLoadError", **numbers}
        if err is not None:
            return {"outcome": "exception", "message": str(err)[:500], "exc_type": type(err).__name__,
                    "detail": "".join(traceback.format_exception(err))[-3000:], **numbers}
        try:
            problem = _check_image(image)
        except Exception as exc:
            return {"outcome": "exception", "message": f"after loading: {exc}"[:500], "exc_type": type(exc).__name__,
                    "detail": traceback.format_exc()[-3000:], **numbers}
        return {"outcome": "image", "digest": _digest(image.pixels), "shape": list(image.pixels.shape),
                "detail": problem, **numbers}
    if req["op"] == "scan":
        paths = [Path(p) for p in req["paths"]]
        result, err, numbers = _measure(lambda: scan_paths(paths), trace)
        if err is not None:
            return {"outcome": "exception", "message": str(err)[:500], "exc_type": type(err).__name__,
                    "detail": "".join(traceback.format_exception(err))[-3000:], **numbers}
        found = sorted(str(ref.path) for s in result.studies for ref in s.images)
        errors = [[e.path, e.reason, str(e)] for e in result.errors]
        return {"outcome": "image", "extra": {"images": found, "errors": errors}, **numbers}
    if req["op"] == "sleep":  # lets the tests check that the time limit bites
        time.sleep(float(req["seconds"]))
        return {"outcome": "image"}
    return {"outcome": "exception", "message": f"unknown op {req['op']!r}", "exc_type": "ValueError"}


def child_main(trace: bool) -> None:
    import logging
    import resource
    import tracemalloc
    import warnings

    proto = os.fdopen(os.dup(1), "w")  # answers go here; anything a C library prints goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import cxrviewer.imaging  # noqa: F401  (import cost before the first case)

    size = _status_kb("VmSize") * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + AS_HEADROOM, resource.RLIM_INFINITY))
    if trace:
        tracemalloc.start(1)
    proto.write(json.dumps({"ready": True}) + "\n")
    proto.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = _handle(json.loads(line), trace)
        proto.write(json.dumps(reply) + "\n")
        proto.flush()


if __name__ == "__main__":
    child_main("--trace" in sys.argv)
