"""The model's states as the viewer shows them: none, rejected input, model card, about, quitting, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtWidgets import QApplication

from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.records import State

from .conftest import MODEL_LABELS, python_threads, running_threads, wait_all_finished


def test_no_model_is_a_clear_message_and_images_still_open(qtbot, make_window, tmp_path: Path,  # noqa: ANN001
                                                           shared_data: Path) -> None:
    missing = tmp_path / "nowhere" / "model.json"
    window: MainWindow = make_window(model=missing)
    qtbot.waitUntil(lambda: "No model available" in window.findings.model_label.text(), timeout=20000)
    assert "model.json" in window.findings.model_label.text()
    assert "CXRVIEWER_MODEL" in window.findings.model_label.text()
    assert not window.table.actions["model_card"].isEnabled()
    window.open_paths([shared_data / "nih" / "images" / "00000001_000.png"])
    wait_all_finished(qtbot, window, expected_images=1)
    study = next(iter(window.studies.values()))
    assert study.state == State.NOT_ANALYSED
    qtbot.waitUntil(window.canvas.has_image, timeout=10000)  # the film is still shown
    assert "no model" in window.findings.status_label.text().lower()
    assert QApplication.activeModalWidget() is None


def test_gate_rejection_shows_reason_and_analyse_anyway(qtbot, window: MainWindow, dicom_dir: Path) -> None:  # noqa: ANN001
    path = dicom_dir / "edge_cases" / "udacity_nih_test5.dcm"  # chest pixels, Modality CT
    with qtbot.waitSignal(window.pipeline.analysed, timeout=60000) as blocker:
        window.open_paths([path])
    assert blocker.args[1].gate.status == "rejected"
    study = next(iter(window.studies.values()))
    assert study.state == State.REJECTED
    panel = window.findings
    assert panel.gate_frame.isVisible() and panel.anyway_button.isVisible()
    reason = blocker.args[1].gate.reasons[0]
    assert reason in panel.gate_label.text()
    assert panel.ranked() == []  # no opinion is shown for a rejected image
    assert reason in window.browser.row_texts()[0]

    with qtbot.waitSignal(window.pipeline.analysed, timeout=60000) as forced:
        qtbot.mouseClick(panel.anyway_button, Qt.MouseButton.LeftButton)
    assert forced.args[1].gate.status == "ok" and forced.args[1].gate.overridden
    assert study.state == State.DONE and study.images[0].forced
    assert len(panel.ranked()) == len(MODEL_LABELS) - 1  # "No Finding" is the summary line
    assert panel.warning_label.isVisible() and "overridden" in panel.warning_label.text()


def test_model_card_and_about_dialogs(qtbot, window: MainWindow, tiny_model: Path) -> None:  # noqa: ANN001
    qtbot.waitUntil(window.table.actions["model_card"].isEnabled, timeout=20000)
    assert window.engine is not None
    dialog = window.show_model_card()
    assert dialog is not None and dialog.isVisible()
    card = window.engine.card
    for label in MODEL_LABELS:
        assert dialog.auroc_text(label) == f"{card.validation.per_label[label].auroc:.3f}"
    for label in window.engine.not_covered:
        assert "not assessed" in dialog.auroc_text(label)
    assert "gui-test-resnet18" in dialog.windowTitle()
    dialog.close()

    about = window.show_about()
    text = about.text.toPlainText()
    for needed in ("Not for diagnostic use", "NIH Clinical Center", "Wang X", "CVPR 2017", "Kermany",
                   "CC BY 4.0", "PySide6", "LGPL"):
        assert needed in text
    about.close()
    assert window.status.notice.text() == "Not for diagnostic use" and window.status.notice.isVisible()


def test_quit_with_work_in_flight_is_clean(qtbot, make_window, dicom_dir: Path) -> None:  # noqa: ANN001
    window: MainWindow = make_window()
    files = [dicom_dir / f"udacity_nih_test{i}.dcm" for i in (1, 2, 3)]
    files.append(dicom_dir / "pydicom-data_RG1_J2KI.dcm")
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths(files)
    images = [i for s in window.studies.values() for i in s.images]
    qtbot.waitUntil(lambda: any(i.state == State.ANALYSING for i in images), timeout=20000)
    start = time.monotonic()
    window.close()
    assert time.monotonic() - start < 15
    assert QThreadPool.globalInstance().activeThreadCount() == 0
    queued = [i for s in window.studies.values() for i in s.images if i.state == State.QUEUED]
    assert queued, "the queued work should have been dropped, not run"


class _Emitter(QObject):
    ping = Signal()


def test_qt_binding_keeps_reference_counts() -> None:
    """PySide6 6.12.0 on Python 3.11 drops a reference to True per Signal.emit and to None per
    QRunnable.run, which aborts the app after a few thousand calls (why pyproject pins <6.12)."""
    emitter = _Emitter()
    pool = QThreadPool.globalInstance()

    class Job(QRunnable):
        def run(self) -> None:
            pass

    true_before, none_before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(500):
        emitter.ping.emit()
    for _ in range(200):
        pool.start(Job())
    pool.waitForDone()
    assert sys.getrefcount(True) - true_before > -100
    assert sys.getrefcount(None) - none_before > -100


def test_thread_guard_reports_a_running_worker() -> None:
    before = python_threads()
    release = threading.Event()
    worker = threading.Thread(target=release.wait, name="leaky")
    worker.start()
    try:
        assert any("leaky" in leak for leak in running_threads(before))
    finally:
        release.set()
        worker.join()
    assert running_threads(before) == []


def test_self_test_command_prints_findings(tiny_model: Path, dicom_dir: Path, tmp_path: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "cxrviewer.gui.app", "--model", str(tiny_model), "--self-test",
         str(dicom_dir / "udacity_nih_test1.dcm")],
        capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "state: done" in out and "model: gui-test-resnet18" in out
    for label in MODEL_LABELS:
        assert label in out
    assert "not assessed by this model" in out
    assert not (tmp_path / ".config" / "cxrviewer").exists()  # the self-test leaves no settings behind



def test_cancel_queued_analyses(qtbot, window: MainWindow, dicom_dir: Path) -> None:  # noqa: ANN001
    files = [dicom_dir / f"udacity_nih_test{i}.dcm" for i in (1, 2, 3)]
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths(files)
    window.table.actions["cancel"].trigger()
    qtbot.waitUntil(lambda: not window.pipeline.busy, timeout=30000)
    states = [i.state for s in window.studies.values() for i in s.images]
    assert State.QUEUED not in states and State.ANALYSING not in states
    cancelled = [i for s in window.studies.values() for i in s.images if i.state == State.NOT_ANALYSED]
    assert cancelled and all(i.message == "analysis cancelled" for i in cancelled)
    # and they can be analysed later on request
    study = next(s for s in window.studies.values() if s.images[0] in cancelled)
    window.browser.set_current(study.key)
    with qtbot.waitSignal(window.pipeline.analysed, timeout=60000):
        window.table.actions["reanalyse"].trigger()
    assert study.state == State.DONE
