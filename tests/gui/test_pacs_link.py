"""`PacsLink` on its own: built from the collaborators it is handed (no main window); the node starts only when
PACS is configured and the viewer is not closing, and what arrives is opened without taking the reader's film."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QStatusBar, QWidget

from cxrviewer.gui.caches import ImageCache
from cxrviewer.gui.pacs_link import PacsLink
from cxrviewer.gui.settings import AppSettings
from cxrviewer.gui.status_bar import StatusBar
from cxrviewer.gui.viewer_state import ViewerState


def test_pacs_link_without_a_window(qtbot, settings: AppSettings) -> None:  # noqa: ANN001
    parent = QWidget()
    qtbot.addWidget(parent)
    opened: list[tuple[list[Path], dict[str, Any]]] = []
    closing = [True]
    link = PacsLink(ViewerState(), ImageCache(), settings, lambda: None, StatusBar(QStatusBar(parent)), parent,
                    open_paths=lambda paths, **how: opened.append((paths, how)), refresh_actions=lambda: None,
                    closing=lambda: closing[0])
    assert not link.configured() and not link.has_remote()
    settings.q.setValue("pacs/remote_host", "pacs.example")
    assert link.configured()
    link.start_if_configured()  # closing: no node is started
    assert link.controller is None

    link._on_received("/inbox/a.dcm")  # a study arriving while closing is dropped
    assert opened == []
    closing[0] = False
    link._on_received("/inbox/a.dcm")
    assert opened == [([Path("/inbox/a.dcm")], {"remember": False, "show": False})]
