"""The Qt glue: settings persistence, the Preferences dialog and the service's signals."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from PySide6.QtCore import QSettings

from cxrviewer.gui.pacs import (
    PacsController,
    PacsPreferencesDialog,
    PacsSettings,
    load_pacs_settings,
    save_pacs_settings,
)
from cxrviewer.net import DELIVERED, NodeConfig, RemoteNode, StorageSCP
from cxrviewer.net.send import send_files

UDACITY = "udacity_nih_test1.dcm"


@pytest.fixture
def qsettings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def remote_scp(tmp_path: Path) -> Iterator[StorageSCP]:
    scp = StorageSCP(NodeConfig(ae_title="PACS", port=0, allowed_ae_titles=("VIEWER",), inbox=tmp_path / "pacs"))
    scp.start()
    yield scp
    scp.stop()


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}  # type: ignore[attr-defined]


def test_settings_round_trip_and_safe_fallback(qsettings: QSettings, tmp_path: Path) -> None:
    assert load_pacs_settings(qsettings) == PacsSettings()  # nothing stored: receiver off
    assert not PacsSettings().enabled and PacsSettings().config.bind_address == "127.0.0.1"
    chosen = PacsSettings(enabled=True, auto_send=True, config=NodeConfig(
        ae_title="VIEWER", port=11200, allowed_ae_titles=("PACS", "MOD"), allowed_addresses=("10.0.0.0/8",),
        remote=RemoteNode("pacs.local", 4242, "PACS"), inbox=tmp_path / "in", outbox=tmp_path / "out").validated())
    save_pacs_settings(qsettings, chosen)
    assert load_pacs_settings(QSettings(qsettings.fileName(), QSettings.Format.IniFormat)) == chosen
    qsettings.setValue("pacs/ae_title", "WAY-TOO-LONG-AE-TITLE")
    assert load_pacs_settings(qsettings) == PacsSettings()  # invalid: back to "off", no exception


def test_dialog_validates_before_accepting(qtbot: Any, tmp_path: Path) -> None:
    dialog = PacsPreferencesDialog(PacsSettings(config=NodeConfig(inbox=tmp_path / "in", outbox=tmp_path / "out")))
    qtbot.addWidget(dialog)
    assert not dialog.enabled.isChecked() and dialog.bind_address.text() == "127.0.0.1"
    assert "Only programs on this computer" in dialog.exposure.text()
    dialog.enabled.setChecked(True)
    dialog.accept()
    assert dialog.result() != PacsPreferencesDialog.DialogCode.Accepted
    assert "allowed calling AE title" in dialog.error.text()

    dialog.allowed_ae_titles.setText("ORTHANC, PACS2")
    dialog.ae_title.setText("BAD\\AE")
    dialog.accept()
    assert "backslash" in dialog.error.text()

    dialog.ae_title.setText("VIEWER")
    dialog.bind_address.setText("0.0.0.0")
    assert "Other computers on the network" in dialog.exposure.text()
    dialog.remote_host.setText("127.0.0.1")
    dialog.remote_port.setValue(4242)
    dialog.remote_ae_title.setText("ORTHANC")
    dialog.auto_send.setChecked(True)
    dialog.accept()
    assert dialog.result() == PacsPreferencesDialog.DialogCode.Accepted
    result = dialog.result_settings()
    assert result.enabled and result.auto_send
    assert result.config.allowed_ae_titles == ("ORTHANC", "PACS2") and result.config.bind_address == "0.0.0.0"
    assert result.config.remote == RemoteNode("127.0.0.1", 4242, "ORTHANC")


def test_dialog_echo_test(qtbot: Any, remote_scp: StorageSCP, tmp_path: Path) -> None:
    host, port = remote_scp.address
    dialog = PacsPreferencesDialog(PacsSettings(config=NodeConfig(ae_title="VIEWER", inbox=tmp_path / "in")))
    qtbot.addWidget(dialog)
    dialog.remote_host.setText(host)
    dialog.remote_port.setValue(port)
    dialog.remote_ae_title.setText("PACS")
    dialog.test_remote()
    qtbot.waitUntil(lambda: dialog.echo_button.isEnabled(), timeout=15000)
    assert dialog.echo_status.text() == f"PACS@{host}:{port} answered the echo."
    dialog.ae_title.setText("STRANGER")  # not on the remote's allow-list
    dialog.test_remote()
    qtbot.waitUntil(lambda: dialog.echo_button.isEnabled(), timeout=15000)
    assert "rejected the association" in dialog.echo_status.text()
    dialog.wait_for_echo()


def test_service_receives_and_sends(qtbot: Any, remote_scp: StorageSCP, dicom_dir: Path, tmp_path: Path,
                                    tiny_card: Path) -> None:
    before = _threads()
    host, port = remote_scp.address
    settings = PacsSettings(enabled=True, config=NodeConfig(
        ae_title="VIEWER", port=0, allowed_ae_titles=("MODALITY",), inbox=tmp_path / "inbox",
        outbox=tmp_path / "outbox", remote=RemoteNode(host, port, "PACS")))
    service = PacsController()
    states: list[str] = []
    service.state_changed.connect(states.append)
    assert service.apply(settings) and service.is_running
    assert states[-1].startswith("Receiving on 127.0.0.1:") and states[-1].endswith("as VIEWER")
    address = service.address
    assert address is not None

    stored: list[Any] = []
    service.stored.connect(stored.append)
    with qtbot.waitSignal(service.received, timeout=15000) as blocker:
        [result] = send_files([dicom_dir / UDACITY], RemoteNode(*address, "VIEWER"), "MODALITY")
        assert result.status == DELIVERED
    path = Path(blocker.args[0])
    assert path.is_file() and path.parent.parent == tmp_path / "inbox"
    qtbot.waitUntil(lambda: len(stored) == 1)

    with qtbot.waitSignal(service.refused, timeout=15000) as refused:
        ae = AE(ae_title="INTRUDER")
        ae.add_requested_context("1.2.840.10008.1.1")
        assert ae.associate(*address, ae_title="VIEWER").is_rejected
    assert "INTRUDER" in refused.args[0]

    progress: list[Any] = []
    service.send_progress.connect(progress.append)
    with qtbot.waitSignal(service.send_finished, timeout=30000) as finished:
        service.send_files([path])
    report = finished.args[0]
    assert [r.status for r in report.delivered] == [DELIVERED] and report.pending == 0
    assert len(progress) == 1 and remote_scp.received_count == 1

    from cxrviewer.imaging import load_image
    from cxrviewer.model.inference import Engine

    engine = Engine.from_card(tiny_card, threads=1)
    image = load_image(path)
    with qtbot.waitSignal(service.send_finished, timeout=60000) as finished:
        service.send_study([image], [engine.predict(image)], engine.card)
    assert len(finished.args[0].delivered) == 2 and remote_scp.received_count == 3  # SR + SC

    service.shutdown()
    assert not service.is_running and states[-1] == "Receiver off"
    leftover = [t.name for t in _threads() - before if t.is_alive() and not t.name.startswith("Requestor")]
    assert not [n for n in leftover if n.startswith("cxr-")], leftover
