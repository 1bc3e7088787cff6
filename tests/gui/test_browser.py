"""Opening studies: drag and drop, bad files, the worklist, hidden identifiers and saved settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QComboBox, QWidget

from cxrviewer.gui.main_window import MainWindow
from cxrviewer.gui.records import State
from cxrviewer.gui.settings import AppSettings
from cxrviewer.gui.study_browser import MOST_ABNORMAL
from cxrviewer.report.reading import reading_order

from .conftest import wait_all_finished


def drop(window: MainWindow, paths: list[Path], target: QWidget | None = None) -> None:
    """A drag-and-drop of local files, as the platform delivers it to the window."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    widget = target or window
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    enter = QDragEnterEvent(pos.toPoint(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    assert event.isAccepted()


@pytest.fixture
def mixed_folder(tmp_path: Path, shared_data: Path) -> Path:
    folder = tmp_path / "dropped"
    (folder / "sub").mkdir(parents=True)
    shutil.copyfile(shared_data / "dicom" / "udacity_nih_test1.dcm", folder / "good.dcm")
    shutil.copyfile(shared_data / "nih" / "images" / "00000003_000.png", folder / "sub" / "film.png")
    source = (shared_data / "dicom" / "udacity_nih_test3.dcm").read_bytes()
    (folder / "truncated.dcm").write_bytes(source[:20000])
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "fake.png").write_bytes(b"this is not an image " * 20)
    (folder / "notes.txt").write_text("reading-room notes, not an image")
    return folder


def test_drop_folder_with_good_and_bad_files(qtbot, window: MainWindow, mixed_folder: Path) -> None:  # noqa: ANN001
    drop(window, [mixed_folder])
    wait_all_finished(qtbot, window, expected_images=5)
    by_file = {s.images[0].path.name: s for s in window.studies.values()}
    assert set(by_file) == {"good.dcm", "film.png", "truncated.dcm", "empty.dcm", "fake.png"}  # no notes.txt
    assert by_file["good.dcm"].state == State.DONE and by_file["film.png"].state == State.DONE
    # a specific reason per file (the imaging layer's wording, one of these)
    expected_errors = {"truncated.dcm": ("truncated",), "empty.dcm": ("empty", "not a DICOM file"),
                       "fake.png": ("not a DICOM file", "not a supported image")}
    for name, words in expected_errors.items():
        study = by_file[name]
        assert study.state == State.ERROR
        assert study.message.startswith(f"{name}: ") and any(w in study.message for w in words), study.message
    rows = window.browser.row_texts()
    assert len(rows) == 5
    for name, words in expected_errors.items():
        row = next(r for r in rows if name in r)
        assert "error" in row and any(w in row for w in words)
    assert QApplication.activeModalWidget() is None  # no modal storm
    assert all(not w.isVisible() for w in QApplication.topLevelWidgets() if w.inherits("QMessageBox"))
    # selecting a broken study says why, on the canvas and in the findings panel
    window.browser.set_current(by_file["truncated.dcm"].key)
    assert "truncated" in window.canvas.message()
    assert "truncated" in window.findings.status_label.text()


def test_queue_progress_priority_and_worklist_sort(qtbot, window: MainWindow, dicom_dir: Path,  # noqa: ANN001
                                                   tmp_path: Path) -> None:
    files = [dicom_dir / f"udacity_nih_test{i}.dcm" for i in (1, 2, 3)]
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"DICM" * 10)
    totals: list[int] = []
    order: list[str] = []
    window.pipeline.progress.connect(lambda done, total: totals.append(total))
    window.pipeline.analysed.connect(lambda key, _: order.append(key))
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths([*files, bad])
    last = next(s for s in window.studies.values() if s.images[0].path == files[-1])
    window.browser.set_current(last.key)  # the study the user looks at jumps the queue
    wait_all_finished(qtbot, window, expected_images=4)
    assert max(totals) == 3
    assert order.index(last.images[0].key) <= 1  # at most the job already running came first
    assert not window.status.progress.isVisible()

    window.browser.set_sort_mode(MOST_ABNORMAL)
    keys = window.browser.keys_in_order()
    studies = [window.studies[k] for k in keys]
    scores = [s.abnormality() for s in studies]
    assert scores == sorted(scores, reverse=True)
    assert studies[-1].state == State.ERROR  # unreadable files sink to the bottom
    # keyboard: up/down walk the worklist in its displayed order
    window.browser.set_current(keys[0])
    qtbot.keyClick(window, Qt.Key.Key_Down)
    assert window.browser.current_key() == keys[1]
    assert window.current_study() is window.studies[keys[1]]
    qtbot.keyClick(window, Qt.Key.Key_Up)
    assert window.browser.current_key() == keys[0]


