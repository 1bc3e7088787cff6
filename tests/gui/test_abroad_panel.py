"""The findings panel says when a film is unlike the training films, and still lists every finding."""

from __future__ import annotations

from pathlib import Path

from cxrviewer.gui.findings_panel import FindingsPanel
from cxrviewer.imaging import load_image
from cxrviewer.model.inference import Engine
from cxrviewer.train.shift import shift_image


def test_panel_warns_that_findings_are_less_reliable_on_a_film_with_icu_devices(qtbot, shared_data: Path) -> None:  # noqa: ANN001
    engine = Engine.bundled(threads=1)
    film = load_image(shared_data / "dicom" / "udacity_nih_test1.dcm")
    panel = FindingsPanel()
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    panel.show_prediction(engine.predict(film), engine.not_covered)
    assert panel.warning_label.isHidden() or "unlike the training films" not in panel.warning_label.text()
    prediction = engine.predict(shift_image(film, "icu_devices", seed=2))
    panel.show_prediction(prediction, engine.not_covered)
    text = panel.warning_label.text()
    assert panel.warning_label.isVisible() and "unlike the training films" in text
    assert "lines or tubes" in text and "less reliable" in text and "Pneumothorax" in text
    # findings are shown, not withheld ("No Finding" is the summary line)
    assert {row.label for row in panel.rows} >= set(engine.labels) - {"No Finding"} and panel.summary_label.text()
