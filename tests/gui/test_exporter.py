"""`StudyExporter` on its own: it exports what a `ViewerState` says is displayed, from the collaborators it is
handed (no main window), anonymised while the state hides identifiers."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from PySide6.QtWidgets import QStatusBar, QWidget

from cxrviewer.gui import backend
from cxrviewer.gui.caches import ImageCache
from cxrviewer.gui.exports import StudyExporter, exports_available
from cxrviewer.gui.image_view import ImageCanvas
from cxrviewer.gui.settings import AppSettings
from cxrviewer.gui.viewer_state import ViewerState
from cxrviewer.gui.worklist import Worklist


def test_exporter_follows_the_state_without_a_window(qtbot, settings: AppSettings, dicom_dir: Path,  # noqa: ANN001
                                                     tmp_path: Path) -> None:
    if not exports_available():
        pytest.skip("exports module not present")
    ds = pydicom.dcmread(dicom_dir / "udacity_nih_test2.dcm")
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-4711-SECRET"
    source = tmp_path / "PID-4711-SECRET.dcm"  # identifiers in the file name too
    ds.save_as(source)
    state, worklist = ViewerState(), Worklist()
    (scanned,) = backend.scan([source]).studies
    study, _, _ = worklist.add_scanned(scanned)
    parent = QWidget()
    qtbot.addWidget(parent)
    status = QStatusBar(parent)
    exporter = StudyExporter(state, worklist, ImageCache(), ImageCanvas(parent), settings, engine=lambda: None,
                             status=status, parent=parent)

    exporter.dialog(None)  # nothing displayed: no folder is asked for
    assert status.currentMessage() == "Select a study to export."
    assert exporter.export(tmp_path / "none", {"png", "json"}) == []

    state.update(displayed_study=study.key, displayed_image=study.images[0].key)
    plain = exporter.export(tmp_path / "plain", {"png", "json"})
    assert sorted(p.suffix for p in plain) == [".json", ".png"]
    assert all(p.name.startswith("PID-4711-SECRET") for p in plain)  # named after the source file
    assert status.currentMessage().startswith("Exported 2 files")
    assert Path(settings.export_folder) == tmp_path / "plain"

    state.update(hide_identifiers=True)
    hidden = exporter.export(tmp_path / "hidden", {"png", "json"})
    assert len(hidden) == 2 and all(p.name.startswith("ANON-") for p in hidden)
    assert not any(b"PID-4711-SECRET" in p.read_bytes() or b"Doe" in p.read_bytes() for p in hidden)
