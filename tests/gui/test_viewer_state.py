"""The viewer's Qt-free state: what is shown and the model's status, with change notification."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cxrviewer.gui import backend
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.viewer_state import ModelPhase, ModelStatus, ViewerState


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
