"""Issue 15: what a first-time reader hit in the viewer; each test failed before its fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QComboBox, QLineEdit, QStyle, QStyleOptionComboBox

from cxrviewer.gui import assets
from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.records import State
from cxrviewer.gui.study_browser import MOST_ABNORMAL

from .conftest import FOLD_STD, MODEL_LABELS, wait_all_finished


def one_study(dicom_dir: Path, folder: Path, sources: list[str], truncate: set[int] = frozenset()) -> list[Path]:  # type: ignore[assignment]
    """Copies of shared DICOMs made into one study (same Study UID, no patient name), series 1, 2, ... in order;
    the files at the `truncate` positions lose the end of their pixel data."""
    from pydicom.uid import generate_uid

    study_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, source in enumerate(sources):
        ds = pydicom.dcmread(dicom_dir / source)
        ds.StudyInstanceUID = study_uid
        ds.PatientName = ""
        ds.PatientID = "issue-15"
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesNumber = i + 1
        path = folder / f"film{i + 1}.dcm"
        ds.save_as(path)
        if i in truncate:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        paths.append(path)
    return paths


def test_loading_banner_goes_when_the_film_arrives(qtbot, window: MainWindow, dicom_dir: Path) -> None:  # noqa: ANN001
    """A film shown without an auto-selected heat map (here: rejected by the input check) kept "Loading…"."""
    with qtbot.waitSignal(window.pipeline.analysed, timeout=60000) as blocker:
        window.open_paths([dicom_dir / "edge_cases" / "pydicom-data_RG3_J2KI_tibia.dcm"])
    qtbot.waitUntil(window.canvas.has_image, timeout=10000)
    assert blocker.args[1].gate.status == "rejected"
    assert not window.canvas.overlay_shown()
    assert window.canvas.message() == ""


def test_study_row_and_viewer_tell_what_happened_inside_a_study(qtbot, window: MainWindow, dicom_dir: Path,  # noqa: ANN001
                                                                 tmp_path: Path) -> None:
    ct = "edge_cases/udacity_nih_test5.dcm"  # Modality CT: the input check rejects it
    paths = one_study(dicom_dir, tmp_path / "study", ["udacity_nih_test2.dcm", "udacity_nih_test3.dcm", ct, ct])
    window.open_paths([tmp_path / "study"])
    wait_all_finished(qtbot, window, expected_images=4, timeout=60000)
    [study] = window.studies.values()
    assert [img.state for img in study.images] == [State.DONE, State.DONE, State.REJECTED, State.REJECTED]
    row = window.browser.row_texts()[0]
    assert "done 2/4" in row and "· 2 rejected" in row  # was "done · no finding"

    window.show_study(study.key)  # opens on image 1, not on the most abnormal one (image 2 here)
    assert window.current_image() is study.images[0]
    texts = [window.image_combo.itemText(i) for i in range(window.image_combo.count())]
    assert all(p.name in text for p, text in zip(paths, texts, strict=True)), texts

    qtbot.keyClick(window, Qt.Key.Key_PageDown)
    qtbot.waitUntil(lambda: window.canvas.image is not None and window.canvas.image.path == paths[1], timeout=10000)
    corner = window.canvas.annotation_text()
    assert paths[1].name in corner and paths[0].name not in corner  # the overlay names the image shown
    window.set_hide_identifiers(True)
    assert all(p.name not in window.image_combo.itemText(i) for i, p in enumerate(paths))


def test_failed_file_is_counted_and_the_row_keeps_a_thumbnail(qtbot, window: MainWindow, dicom_dir: Path,  # noqa: ANN001
                                                             tmp_path: Path) -> None:
    one_study(dicom_dir, tmp_path / "study", ["udacity_nih_test3.dcm", "udacity_nih_test2.dcm"], truncate={0})
    window.open_paths([tmp_path / "study"])
    wait_all_finished(qtbot, window, expected_images=2, timeout=60000)
    [study] = window.studies.values()
    assert [img.state for img in study.images] == [State.ERROR, State.DONE]
    row = window.browser.row_texts()[0]
    assert "done 1/2" in row and "1 failed" in row
    model = window.browser.model
    assert model.data(model.index(0), Qt.ItemDataRole.DecorationRole) is not None  # the good film's thumbnail
    window.show_study(study.key)
    assert window.current_image() is study.images[1]  # the first analysed image


def test_about_says_when_the_app_connects(window: MainWindow) -> None:
    about = window.show_about()
    text = " ".join(about.text.toPlainText().split())
    assert "makes no network connections" not in text
    assert "opens network connections only when you turn on the DICOM receiver" in text
    assert "send results to a PACS" in text
    about.close()


def test_model_card_fold_spread_and_heat_map_text(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    qtbot.waitUntil(window.table.actions["model_card"].isEnabled, timeout=20000)
    dialog = window.show_model_card()
    assert dialog is not None
    rows = {dialog.table.item(r, 0).text(): r for r in range(dialog.table.rowCount())}
    for label in MODEL_LABELS:
        assert dialog.table.item(rows[label], 2).text() == f"± {FOLD_STD[label]:.3f}"
    details = dialog.details.toPlainText()
    heat = next(line for line in details.splitlines() if line.startswith("Heat maps"))
    assert heat.count("fixed") == 1 and heat.count("(") == 1, heat
    dialog.close()


def test_exports_name_skipped_formats_and_start_in_the_users_folder(qtbot, window: MainWindow, shared_data: Path,  # noqa: ANN001
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from cxrviewer.gui import exports

    png = shared_data / "nih" / "images" / "00000003_000.png"
    with qtbot.waitSignal(window.pipeline.analysed, timeout=60000):
        window.open_paths([png])
    qtbot.waitUntil(window.canvas.has_image, timeout=10000)
    actions = window.table.actions
    assert actions["export_png"].isEnabled() and actions["export_all"].isEnabled()
    assert not actions["export_sr"].isEnabled() and not actions["export_sc"].isEnabled()  # not DICOM

    monkeypatch.setenv("HOME", str(tmp_path))  # the first dialog may make ~/Documents: not in the real home
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    starts: list[str] = []
    monkeypatch.setattr(exports.QFileDialog, "getExistingDirectory",
                        lambda parent, title, start: starts.append(start) or str(tmp_path / "out"))
    messages: list[str] = []
    window.statusBar().messageChanged.connect(messages.append)
    (tmp_path / "out").mkdir()
    window.export_dialog(None)
    assert Path(starts[0]) != png.parent and Path(starts[0]) != assets.demo_folder()  # not the last opened folder
    assert starts[0] == str(tmp_path / "Documents")  # but the user's documents, made on a fresh account
    assert {p.suffix for p in (tmp_path / "out").iterdir()} == {".png", ".pdf", ".json"}
    assert any(m.startswith("Exported 3 files to") and "DICOM SR and Secondary Capture skipped" in m
               for m in messages), messages
    window.export_dialog(None)
    assert starts[1] == str(tmp_path / "out")  # then the folder last exported to

    opened = window.settings.last_folder  # opening the demo does not make the package folder the next start
    monkeypatch.setattr(window.pipeline, "scan", lambda paths: 0)
    window.open_demo()
    assert window.settings.last_folder == opened


def _free_message_width(window: MainWindow) -> int:
    """Pixels the status bar leaves for its message, left of the permanent widgets."""
    status = window.status
    parts = [status.pixel_label, status.progress, status.pacs_status, status.model_status, status.notice]
    return min(w.geometry().left() for w in parts if w.isVisible())


def test_window_parts_fit_their_text(qtbot, make_window, dicom_dir: Path) -> None:  # noqa: ANN001
    app = QApplication.instance()
    previous = app.styleSheet()
    app.setStyleSheet(assets.stylesheet())  # the shipped look: paddings decide what fits
    try:
        window: MainWindow = make_window(size=(1024, 680))
        with qtbot.waitSignal(window.pipeline.analysed, timeout=60000):
            window.open_paths([dicom_dir / "udacity_nih_test1.dcm"])
        qtbot.waitUntil(window.table.actions["model_card"].isEnabled, timeout=20000)
        message = "Opened 2 studies (8 images queued); 1 file could not be opened — see the list"
        window.statusBar().showMessage(message)
        window.status.show_cursor((1023, 1023, 4095))  # the cursor over the film
        QApplication.processEvents()
        needed = window.statusBar().fontMetrics().horizontalAdvance(message) + 16
        assert _free_message_width(window) >= needed

        combo: QComboBox = window.browser.sort_combo
        combo.setCurrentText(MOST_ABNORMAL)
        QApplication.processEvents()
        option = QStyleOptionComboBox()
        combo.initStyleOption(option)
        field = combo.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                             QStyle.SubControl.SC_ComboBoxEditField, combo)
        assert field.width() >= combo.fontMetrics().horizontalAdvance(MOST_ABNORMAL)

        dialog = window.show_pacs_preferences()
        qtbot.waitExposed(dialog)
        for edit in dialog.findChildren(QLineEdit):
            if edit.placeholderText():
                assert edit.width() >= edit.fontMetrics().horizontalAdvance(edit.placeholderText()) + 12, \
                    edit.placeholderText()
        dialog.reject()
    finally:
        app.setStyleSheet(previous)


def test_shortcut_help_lists_the_real_presets(qtbot, window: MainWindow, dicom_dir: Path) -> None:  # noqa: ANN001
    with qtbot.waitSignal(window.pipeline.analysed, timeout=60000):
        window.open_paths([dicom_dir / "udacity_nih_test1.dcm"])
    qtbot.waitUntil(window.canvas.has_image, timeout=10000)
    rows = window.shortcut_rows()
    keys = {what: key for what, key in rows}
    names = [p.name for p in window.presets.presets]
    assert 1 < len(names) < 9
    assert [keys[f"Window/level: {n}"] for n in names] == [str(i) for i in range(1, len(names) + 1)]
    assert not any("1 – 9" in key or "1-9" in key for _, key in rows)
    assert not window.table.actions["preset_9"].isEnabled() and window.table.actions["preset_1"].isEnabled()
    box: Any = window.show_shortcuts()
    assert "Window/level: File default" in box.text()
    box.close()


def test_worklist_and_caches_need_no_qt() -> None:
    code = ("import sys; import cxrviewer.gui.worklist, cxrviewer.gui.caches; "
            "sys.exit(any(m.startswith(('PySide6', 'shiboken6')) for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_canvas_tools_and_named_presets_are_in_menus_toolbar_and_help(qtbot, window: MainWindow,  # noqa: ANN001
                                                                       dicom_dir: Path) -> None:
    from cxrviewer.gui.image_view import CanvasTool
    from cxrviewer.imaging.presets import window_presets

    with qtbot.waitSignal(window.pipeline.analysed, timeout=60000):
        window.open_paths([dicom_dir / "udacity_nih_test2.dcm"])
    qtbot.waitUntil(window.canvas.has_image, timeout=10000)
    canvas = window.canvas
    menus = {a.text(): a.menu() for a in window.menuBar().actions()}
    assert [a.text() for a in menus["&Tools"].actions() if a.text()] == [
        "Pan and zoom", "Measure distance", "Cardiothoracic ratio", "Clear measurements", "Magnifier"]
    on_toolbar = set(window.toolbar.actions())
    actions = window.table.actions
    assert {actions["tool_ruler"], actions["tool_ctr"], actions["magnifier"], actions["flip"]} <= on_toolbar

    actions["tool_ruler"].trigger()
    assert canvas.tool() is CanvasTool.RULER and actions["tool_ruler"].isChecked()
    actions["tool_ctr"].trigger()
    assert canvas.tool() is CanvasTool.CTR and not actions["tool_ruler"].isChecked()
    canvas.set_tool(CanvasTool.PAN)  # what Esc on the canvas does
    assert actions["tool_pan"].isChecked() and not actions["tool_ctr"].isChecked()
    canvas.measurementChanged.emit("84.2 mm")
    assert window.statusBar().currentMessage() == "84.2 mm"
    flipped = canvas.flipped()
    qtbot.keyClick(window, Qt.Key.Key_F)
    assert canvas.flipped() != flipped
    window.table.actions["magnifier"].trigger()
    assert canvas.magnifier_enabled()
    window.table.actions["magnifier"].trigger()
    assert not canvas.magnifier_enabled()

    # the W/L box offers the imaging layer's named presets, with their values
    named = [wp for wp in window_presets(canvas.image) if wp.name != "File default"]
    presets = window.presets.presets
    assert presets[0].name == "File default" and presets[0].center is None
    assert [(p.name, p.center, p.width) for p in presets[1:]] == [(w.name, w.center, w.width) for w in named]
    assert {"Lung", "Mediastinum", "Bone"} <= {p.name for p in presets}
    lung = next(i for i, p in enumerate(presets) if p.name == "Lung")
    window.apply_preset(lung)
    assert canvas.current_window.center == presets[lung].center and window.presets.combo.currentIndex() == lung

    keys = dict(window.shortcut_rows())
    assert keys["Measure distance"] == "M" and keys["Cardiothoracic ratio"] == "T"
    assert keys["Flip horizontally"] == "F" and keys["Magnifier"] == "G"
    assert keys["Window/level: Lung"] == str(lung + 1)
