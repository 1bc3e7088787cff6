"""The optional lung outline overlay: off by default, drawn from the prediction's lung fields when switched on."""

from __future__ import annotations

from pathlib import Path

from cxrviewer.gui.main_window import MainWindow

from .test_viewer import open_and_analyse


def test_lung_outline_toggles_and_lies_on_the_film(qtbot, window: MainWindow, dicom_dir: Path) -> None:  # noqa: ANN001
    prediction = open_and_analyse(qtbot, window, dicom_dir / "udacity_nih_test2.dcm")
    assert len(prediction.lung_outline) == 2  # both lung fields of a real adult PA film
    canvas = window.canvas
    qtbot.waitUntil(lambda: not canvas._lungs_item.path().isEmpty(), timeout=10000)
    assert not canvas.lung_outline_shown()  # optional: off until asked for
    window.table["lungs"].trigger()
    assert canvas.lung_outline_shown()
    rect = canvas._lungs_item.path().boundingRect()
    h, w = canvas.display_array().shape[:2]
    # inside the film, covering a plausible thorax: both halves, at least a third of each side
    assert 0 <= rect.left() < w / 2 < rect.right() <= w and 0 <= rect.top() and rect.bottom() <= h
    assert rect.width() > w / 3 and rect.height() > h / 3
    window.table["lungs"].trigger()
    assert not canvas.lung_outline_shown()
