"""The main window as a DICOM node: a study pushed by a modality is shown, analysed and its results sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pynetdicom")

from cxrviewer.gui.main_window import MainWindow  # noqa: E402
from cxrviewer.gui.records import State  # noqa: E402
from cxrviewer.gui.settings import AppSettings  # noqa: E402


@pytest.fixture
def remote_pacs(tmp_path: Path) -> Iterator[object]:
    from cxrviewer.net import NodeConfig, StorageSCP

    scp = StorageSCP(NodeConfig(ae_title="PACS", port=0, allowed_ae_titles=("VIEWER",), inbox=tmp_path / "pacs"))
    scp.start()
    yield scp
    scp.stop()


def _wait_network_threads() -> None:
    """pynetdicom ends its association threads shortly after a transfer: let them finish."""
    end = time.monotonic() + 10
    while time.monotonic() < end and any(t.name.startswith("Requestor") for t in threading.enumerate()
                                         if t.is_alive()):
        time.sleep(0.05)


def test_received_study_is_analysed_and_results_sent_back(qtbot, make_window, settings: AppSettings,  # noqa: ANN001
                                                           remote_pacs, dicom_dir: Path, tmp_path: Path) -> None:
    from cxrviewer.gui.pacs import PacsSettings, save_pacs_settings
    from cxrviewer.net import DELIVERED, NodeConfig, RemoteNode
    from cxrviewer.net.send import send_files

    host, port = remote_pacs.address
    save_pacs_settings(settings.q, PacsSettings(enabled=True, auto_send=True, config=NodeConfig(
        ae_title="VIEWER", port=0, allowed_ae_titles=("MODALITY",), inbox=tmp_path / "inbox",
        outbox=tmp_path / "outbox", remote=RemoteNode(host, port, "PACS")).validated()))
    window: MainWindow = make_window()
    qtbot.waitUntil(lambda: window.pacs is not None and window.pacs.is_running, timeout=15000)
    assert window.status.pacs_status.isVisible() and "Receiving on 127.0.0.1" in window.status.pacs_status.text()

    with qtbot.waitSignal(window.pipeline.analysed, timeout=60000):
        [result] = send_files([dicom_dir / "udacity_nih_test1.dcm"], RemoteNode(*window.pacs.address, "VIEWER"),
                              "MODALITY")
        assert result.status == DELIVERED
    study = next(iter(window.studies.values()))
    assert study.state == State.DONE
    assert study.images[0].path.is_relative_to(tmp_path / "inbox")
    # auto-send: the SR and the Secondary Capture reach the remote PACS
    qtbot.waitUntil(lambda: remote_pacs.received_count >= 2, timeout=60000)
    assert window.table.actions["pacs_send"].isEnabled()
    window.close()
    _wait_network_threads()
