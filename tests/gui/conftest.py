"""Fixtures for the viewer's tests: a small real model, temporary settings and a thread-leak guard.

The model is a real `cxrviewer` bundle (random weights, ResNet-18 at 128 px) written with `save_bundle`
and loaded through the normal path; its operating points are set so that which findings are positive
is known in advance (0.001 -> always positive, 0.999 -> always negative).
"""

from __future__ import annotations

import gc
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, QThread, QThreadPool

from cxrviewer.gui import backend
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.records import State
from cxrviewer.gui.settings import AppSettings

MODEL_LABELS = ["No Finding", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation",
                "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Emphysema"]
POSITIVE = {"Cardiomegaly", "Pleural Effusion", "Lung Opacity"}  # operating point 0.001
FOLD_STD = {lab: round(0.01 + i / 1000, 4) for i, lab in enumerate(MODEL_LABELS)}  # AUROC spread across folds


def _thresholds() -> dict[str, float]:
    return {lab: (0.001 if lab in POSITIVE else 0.999) for lab in MODEL_LABELS}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from cxrviewer.model.network import build_network
    from cxrviewer.model.preprocess import preprocessing_record
    from cxrviewer.model.weights import save_bundle

    torch.manual_seed(0)
    net = build_network("resnet18", len(MODEL_LABELS))
    card = {
        "name": "gui-test-resnet18",
        "version": "test",
        "input_size": 128,
        "preprocessing": preprocessing_record(128),
        "labels": MODEL_LABELS,
        "thresholds": _thresholds(),
        "validation": {"per_label": {lab: {"auroc": round(0.6 + i / 50, 3), "n_pos": 10 + i, "n_neg": 90}
                                     for i, lab in enumerate(MODEL_LABELS)},
                       "cross_validation": {"folds": 3, "per_label": {
                           lab: {"auroc": {"mean": 0.6, "std": FOLD_STD[lab], "folds": 3}} for lab in MODEL_LABELS}}},
        "datasets": [{"name": "NIH ChestX-ray14", "license": "no restrictions",
                      "attribution": "Wang et al."}],
    }
    return save_bundle(net, card, tmp_path_factory.mktemp("model") / "tiny.json")


@pytest.fixture
def settings_path(tmp_path: Path) -> Path:
    return tmp_path / "settings" / "cxrviewer.ini"


@pytest.fixture
def settings(settings_path: Path) -> AppSettings:
    """Settings in a temporary INI file: tests never touch the user's settings."""
    return AppSettings(QSettings(str(settings_path), QSettings.Format.IniFormat))


def python_threads() -> set[threading.Thread]:
    """Real Python threads now alive (not the placeholders Python keeps for foreign threads)."""
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}  # type: ignore[attr-defined]


def running_threads(before: set[threading.Thread]) -> list[str]:
    """Descriptions of worker threads still running: Qt pool workers, QThreads, new Python threads."""
    leaks = []
    active = QThreadPool.globalInstance().activeThreadCount()
    if active:
        leaks.append(f"{active} QThreadPool worker(s) still active")
    for t in python_threads() - before:
        if t.is_alive():
            leaks.append(f"Python thread {t.name!r}")
    for obj in gc.get_objects():
        try:
            if issubclass(type(obj), QThread) and obj.isRunning() and obj is not QThread.currentThread():
                leaks.append(f"QThread {obj.objectName() or obj!r}")
        except RuntimeError:  # C++ object already deleted
            continue
    return leaks


@pytest.fixture(autouse=True)
def no_threads_left(qapp: object) -> Iterator[None]:
    """Fail any test that leaves a worker thread running after its windows are closed."""
    before = python_threads()
    yield
    leaks = running_threads(before)
    if leaks:
        QThreadPool.globalInstance().waitForDone(10000)  # do not let the leak disturb the next test
        pytest.fail("test left threads running: " + "; ".join(leaks))


@pytest.fixture
def make_window(qtbot, settings: AppSettings, tiny_model: Path) -> Iterator[Callable[..., MainWindow]]:  # noqa: ANN001
    windows: list[MainWindow] = []

    def make(model: Path | None = tiny_model, settings_: AppSettings | None = None,
             size: tuple[int, int] | None = (1280, 800)) -> MainWindow:
        source = backend.ModelSource(model, "test" if model is not None else "bundled")
        window = MainWindow(settings_ or settings, source)
        qtbot.addWidget(window)
        if size is not None:
            window.resize(*size)
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


@pytest.fixture
def window(make_window: Callable[..., MainWindow]) -> MainWindow:
    return make_window()


def wait_all_finished(qtbot, window: MainWindow, expected_images: int, timeout: int = 30000) -> None:  # noqa: ANN001
    """Wait until `expected_images` images are known and none is queued or analysing."""

    def finished() -> None:
        images = [img for s in window.studies.values() for img in s.images]
        assert len(images) >= expected_images
        assert all(img.state not in (State.QUEUED, State.ANALYSING) for img in images)
        assert not window.pipeline.busy

    qtbot.waitUntil(finished, timeout=timeout)


@pytest.fixture
def dicom_dir(shared_data: Path) -> Path:
    return shared_data / "dicom"


@pytest.fixture
def copy_file(tmp_path: Path) -> Callable[[Path, str], Path]:
    def copy(src: Path, name: str | None = None) -> Path:
        dst = tmp_path / "inputs" / (name or src.name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return dst

    return copy


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()
