"""`FilmDisplay` on its own: built from a `ViewerState`, a worklist, caches, a stand-in pipeline, its widgets and
plain callbacks (no main window), it shows a study's film, titles and status texts, hides identifiers when the
state says so and says when a file could not be opened."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydicom
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QComboBox, QStackedWidget, QStatusBar, QWidget

from cxrviewer.gui import backend
from cxrviewer.gui.caches import ImageCache, OverlayCache
from cxrviewer.gui.film_display import FilmDisplay, FilmWidgets
from cxrviewer.gui.findings_panel import FindingsPanel
from cxrviewer.gui.image_view import ImageCanvas
from cxrviewer.gui.viewer_state import ModelPhase, ModelStatus, ViewerState
from cxrviewer.gui.worklist import Worklist


class FakePipeline:
    """Records what the display asks of the pipeline."""

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, dict[str, Any]]] = []

    def prioritise(self, key: str) -> bool:
        return False

    def is_pending(self, key: str) -> bool:
        return False

    def enqueue(self, key: str, path: Path, **kwargs: Any) -> None:
        self.enqueued.append((key, kwargs))

    def find_outline(self, key: str, image: Any) -> None:
        pass


def test_film_display_without_a_window(qtbot, dicom_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    ds = pydicom.dcmread(dicom_dir / "udacity_nih_test2.dcm")
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-4711-SECRET"
    source = tmp_path / "PID-4711-SECRET.dcm"
    ds.save_as(source)
    state, worklist, images, pipeline = ViewerState(), Worklist(), ImageCache(), FakePipeline()
    (scanned,) = backend.scan([source]).studies
    study, _, _ = worklist.add_scanned(scanned)
    image = study.images[0]

    parent = QWidget()
    qtbot.addWidget(parent)
    widgets = FilmWidgets(ImageCanvas(parent), FindingsPanel(parent), QComboBox(parent), QWidget(parent),
                          QStackedWidget(parent), QStatusBar(parent))
    widgets.stack.addWidget(QWidget())  # the start screen, then the viewer
    widgets.stack.addWidget(QWidget())
    heatmap = QAction("Heat map", parent)
    heatmap.setCheckable(True)
    parent.show()  # the canvas reports only a visible message
    titles: list[str] = []
    shown: list[str] = []
    display = FilmDisplay(state, worklist, images, OverlayCache(), pipeline, lambda: None,  # type: ignore[arg-type]
                          widgets, set_title=titles.append, refresh_actions=lambda: None,
                          fill_presets=lambda decoded: None, heatmap=lambda: heatmap,
                          displayed_changed=shown.append, findings_shown=lambda key: None, refresh_info=lambda: None)

    # not decoded yet: "Loading…" and a display-only decode asked for at the front of the queue
    display.show_study(study.key)
    assert widgets.canvas.message() == "Loading…" and not widgets.canvas.has_image()
    assert pipeline.enqueued == [(image.key, {"analyse": False, "front": True})]

    # the film is in the cache: shown on the canvas, the state, title and status bar follow
    images.put(image.key, backend.decode(source))
    display.show_study(study.key)
    assert widgets.canvas.has_image() and not widgets.canvas.message()
    assert widgets.stack.currentIndex() == 1
    assert state.displayed_study == study.key and state.displayed_image == image.key
    assert shown == [image.key, image.key]
    assert titles[-1].startswith(study.title(False, image)) and titles[-1].endswith(" — cxrviewer")
    assert "Doe" in titles[-1]
    assert widgets.status.currentMessage().startswith(f"{study.title(False)}: ")
    assert widgets.findings.status_label.text() == "Loading the model… the findings follow when it is ready."

    # the model failed: the film stays, the findings panel says why there are none
    state.update(model=ModelStatus(ModelPhase.FAILED, message="no bundle found"))
    worklist.unanalysed(image.key, "no model")
    display.refresh_findings()
    assert widgets.findings.status_label.text().startswith("Not analysed — no model is available.\nno bundle found")
    assert widgets.canvas.has_image()

    # identifiers hidden: the title, status bar and image picker lose them
    state.update(hide_identifiers=True)
    display.apply_identifier_mode()
    assert "Doe" not in titles[-1] and "PID-4711" not in titles[-1]
    assert "Doe" not in widgets.status.currentMessage()
    assert "PID-4711" not in widgets.image_combo.itemText(0)

    # an unreadable file: its message on the canvas and in the findings panel, nothing queued
    broken = worklist.add_error(tmp_path / "broken.png", "not an image")
    assert broken is not None
    display.show_study(broken.key)
    assert widgets.canvas.message() == "This file could not be opened.\nnot an image"
    assert not widgets.canvas.has_image()
    assert widgets.findings.status_label.text() == "This file could not be opened: not an image"
    assert len(pipeline.enqueued) == 1

    # no study: the start screen while nothing is listed
    worklist.remove(study.key)
    worklist.remove(broken.key)
    display.show_study("")
    assert widgets.stack.currentIndex() == 0 and titles[-1].startswith("cxrviewer — ")


def test_a_film_arriving_after_its_findings_gets_its_map_without_a_second_panel_fill(  # noqa: D103
        qtbot, window, dicom_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    from cxrviewer.gui.findings_panel import FindingsPanel as Panel

    from .conftest import wait_all_finished

    window.open_paths([dicom_dir / "udacity_nih_test1.dcm", dicom_dir / "udacity_nih_test2.dcm"])
    wait_all_finished(qtbot, window, 2)
    shown = window.current_study()
    other = next(s for s in window.studies.values() if s is not shown)
    image = other.images[0]
    window.images.pop(image.key)  # not decoded any more: the findings are listed before the film arrives
    fills: list[object] = []  # the predictions the panel was filled with
    real = Panel.show_prediction
    monkeypatch.setattr(Panel, "show_prediction", lambda self, prediction, *a, **k: (
        fills.append(prediction), real(self, prediction, *a, **k)))
    first = image.prediction

    window.display.show_study(other.key)
    assert window.canvas.message() == "Loading…" and fills == [first]
    qtbot.waitUntil(lambda: window.canvas.has_image() and window.canvas.overlay_shown(), timeout=20000)
    top = image.top_finding()
    assert top is not None and top.positive and window.display.selected_label == top.label
    assert window.findings.row(top.label) is not None
    assert fills == [first]  # the rows were not filled a second time when the film came

    # a changed prediction (re-analysis, site points) still refills the panel when its film arrives
    window.images.pop(image.key)
    window.display.show_study(shown.key)
    window.display.show_study(other.key)
    image.prediction = changed = copy.copy(first)
    qtbot.waitUntil(lambda: window.canvas.has_image(), timeout=20000)
    assert fills == [first, shown.images[0].prediction, first, changed]