IDENTIFIERS = ("Doe", "Jane", "PID-4711-SECRET", "19700101", "1970-01-01", "ACC-998877", "2019-03-14",
               "20190314")


def _all_texts(window: MainWindow) -> list[str]:
    """Everything a user can read in the window (and its open dialogs)."""
    texts = [window.windowTitle(), window.statusBar().currentMessage(), window.canvas.annotation_text(),
             window.canvas.message()]
    texts += window.browser.row_texts()
    for w in window.findChildren(QWidget):
        for attr in ("text", "toolTip", "windowTitle", "accessibleName", "toPlainText", "placeholderText"):
            fn = getattr(w, attr, None)
            if callable(fn):
                try:
                    texts.append(str(fn()))
                except TypeError:
                    continue
        if isinstance(w, QComboBox):
            texts += [w.itemText(i) for i in range(w.count())]
        if hasattr(w, "texts") and callable(w.texts):
            texts += list(w.texts())
    for action in window.findChildren(QAction):
        texts += [action.text(), action.toolTip(), action.statusTip()]
    return texts


@pytest.fixture
def identified(tmp_path: Path, dicom_dir: Path) -> list[Path]:
    ds = pydicom.dcmread(dicom_dir / "udacity_nih_test2.dcm")
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-4711-SECRET"
    ds.PatientBirthDate = "19700101"
    ds.AccessionNumber = "ACC-998877"
    ds.StudyDate = "20190314"
    folder = tmp_path / "ids"
    folder.mkdir()
    good = folder / "study.dcm"
    ds.save_as(good)
    bad = folder / "PID-4711-SECRET_scan.dcm"  # identifiers in a file name, as exported by some PACS
    bad.write_bytes(b"\0" * 300)
    return [good, bad]


def test_hide_identifiers_hides_them_everywhere(qtbot, window: MainWindow, identified: list[Path],  # noqa: ANN001
                                                 settings: AppSettings) -> None:
    drop(window, identified)
    wait_all_finished(qtbot, window, expected_images=2)
    good = next(s for s in window.studies.values() if s.state == State.DONE)
    window.browser.set_current(good.key)
    qtbot.waitUntil(window.canvas.has_image, timeout=10000)
    shown = "\n".join(_all_texts(window))
    assert "Doe, Jane" in window.windowTitle() and "Doe, Jane" in window.canvas.annotation_text()
    assert "PID-4711-SECRET" in shown and "2019-03-14" in shown  # the test can fail: they were visible

    window.table.actions["hide_ids"].trigger()
    assert window.hide_identifiers and window.browser.hide_button.isChecked()
    info = window.show_study_info()
    assert info is not None and "hidden" in info.texts()
    for current in [s.key for s in window.studies.values()]:  # every row, also the broken file's
        window.browser.set_current(current)
        shown = "\n".join(_all_texts(window))
        leaked = [ident for ident in IDENTIFIERS if ident in shown]
        where = [t for t in _all_texts(window) if any(i in t for i in leaked)]
        assert not leaked, f"identifiers visible while hidden: {leaked} in {where}"
    assert window.windowTitle().startswith("Study ")
    assert settings.hide_identifiers  # remembered
    info.close()

    window.table.actions["hide_ids"].trigger()  # and back
    window.browser.set_current(good.key)
    assert "Doe, Jane" in window.windowTitle()


def test_settings_persist_between_sessions(qtbot, make_window, settings_path: Path, dicom_dir: Path) -> None:  # noqa: ANN001
    first = make_window(settings_=AppSettings(QSettings(str(settings_path), QSettings.Format.IniFormat)))
    first.resize(790, 610)
    first.findings.opacity_slider.setValue(35)
    first.table.actions["hide_ids"].trigger()
    with qtbot.waitSignal(first.pipeline.scanned, timeout=20000):
        first.open_paths([dicom_dir / "udacity_nih_test1.dcm"])
    wait_all_finished(qtbot, first, expected_images=1)
    first.close()
    assert settings_path.is_file()

    again = AppSettings(QSettings(str(settings_path), QSettings.Format.IniFormat))
    assert again.opacity == pytest.approx(0.35)
    assert again.hide_identifiers
    assert Path(again.last_folder) == dicom_dir
    second = make_window(settings_=again, size=None)
    assert second.findings.opacity_slider.value() == 35
    assert second.canvas.overlay_opacity == pytest.approx(0.35)
    assert second.table.actions["hide_ids"].isChecked() and second.browser.hide_identifiers
    assert (second.width(), second.height()) == (790, 610)


