"""The viewer's Qt-free state: what is shown, hidden identifiers and the model's status, with change notification;
the window's widgets, exports and settings follow it."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import pytest
from PySide6.QtCore import QSettings, Qt

from cxrviewer.gui import backend
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.settings import AppSettings
from cxrviewer.gui.viewer_state import ModelPhase, ModelStatus, ViewerState

from .conftest import wait_all_finished

SECRETS = ("Doe", "Jane", "PID-4711-SECRET", "ACC-998877", "20190314", "2019-03-14")


def test_listeners_hear_only_of_fields_that_changed() -> None:
    state = ViewerState()
    heard: list[frozenset[str]] = []
    unsubscribe = state.subscribe(heard.append)
    assert state.update(displayed_study="s1", displayed_image="s1|a") == {"displayed_study", "displayed_image"}
    assert state.update(displayed_study="s1") == frozenset()  # same value: nobody is told
    state.update(model=ModelStatus(ModelPhase.FAILED, message="no torch"))
    assert heard == [frozenset({"displayed_study", "displayed_image"}), frozenset({"model"})]
    assert state.model.phase is ModelPhase.FAILED and state.model.message == "no torch"
    unsubscribe()
    state.update(selected_label="Edema")
    assert len(heard) == 2 and state.selected_label == "Edema"
    with pytest.raises(TypeError):
        state.update(zoom=2)
    with pytest.raises(TypeError):
        state.update(model="ready")


def test_hide_identifiers_is_state_with_notification() -> None:
    state = ViewerState()
    heard: list[frozenset[str]] = []
    state.subscribe(heard.append)
    assert state.hide_identifiers is False
    assert state.update(hide_identifiers=True) == {"hide_identifiers"}
    assert state.update(hide_identifiers=True) == frozenset()
    assert state.hide_identifiers is True and heard == [frozenset({"hide_identifiers"})]
    with pytest.raises(TypeError):
        state.update(hide_identifiers="yes")


@pytest.fixture
def named_study(tmp_path: Path, dicom_dir: Path) -> Path:
    """A DICOM film whose header carries a patient's name, ID, accession number and study date."""
    ds = pydicom.dcmread(dicom_dir / "udacity_nih_test2.dcm")
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-4711-SECRET"
    ds.AccessionNumber = "ACC-998877"
    ds.StudyDate = "20190314"
    path = tmp_path / "named" / "study.dcm"
    path.parent.mkdir()
    ds.save_as(path)
    return path


def _open(qtbot, window: MainWindow, path: Path) -> None:  # noqa: ANN001
    window.open_paths([path])
    wait_all_finished(qtbot, window, expected_images=1)
    qtbot.waitUntil(window.canvas.has_image, timeout=20000)


def _leaks(window: MainWindow) -> list[str]:
    texts = [window.windowTitle(), window.canvas.annotation_text(), window.statusBar().currentMessage(),
             *window.browser.row_texts()]
    return [secret for secret in SECRETS if any(secret in text for text in texts)]


def test_hide_identifiers_state_drives_action_browser_title_and_setting(qtbot, window: MainWindow,  # noqa: ANN001
                                                                         named_study: Path,
                                                                         settings: AppSettings) -> None:
    _open(qtbot, window, named_study)
    action, button = window.table["hide_ids"], window.browser.hide_button
    assert "Doe, Jane" in window.windowTitle() and "PID-4711-SECRET" in "\n".join(window.browser.row_texts())
    assert not action.isChecked() and not button.isChecked() and not settings.hide_identifiers

    window.state.update(hide_identifiers=True)  # the state alone: every switch and text follows
    assert action.isChecked() and button.isChecked() and window.browser.hide_identifiers
    assert window.windowTitle().startswith("Study ") and _leaks(window) == []
    assert settings.hide_identifiers

    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # the browser's toggle writes the state
    assert window.state.hide_identifiers is False and not action.isChecked()
    assert "Doe, Jane" in window.windowTitle() and not settings.hide_identifiers

    action.trigger()  # and the toolbar action
    assert window.state.hide_identifiers is True and button.isChecked() and _leaks(window) == []
    info = window.show_study_info()
    assert info is not None and "Doe" not in "\n".join(info.texts())
    info.close()


def test_export_is_anonymised_while_identifiers_are_hidden(qtbot, window: MainWindow, named_study: Path,  # noqa: ANN001
                                                          tmp_path: Path) -> None:
    if not window.exports_available():
        pytest.skip("exports module not present")
    _open(qtbot, window, named_study)

    def secrets_in(folder: Path) -> set[str]:
        written = window.export_current(folder, {"json", "sr"})
        assert written
        found = {secret for path in written for secret in SECRETS if secret.encode() in path.read_bytes()}
        return found | {secret for path in written for secret in SECRETS if secret in path.name}

    assert "PID-4711-SECRET" in secrets_in(tmp_path / "plain")  # the test can fail: they are exported as shown
    window.state.update(hide_identifiers=True)
    assert secrets_in(tmp_path / "hidden") == set()


def test_hidden_identifiers_are_remembered(qtbot, make_window, settings_path: Path) -> None:  # noqa: ANN001
    stored = AppSettings(QSettings(str(settings_path), QSettings.Format.IniFormat))
    stored.hide_identifiers = True
    stored.sync()
    window: MainWindow = make_window(settings_=AppSettings(QSettings(str(settings_path),
                                                                     QSettings.Format.IniFormat)))
    assert window.state.hide_identifiers and window.table["hide_ids"].isChecked()
    assert window.browser.hide_button.isChecked()
    window.state.update(hide_identifiers=False)
    window.close()
    assert not AppSettings(QSettings(str(settings_path), QSettings.Format.IniFormat)).hide_identifiers


def test_window_state_follows_the_film_and_the_model(qtbot, make_window, tiny_model: Path,  # noqa: ANN001
                                                     monkeypatch: pytest.MonkeyPatch, dicom_dir: Path) -> None:
    release = threading.Event()
    load = backend.load_engine
    monkeypatch.setattr(backend, "load_engine", lambda source: (release.wait(60), load(source))[1])
    window: MainWindow = make_window()
    changes: list[frozenset[str]] = []
    window.state.subscribe(changes.append)
    window.open_paths([dicom_dir / "udacity_nih_test2.dcm"])
    qtbot.waitUntil(window.canvas.has_image, timeout=20000)
    study = window.current_study()
    assert study is not None and window.state.displayed_study == study.key
    assert window.state.displayed_image == study.images[0].key
    assert window.state.model.phase is ModelPhase.LOADING  # the film is shown, the model still loads
    assert any("displayed_image" in c for c in changes)
    release.set()
    qtbot.waitUntil(lambda: window.state.model.phase is ModelPhase.READY, timeout=60000)
    assert window.state.model.name == window.engine.name and window.model_error == ""
    assert any("model" in c for c in changes)
