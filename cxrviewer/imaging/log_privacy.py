"""Library warnings and log lines without patient data, and without floods.

pydicom, pynetdicom and highdicom put element *values* into their messages: a damaged SOP Instance UID
whose length field swallows the patient module makes pydicom warn "Invalid value for VR UI: '1.2...
Doe^John ... 19230817'", once through `warnings` and once through its logger, for every access. Our own
messages never carry values; theirs are made safe here before anything reaches stderr or a log file:

* every quoted value (``'...'``, ``"..."``, ``b'...'``) is replaced by ``<value>`` and a line is cut at
  `MAX_CHARS`; a library record loses its traceback (its exception messages may hold values too) and
  keeps only the exception's type;
* lines are rate-limited: the same message (numbers ignored) at most once per `WINDOW_S` seconds, with a
  count of the copies held back, and at most `BUDGET` library lines per window in all.

`install_log_privacy()` applies this to Python warnings (`warnings.showwarning`) and to the log records of
the libraries (`LIBRARIES`) on every handler of the root logger and on logging's last-resort handler. Call
it after configuring logging, in every process that decodes DICOM (the decoding helpers do it
themselves). It is idempotent.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import warnings
from typing import TextIO

#: Loggers whose records are redacted and rate-limited (their children included).
LIBRARIES = ("pydicom", "pynetdicom", "highdicom", "PIL", "pylibjpeg", "openjpeg", "gdcm")
MAX_CHARS = 240
WINDOW_S = 60.0
BUDGET = 30
PLACEHOLDER = "<value>"

_QUOTED = re.compile(r"""[bB]?'(?:[^'\\\n]|\\.)*'?|[bB]?"(?:[^"\\\n]|\\.)*"?""")
_DIGITS = re.compile(r"\d+")


def redact(text: str) -> str:
    """`text` with every quoted value replaced by a placeholder, on one line, at most `MAX_CHARS` long."""
    clean = _QUOTED.sub(PLACEHOLDER, str(text))
    clean = " ".join(clean.split())  # no control characters or line breaks survive
    clean = "".join(c if c.isprintable() else "?" for c in clean)
    return clean if len(clean) <= MAX_CHARS else clean[: MAX_CHARS - 1] + "…"


class RateLimiter:
    """Lets the same message through once per window, and at most `budget` messages per window in all."""

    def __init__(self, window_s: float = WINDOW_S, budget: int = BUDGET) -> None:
        self.window_s = window_s
        self.budget = budget
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._window_start = 0.0
        self._spent = 0

    def admit(self, message: str, now: float | None = None) -> str | None:
        """The line to print for `message` (with a count of held-back copies), or None to drop it."""
        key = _DIGITS.sub("N", message)
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._window_start >= self.window_s:
                self._window_start, self._spent = now, 0
            last = self._last.get(key)
            if (last is not None and now - last < self.window_s) or self._spent >= self.budget:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            if len(self._last) > 10_000:  # many distinct messages: forget the oldest
                self._last.clear()
            self._last[key] = now
            self._spent += 1
            held = self._held.pop(key, 0)
        return f"{message} ({held} similar message(s) held back)" if held else message

    def held_back(self) -> int:
        """How many messages are held back and not yet summarised (and forget them)."""
        with self._lock:
            held = sum(self._held.values())
            self._held.clear()
        return held


_LIMITER = RateLimiter()


def _is_library(name: str) -> bool:
    return any(name == lib or name.startswith(lib + ".") for lib in LIBRARIES)


class LibraryRecordFilter(logging.Filter):
    """Redacts and rate-limits the records of `LIBRARIES`; other records pass untouched."""

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        super().__init__()
        self.limiter = limiter or _LIMITER

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_cxr_redacted", False) or not _is_library(record.name):
            return True
        try:
            text = record.getMessage()
        except Exception:  # a malformed library record: keep its template only
            text = str(record.msg)
        if record.exc_info and record.exc_info[0] is not None:
            text = f"{text} ({record.exc_info[0].__name__})"
        line = self.limiter.admit(redact(text))
        if line is None:
            return False
        record.msg, record.args = line, ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record._cxr_redacted = True  # several handlers share one record: redact and count it once
        return True


_FILTER = LibraryRecordFilter()
_installed = threading.Lock()


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    text = redact(str(message))
    admitted = _LIMITER.admit(text)
    if admitted is None:
        return
    stream = file if file is not None else sys.stderr
    if stream is None:  # pythonw / frozen GUI without a console
        return
    try:
        stream.write(f"warning: {category.__name__}: {admitted}\n")
    except (OSError, ValueError):
        pass


def install_log_privacy() -> None:
    """Route Python warnings and library log records through redaction and the rate limit."""
    with _installed:
        warnings.showwarning = _show_warning
        handlers = [*logging.getLogger().handlers, logging.lastResort]
        for handler in handlers:
            if handler is not None and _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