def test_context_menu_offers_exports(qtbot, window: MainWindow, dicom_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    with qtbot.waitSignal(window.pipeline.analysed, timeout=60000):
        window.open_paths([dicom_dir / "udacity_nih_test1.dcm"])
    key = window.browser.current_key()
    assert key
    window.browser.context_menu_requested.emit(key, QPoint(10, 10))
    menus = [m for m in window.findChildren(QWidget) if m.inherits("QMenu") and m.isVisible()]
    assert menus, "no context menu shown"
    titles = [a.text() for m in menus for a in m.actions()]
    assert "Export" in titles and "Study information…" in titles
    for m in menus:
        m.close()
    if not window.exports_available():
        pytest.skip("exports module not present")
    written = window.export_current(tmp_path / "out", {"png", "json"}, anonymise=True)
    assert {p.suffix for p in written} == {".png", ".json"}
    assert all(p.is_file() for p in written)


def test_study_with_two_images_is_one_row(qtbot, window: MainWindow, dicom_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from pydicom.uid import generate_uid

    study_uid = generate_uid()
    paths = []
    for i, source in enumerate(("udacity_nih_test2.dcm", "udacity_nih_test3.dcm")):
        ds = pydicom.dcmread(dicom_dir / source)
        ds.StudyInstanceUID = study_uid
        ds.PatientID = "two-image-study"
        ds.SeriesInstanceUID = generate_uid()
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesNumber = i + 1
        paths.append(tmp_path / f"image{i}.dcm")
        ds.save_as(paths[-1])
    drop(window, [tmp_path])
    wait_all_finished(qtbot, window, expected_images=2)
    assert len(window.studies) == 1
    study = next(iter(window.studies.values()))
    assert study.state == State.DONE and len(study.images) == 2
    assert "2 images" in window.browser.row_texts()[0]
    assert window.viewer_bar.isVisible() and window.image_combo.count() == 2
    window.show_study(study.key)  # an analysed study opens on its first image (image 1 of 2)
    assert window.current_image() is study.images[0]
    first = window.current_image()
    qtbot.keyClick(window, Qt.Key.Key_PageDown if window.image_combo.currentIndex() == 0 else Qt.Key.Key_PageUp)
    second = window.current_image()
    assert second is not first
    qtbot.waitUntil(lambda: window.canvas.image is not None and window.canvas.image.path == second.path,
                    timeout=10000)
    assert window.findings.ranked() == [(f.label, f.probability) for f in reading_order(second.prediction.findings)]


def test_decoder_that_hangs_is_stopped_and_reported(qtbot, window: MainWindow, dicom_dir: Path,  # noqa: ANN001
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose decoder never returns becomes an error row after the time limit; other files go on."""
    from cxrviewer.gui import backend
    from cxrviewer.imaging.guarded import GuardedLoader

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "reliability"))
    backend.set_decoder(GuardedLoader(timeout=2.0, size=2, loader="misbehaving_decoder:load"))
    hang = tmp_path / "hang.dcm"
    shutil.copyfile(dicom_dir / "udacity_nih_test1.dcm", hang)
    good = dicom_dir / "udacity_nih_test2.dcm"
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths([hang, good])
    wait_all_finished(qtbot, window, expected_images=2, timeout=60000)
    by_file = {s.images[0].path.name: s for s in window.studies.values()}
    assert by_file["udacity_nih_test2.dcm"].state == State.DONE
    stuck = by_file["hang.dcm"]
    assert stuck.state == State.ERROR
    assert stuck.message == "hang.dcm: decoding took longer than 2 s and was stopped (damaged file or a decoder fault)"
    window.browser.set_current(stuck.key)
    assert "longer than 2 s" in window.canvas.message()


def test_reopening_listed_files_queues_nothing_new(qtbot, window: MainWindow, dicom_dir: Path) -> None:  # noqa: ANN001
    files = [dicom_dir / "udacity_nih_test1.dcm", dicom_dir / "udacity_nih_test2.dcm"]
    messages: list[str] = []
    window.statusBar().messageChanged.connect(messages.append)
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths(files)
    assert any(m.startswith("Opened 2 studies (2 images queued)") for m in messages), messages
    wait_all_finished(qtbot, window, expected_images=2)
    messages.clear()
    with qtbot.waitSignal(window.pipeline.scanned, timeout=20000):
        window.open_paths(files)
    assert any(m.startswith("Opened 2 studies (0 images queued)") for m in messages), messages
    assert sum(len(s.images) for s in window.studies.values()) == 2
