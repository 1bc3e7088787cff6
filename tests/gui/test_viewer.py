"""The image canvas and the findings panel on real DICOM files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget

from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.records import State
from cxrviewer.labels import CHEXPERT_LABELS
from cxrviewer.report.reading import reading_order

from .conftest import MODEL_LABELS, POSITIVE


def open_and_analyse(qtbot, window: MainWindow, path: Path):  # noqa: ANN001, ANN201
    """Open one file and wait for the worker's result for it; returns its prediction."""
    with qtbot.waitSignal(window.pipeline.analysed, timeout=60000,
                          check_params_cb=lambda key, pred: key.endswith(str(path))) as blocker:
        window.open_paths([path])
    qtbot.waitUntil(lambda: window.canvas.has_image(), timeout=10000)
    return blocker.args[1]


@pytest.fixture
def analysed(qtbot, window: MainWindow, dicom_dir: Path):  # noqa: ANN001, ANN201
    path = dicom_dir / "udacity_nih_test2.dcm"
    prediction = open_and_analyse(qtbot, window, path)
    return window, prediction


def test_dicom_findings_appear_ranked(analysed) -> None:  # noqa: ANN001
    window, prediction = analysed
    panel = window.findings
    ranked = panel.ranked()  # reading order: flagged first (by margin), then the rest; No Finding is the summary
    assert [label for label, _ in ranked] == [f.label for f in reading_order(prediction.findings)]
    assert sorted(label for label, _ in ranked) == sorted(set(MODEL_LABELS) - {"No Finding"})
    assert {label for label, _ in ranked[:len(POSITIVE)]} == POSITIVE
    assert panel.summary_label.text().startswith(f"{len(POSITIVE)} findings flagged · No Finding ")
    assert {r.label for r in panel.rows if r.positive} == POSITIVE
    # CheXpert observations the model lacks are listed, greyed, never as a (negative) probability
    missing = [lab for lab in CHEXPERT_LABELS if lab not in MODEL_LABELS]
    assert panel.not_assessed() == missing
    for label in missing:
        row = panel.row(label)
        assert row is not None and row.probability is None and not row.positive
        assert "not assessed" in row.text()
    # the study row says done and names the top finding; the canvas shows the real pixel grid
    study = next(iter(window.studies.values()))
    assert study.state == State.DONE
    model = window.browser.model
    assert model.data(model.index(0), Qt.ItemDataRole.DecorationRole) is not None  # thumbnail
    top = study.top_finding()
    assert top is not None and top[0].label in POSITIVE
    assert top[0].label in window.browser.row_texts()[0]
    assert window.canvas.display_array().shape == (1024, 1024)


def test_click_finding_shows_overlay_and_colour_bar(qtbot, analysed) -> None:  # noqa: ANN001
    window, prediction = analysed
    canvas = window.canvas
    negative = next(f.label for f in prediction.findings if not f.positive)
    qtbot.mouseClick(window.findings.row(negative), Qt.MouseButton.LeftButton)
    assert not canvas.overlay_shown() and not canvas.colour_bar.isVisible()
    assert "below its operating point" in canvas.message()

    qtbot.mouseClick(window.findings.row("Pleural Effusion"), Qt.MouseButton.LeftButton)
    assert window.findings.selected_label == "Pleural Effusion"
    assert canvas.overlay_shown()
    assert canvas.colour_bar.isVisible() and canvas.colour_bar.title == "Pleural Effusion"
    assert canvas.message() == ""
    overlay = canvas._overlay_item
    assert overlay.isVisible()
    covered = overlay.mapRectToScene(overlay.boundingRect())
    assert covered.width() == pytest.approx(1024, abs=1) and covered.height() == pytest.approx(1024, abs=1)
    # the peak marker sits at the engine's CAM peak (original pixels)
    peak = prediction.finding("Pleural Effusion").cam_peak
    assert canvas._peak_item.isVisible()
    assert canvas._peak_item.pos().x() == pytest.approx(peak[0] + 0.5, abs=1e-6)

    qtbot.keyClick(window, Qt.Key.Key_H)  # heat map off
    assert not canvas.overlay_shown() and not canvas.colour_bar.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_H)
    assert canvas.overlay_shown() and canvas.colour_bar.isVisible()
    window.findings.opacity_slider.setValue(25)
    assert overlay.opacity() == pytest.approx(0.25)


def test_window_level_and_invert_change_displayed_pixels(qtbot, analysed) -> None:  # noqa: ANN001
    window, _ = analysed
    canvas = window.canvas
    before = canvas.display_array().copy()
    pixels = canvas.image.pixels.astype(np.float64)
    qtbot.keyClick(window, Qt.Key.Key_I)
    assert canvas.inverted
    assert np.array_equal(canvas.display_array(), 255 - before)
    qtbot.keyClick(window, Qt.Key.Key_I)
    assert np.array_equal(canvas.display_array(), before)

    # right-drag to the left narrows the window: more contrast, order of grey levels kept
    start = canvas.current_window
    vp = canvas.viewport()
    centre = QPointF(vp.width() / 2, vp.height() / 2)
    end = centre + QPointF(-110, 0)
    for kind, pos, button, buttons in ((QEvent.Type.MouseButtonPress, centre, Qt.MouseButton.RightButton,
                                        Qt.MouseButton.RightButton),
                                       (QEvent.Type.MouseMove, end, Qt.MouseButton.NoButton,
                                        Qt.MouseButton.RightButton),
                                       (QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.RightButton,
                                        Qt.MouseButton.NoButton)):
        QApplication.sendEvent(vp, QMouseEvent(kind, pos, vp.mapToGlobal(pos), button, buttons,
                                               Qt.KeyboardModifier.NoModifier))
    w = canvas.current_window
    assert w.width < start.width and w.center == pytest.approx(start.center)
    # the preset box no longer claims the file's own window (issue 15: it kept saying "File default")
    combo = window.presets.combo
    assert window.presets.is_custom() and combo.currentText() == f"Custom · W {w.width:.0f} L {w.center:.0f}"
    shown = canvas.display_array().astype(np.float64)
    assert shown.std() > before.std()
    # exactly the DICOM LINEAR window (PS3.3 C.11.2.1.2.1) on this MONOCHROME2 film
    expected = np.clip((pixels - (w.center - 0.5)) / (w.width - 1) + 0.5, 0, 1) * 255
    assert np.abs(shown - expected).max() <= 1.0

    qtbot.keyClick(window, Qt.Key.Key_Space)  # reset
    assert np.array_equal(canvas.display_array(), before) and canvas.user_window is None
    assert combo.currentText() == "1 · File default" and combo.count() == len(window.presets.presets)
    qtbot.keyClick(window, Qt.Key.Key_2)  # a preset key selects its entry
    assert combo.currentIndex() == 1 and not window.presets.is_custom()


