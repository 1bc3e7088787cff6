"""No data loss: files the app writes are replaced atomically, and survive a crash (SIGKILL) mid-write.

Two checks per writer:
* in-place vs replace: a hard link to the previous file keeps the previous bytes only if the writer
  wrote a new file and renamed it over the target (an in-place rewrite would change both names);
* crash: a child process rewrites the file in a loop and is killed at a random moment; the file must
  then hold one complete version, never a mixture, a truncation or nothing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _child(code: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               QT_QPA_PLATFORM="offscreen")
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def _kill_mid_write(code: str, target: Path, rounds: int, check: callable) -> list[str]:  # type: ignore[valid-type]
    """Start the writer, wait until it has written at least once, SIGKILL it at a random moment, check."""
    rng = random.Random(7)
    problems = []
    for n in range(rounds):
        proc = _child(code, str(target))
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"started", "writer did not start"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)  # our own child, by its pid
        proc.wait(timeout=30)
        problem = check(target)
        if problem:
            problems.append(f"round {n}: {problem}")
    return problems


# --- cxrviewer.report.atomic ------------------------------------------------------------------------------

ATOMIC_WRITER = """
import json, sys
from pathlib import Path
from cxrviewer.report.atomic import atomic_write_bytes
target = Path(sys.argv[1])
i = 0
while True:
    i += 1
    blob = json.dumps({"version": i, "payload": "x" * 2_000_000, "end": i}).encode()
    atomic_write_bytes(target, blob)
    if i == 1:
        print("started", flush=True)
"""


def _complete_json(target: Path) -> str:
    try:
        doc = json.loads(target.read_bytes())
    except (OSError, ValueError) as exc:
        return f"unreadable after the crash: {exc}"
    if doc["version"] != doc["end"] or len(doc["payload"]) != 2_000_000:
        return "a mixture of two versions"
    return ""


IN_PLACE_WRITER = """
import json, sys, time
from pathlib import Path
target = Path(sys.argv[1])
i = 0
while True:
    i += 1
    blob = json.dumps({"version": i, "payload": "x" * 2_000_000, "end": i}).encode()
    with open(target, "wb") as fh:
        for k in range(0, len(blob), 65536):
            fh.write(blob[k : k + 65536])
            fh.flush()
            time.sleep(0.002)
    if i == 1:
        print("started", flush=True)
"""


def test_crash_check_catches_an_in_place_writer(tmp_path: Path) -> None:
    """Control: the same kill test on a writer that rewrites the file in place does find damage."""
    problems = _kill_mid_write(IN_PLACE_WRITER, tmp_path / "report.json", rounds=3, check=_complete_json)
    assert len(problems) >= 2


def test_atomic_write_survives_sigkill(tmp_path: Path) -> None:
    target = tmp_path / "report.cxr.json"
    problems = _kill_mid_write(ATOMIC_WRITER, target, rounds=4, check=_complete_json)
    assert not problems, problems


def test_atomic_write_replaces_instead_of_rewriting(tmp_path: Path) -> None:
    from cxrviewer.report.atomic import atomic_write_bytes

    target = tmp_path / "a.json"
    atomic_write_bytes(target, b"old")
    os.link(target, tmp_path / "old-link")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and (tmp_path / "old-link").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "old-link"]  # no temporaries left


def test_staged_files_are_all_or_nothing(tmp_path: Path) -> None:
    from cxrviewer.report.atomic import StagedFiles

    (tmp_path / "one.png").write_bytes(b"previous export")

    def boom(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError), StagedFiles() as staged:
        staged.stage(tmp_path / "one.png", lambda p: p.write_bytes(b"new"))
        staged.stage(tmp_path / "two.json", lambda p: p.write_bytes(b"{}"))
        staged.stage(tmp_path / "three.pdf", boom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png"]
    assert (tmp_path / "one.png").read_bytes() == b"previous export"


# --- settings (QSettings INI, via AppSettings) ------------------------------------------------------------

SETTINGS_WRITER = """
import sys
from PySide6.QtCore import QSettings
from cxrviewer.gui.settings import AppSettings
path = sys.argv[1]
i = 0
while True:
    i += 1
    s = AppSettings(QSettings(path, QSettings.Format.IniFormat))
    s.opacity = (i % 1000) / 1000
    s.sort_mode = f"mode-{i}"
    s.q.setValue("test/padding", "p" * 200_000)
    s.q.setValue("test/check", f"mode-{i}")
    s.sync()
    if i == 1:
        print("started", flush=True)
"""


def _settings_consistent(target: Path) -> str:
    from PySide6.QtCore import QSettings

    from cxrviewer.gui.settings import AppSettings

    if not target.is_file() or target.stat().st_size == 0:
        return "settings file missing or empty after the crash"
    q = QSettings(str(target), QSettings.Format.IniFormat)
    if q.status() != QSettings.Status.NoError:
        return f"settings file unreadable: {q.status()}"
    s = AppSettings(q)
    if not s.sort_mode.startswith("mode-") or s.sort_mode != q.value("test/check"):
        return f"settings are a mixture: {s.sort_mode!r} vs {q.value('test/check')!r}"
    if len(str(q.value("test/padding"))) != 200_000:
        return "settings truncated"
    return ""


def test_settings_survive_sigkill_mid_write(tmp_path: Path) -> None:
    pytest.importorskip("PySide6")
    target = tmp_path / "settings.ini"
    problems = _kill_mid_write(SETTINGS_WRITER, target, rounds=4, check=_settings_consistent)
    assert not problems, problems


# --- cxrviewer-predict --output ---------------------------------------------------------------------------


def test_predict_output_is_replaced_atomically(tmp_path: Path, shared_data: Path, tiny_card: Path) -> None:
    from cxrviewer.predict import main

    card = tiny_card
    image = sorted((shared_data / "nih" / "images").glob("*.png"))[0]
    out = tmp_path / "results.json"
    out.write_text("previous results")
    os.link(out, tmp_path / "previous-link")
    assert main(["--model", str(card), "--output", str(out), "--quiet", str(image)]) == 0
    assert json.loads(out.read_text())["results"]
    assert (tmp_path / "previous-link").read_text() == "previous results"
