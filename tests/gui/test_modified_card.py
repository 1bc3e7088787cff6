"""The viewer and a model card edited after sealing: refused with the reason unless explicitly allowed, and then
"modified model card" stays visible in the findings panel, the status bar and the model card dialog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel

from cxrviewer.gui import backend
from cxrviewer.gui.app import parse_args
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.model.card import MODIFIED_CARD


@pytest.fixture
def edited_model(tiny_model: Path, tmp_path: Path) -> Path:
    """The test model's bundle copied with two operating points edited (issue 21's construction)."""
    doc = json.loads(tiny_model.read_text(encoding="utf-8"))
    shutil.copy2(tiny_model.parent / doc["weights"]["file"], tmp_path / doc["weights"]["file"])
    doc["thresholds"].update({"Pneumothorax": 0.999, "Cardiomegaly": 0.0})
    path = tmp_path / tiny_model.name
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


def _window(qtbot, settings, source: backend.ModelSource) -> MainWindow:  # noqa: ANN001
    window = MainWindow(settings, source)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    return window


def test_modified_card_is_refused_with_its_reason(qtbot, settings, edited_model: Path) -> None:  # noqa: ANN001
    window = _window(qtbot, settings, backend.ModelSource(edited_model, "test"))
    try:
        qtbot.waitUntil(lambda: "No model available" in window.findings.model_label.text(), timeout=20000)
        text = window.findings.model_label.text()
        assert MODIFIED_CARD in text and "--allow-modified-card" in text and edited_model.name in text
        assert window.engine is None and not window.findings.card_label.isVisible()
    finally:
        window.close()


def test_allowed_modified_card_is_shown_as_modified(qtbot, settings, edited_model: Path) -> None:  # noqa: ANN001
    window = _window(qtbot, settings, backend.ModelSource(edited_model, "test", allow_modified_card=True))
    try:
        card_action = window.table.actions["model_card"]
        qtbot.waitUntil(lambda: window.engine is not None and card_action.isEnabled(), timeout=20000)
        engine = window.engine
        assert engine is not None and engine.card_status == "modified"
        panel = window.findings
        assert panel.card_label.isVisible() and MODIFIED_CARD in panel.card_label.text().lower()
        assert MODIFIED_CARD in window.status.model_status.full_text()
        dialog = window.show_model_card()
        assert dialog is not None
        texts = " ".join(label.text() for label in dialog.findChildren(QLabel))
        assert f"card SHA-256 {engine.card_sha256[:12]}" in texts and MODIFIED_CARD in texts.lower()
        dialog.close()
    finally:
        window.close()


def test_sealed_card_shows_no_warning(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    qtbot.waitUntil(lambda: window.engine is not None, timeout=20000)
    assert window.engine.card_status == "sealed"
    assert not window.findings.card_label.isVisible()
    assert MODIFIED_CARD not in window.status.model_status.full_text()


def test_command_line_flag_and_environment_allow_a_modified_card(monkeypatch: pytest.MonkeyPatch,
                                                                  edited_model: Path) -> None:
    def make(argv: list[str]) -> backend.ModelSource:
        args = parse_args(argv)
        return backend.model_source(args.model, args.allow_modified_card)

    monkeypatch.delenv(backend.ALLOW_MODIFIED_CARD_ENV, raising=False)
    assert not make(["--model", str(edited_model)]).allow_modified_card
    assert make(["--model", str(edited_model), "--allow-modified-card"]).allow_modified_card
    monkeypatch.setenv(backend.ALLOW_MODIFIED_CARD_ENV, "1")
    assert make(["--model", str(edited_model)]).allow_modified_card