def test_zoom_pan_rotate_keys_and_pixel_readout(qtbot, analysed) -> None:  # noqa: ANN001
    window, _ = analysed
    canvas = window.canvas
    fit_zoom = canvas.zoom
    assert canvas.fit_mode and fit_zoom < 1.0  # a 1024 px film fits an 800 px window
    qtbot.keyClick(window, Qt.Key.Key_Plus)
    assert canvas.zoom == pytest.approx(fit_zoom * 1.25)
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)
    assert canvas.zoom == pytest.approx(1.0)
    qtbot.keyClick(window, Qt.Key.Key_Equal)
    assert canvas.fit_mode and canvas.zoom == pytest.approx(fit_zoom)
    qtbot.keyClick(window, Qt.Key.Key_R)
    assert canvas.rotation == 90

    # wheel zoom keeps the image point under the cursor in place
    vp = canvas.viewport()
    at = QPointF(vp.width() * 0.3, vp.height() * 0.4)
    scene_before = canvas.mapToScene(at.toPoint())
    wheel = QWheelEvent(at, vp.mapToGlobal(at), QPoint(), QPoint(0, 120), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(vp, wheel)
    assert canvas.zoom > fit_zoom
    scene_after = canvas.mapToScene(at.toPoint())
    assert abs(scene_after.x() - scene_before.x()) < 3 and abs(scene_after.y() - scene_before.y()) < 3

    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert canvas.rotation == 0 and canvas.fit_mode

    # pixel value and position under the cursor
    target = canvas.mapFromScene(QPointF(300.5, 200.5))
    move = QMouseEvent(QEvent.Type.MouseMove, QPointF(target), vp.mapToGlobal(QPointF(target)),
                       Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(vp, move)
    text = window.status.pixel_label.text()
    x, y = (int(v) for v in text.split("=")[0].replace("x", "").split("y"))
    assert abs(x - 300) <= 1 and abs(y - 200) <= 1
    assert text.endswith(f"= {canvas.image.pixels[y, x]:g}")


def test_analysed_region_outlined_when_letterbox_pads(qtbot, window: MainWindow, dicom_dir: Path) -> None:  # noqa: ANN001
    path = dicom_dir / "pydicom-data_RG1_J2KI.dcm"  # 1841 x 1955: letterboxing pads left and right
    prediction = open_and_analyse(qtbot, window, path)
    assert prediction.letterbox.pad_x > 0
    qtbot.waitUntil(lambda: window.canvas.overlay_shown(), timeout=5000)
    region = window.canvas.analysed_region()
    assert region is not None and window.canvas.analysed_region_shown()
    assert region.width() == pytest.approx(1841, rel=0.01)
    assert region.height() == pytest.approx(1955, rel=0.01)
    assert "analysed region" in window.canvas.annotation_text()


class _ShowSpy(QObject):
    """Records every top-level widget that gets shown."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[str] = []

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Show and isinstance(obj, QWidget) and obj.isWindow():
            self.shown.append(type(obj).__name__)
        return False


def test_refreshing_findings_leaves_no_stray_windows(qtbot, analysed) -> None:  # noqa: ANN001
    window, _ = analysed
    spy = _ShowSpy()
    QApplication.instance().installEventFilter(spy)
    try:
        for _ in range(3):  # several refreshes within one event-loop pass, as when results arrive together
            window.display.refresh_findings(auto_select=True)
        qtbot.wait(100)
    finally:
        QApplication.instance().removeEventFilter(spy)
    assert spy.shown == []  # a removed row must never pop up as a window of its own, even briefly
    strays = [w for w in QApplication.topLevelWidgets() if w.isVisible() and w is not window]
    assert strays == []
    # every label once ("No Finding" is the summary line, not a row)
    assert len(window.findings.rows) == len(MODEL_LABELS) - 1 + len(window.findings.not_assessed())


def test_display_heat_map_matches_engine_map(analysed) -> None:  # noqa: ANN001
    """The canvas draws the engine's fixed-scale map, only resampled to display resolution."""
    import cv2

    from cxrviewer.gui import backend

    _, prediction = analysed
    for label in POSITIVE:
        small = backend.heat_map(prediction, label, max_side=256)
        full = prediction.cam(label)
        assert small is not None and full is not None and small.shape == (256, 256)
        reference = cv2.resize(full, (256, 256), interpolation=cv2.INTER_AREA)
        assert np.abs(small - reference).max() < 0.02
    negative = next(f.label for f in prediction.findings if not f.positive)
    assert backend.heat_map(prediction, negative) is None and prediction.cam(negative) is None
