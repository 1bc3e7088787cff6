"""`Intake` on its own: built from a `ViewerState`, a worklist, a stand-in pipeline, the image cache, settings, a
`FilmDisplay`, its widgets and plain callbacks (no main window), it lists what was opened and shows the first
study, lists unreadable files with their message, hides identifiers in failure messages, reports the model's
status and drops scans that return while the viewer closes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QComboBox, QStackedWidget, QStatusBar, QWidget

from cxrviewer.gui import backend
from cxrviewer.gui.caches import ImageCache, OverlayCache
from cxrviewer.gui.film_display import FilmDisplay, FilmWidgets
from cxrviewer.gui.findings_panel import FindingsPanel
from cxrviewer.gui.image_view import ImageCanvas
from cxrviewer.gui.intake import Intake, IntakeWidgets
from cxrviewer.gui.records import State
from cxrviewer.gui.settings import AppSettings
from cxrviewer.gui.status_bar import StatusBar
from cxrviewer.gui.study_browser import StudyBrowser
from cxrviewer.gui.viewer_state import ModelPhase, ViewerState
from cxrviewer.gui.welcome import WelcomePage
from cxrviewer.gui.worklist import Worklist


class FakePipeline:
    """Records the scans and decodes asked for; scans are run by the test (`backend.scan`)."""

    def __init__(self) -> None:
        self.scans: list[list[Path]] = []
        self.enqueued: list[tuple[str, Path, dict[str, Any]]] = []

    def scan(self, paths: list[Path]) -> int:
        self.scans.append(paths)
        return len(self.scans)

    def enqueue(self, key: str, path: Path, **kwargs: Any) -> None:
        self.enqueued.append((key, path, kwargs))

    def prioritise(self, key: str) -> bool:
        return False

    def is_pending(self, key: str) -> bool:
        return False

    def find_outline(self, key: str, image: Any) -> None:
        pass


def _png(path: Path, seed: int) -> Path:
    pixels = (np.random.default_rng(seed).random((96, 80)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_intake_without_a_window(qtbot, settings: AppSettings, tmp_path: Path) -> None:  # noqa: ANN001
    first, second = _png(tmp_path / "PID-4711-first.png", 1), _png(tmp_path / "second.png", 2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    state, worklist, images, pipeline = ViewerState(), Worklist(), ImageCache(), FakePipeline()

    parent = QWidget()
    qtbot.addWidget(parent)
    bar = QStatusBar(parent)
    browser = StudyBrowser(parent)
    film = FilmWidgets(ImageCanvas(parent), FindingsPanel(parent), QComboBox(parent), QWidget(parent),
                       QStackedWidget(parent), bar)
    film.stack.addWidget(QWidget())  # the start screen, then the viewer
    film.stack.addWidget(QWidget())
    heatmap = QAction("Heat map", parent)
    heatmap.setCheckable(True)
    messages: list[str] = []  # the status bar's, in order (the display's study line follows intake's own)
    bar.messageChanged.connect(messages.append)
    parent.show()  # the canvas reports only a visible message
    display = FilmDisplay(state, worklist, images, OverlayCache(), pipeline, lambda: None,  # type: ignore[arg-type]
                          film, set_title=lambda title: None, refresh_actions=lambda: None,
                          fill_presets=lambda decoded: None, heatmap=lambda: heatmap,
                          displayed_changed=lambda key: None, findings_shown=lambda key: None,
                          refresh_info=lambda: None)
    browser.current_changed.connect(display.show_study)
    welcome = WelcomePage(parent)
    updated: list[str] = []
    finished: list[str] = []
    sent: list[str] = []
    refreshed: list[bool] = []
    closing = [False]
    widgets = IntakeWidgets(browser, film.canvas, film.findings, welcome, StatusBar(bar), parent)
    intake = Intake(state, worklist, pipeline, images, settings, display, widgets,  # type: ignore[arg-type]
                    refresh_actions=lambda: refreshed.append(True), study_updated=updated.append,
                    image_finished=finished.append, auto_send=lambda study: sent.append(study.key),
                    closing=lambda: closing[0])

    # two files opened: scanned in the background, the dialogs start from the first next time
    token = intake.open_paths([first, second])
    assert pipeline.scans == [[first, second]]
    assert settings.last_folder == str(tmp_path)  # the folder of what was opened
    assert bar.currentMessage() == "Scanning 2 item(s)…"

    # the scan returns: two rows, both images queued for analysis, the first study shown
    intake.on_scanned(token, backend.scan([first, second]))
    assert len(worklist.studies) == 2 and browser.model.rowCount() == 2
    study_a, study_b = (worklist.studies[key] for key in worklist.studies)
    key_a, key_b = study_a.images[0].key, study_b.images[0].key
    assert study_a.images[0].path == first and study_b.images[0].path == second
    assert pipeline.enqueued == [(key_a, first, {}), (key_b, second, {}),  # analyses, then the shown film's decode
                                 (key_a, first, {"analyse": False, "front": True})]
    assert state.displayed_study == study_a.key and browser.current_key() == study_a.key
    assert state.displayed_image == study_a.images[0].key
    assert updated == [study_a.key, study_b.key]
    assert "Opened 2 studies (2 images queued)" in messages

    # the shown image decoded: on the canvas
    entry_a = worklist.entry(study_a.images[0].key)
    assert entry_a is not None
    intake.on_loaded(entry_a, backend.decode(first))
    assert film.canvas.has_image() and images.peek(entry_a.key) is not None

    # a result for the shown image: the study is reported finished and offered to PACS
    worklist.unanalysed(entry_a.key, "no model")
    intake.after_result(entry_a)
    assert finished == [entry_a.key] and sent == []  # not analysed: nothing to send
    entry_a.image.state = State.DONE
    intake.after_result(entry_a)
    assert sent == [study_a.key]

    # an unreadable file: its own row with its message, shown since it is all that was opened
    token = intake.open_paths([broken])
    intake.on_scanned(token, backend.scan([broken]))
    error_key = f"error:{broken}"
    assert error_key in worklist.studies and browser.model.rowCount() == 3
    assert "Opened 0 studies (0 images queued); 1 file could not be opened — see the list" in messages
    assert state.displayed_study == error_key
    assert film.canvas.message().startswith("This file could not be opened.\nbroken.png: ")
    assert len(pipeline.enqueued) == 3  # nothing to decode

    # a failure while identifiers are hidden: the message names neither the file nor the patient
    state.update(hide_identifiers=True)
    entry_a = worklist.failed(entry_a.key, f"{first}: decoding failed")
    assert entry_a is not None
    intake.after_failure(entry_a, f"{first}: decoding failed")
    assert bar.currentMessage() == "[file]: decoding failed"
    assert "PID-4711" not in bar.currentMessage()
    assert finished[-1] == entry_a.key and updated[-1] == study_a.key

    # no model: the start screen, the status bar and the findings panel say so; the actions follow
    intake.on_model_failed("no bundle found")
    assert state.model.phase is ModelPhase.FAILED
    assert welcome.model_label.text().startswith("No model available: no bundle found\nImages can still be viewed.")
    assert widgets.status.model_status.full_text() == "No model"
    assert refreshed == [True]

    # a scan returning while the viewer closes adds nothing
    closing[0] = True
    third = _png(tmp_path / "third.png", 3)
    token = intake.open_paths([third])
    intake.on_scanned(token, backend.scan([third]))
    assert len(worklist.studies) == 3 and browser.model.rowCount() == 3 and len(pipeline.enqueued) == 3
