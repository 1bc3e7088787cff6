"""PACS glue for the viewer: the settings, a Preferences dialog and a QObject that runs the node.

* `PacsSettings` / `load_pacs_settings(qsettings)` / `save_pacs_settings(qsettings, settings)`: what the
  user chose, kept in the app's QSettings under ``pacs/``. The receiver is off by default and binds to
  127.0.0.1 unless the user picks another interface.
* `PacsPreferencesDialog(settings, parent)`: edits them (validated on OK; a "Test" button C-ECHOes the
  remote node in a background thread). After ``exec()`` returns Accepted, `result_settings()` holds the
  new settings.
* `PacsController(parent)`: runs a `cxrviewer.net.Node` (Storage SCP, outbox, delivery thread with
  retries) without an engine: the viewer analyses what arrives. Signals are delivered in the GUI thread:

  - ``received(str)``: path of a received image to show and analyse (CR / DX / Secondary Capture that
    cxrviewer did not produce itself), in the inbox, grouped by study folder;
  - ``stored(object)``: a `cxrviewer.net.scp.Received` for every stored object (SR included);
  - ``refused(str)``: an association or object was refused (message without identifiers);
  - ``state_changed(str)``: a one-line status for the status bar ("Receiving on ...", "Receiver off",
    "Receiver error: ...");
  - ``send_progress(object)``: a `cxrviewer.net.send.SendResult` per object as it is sent;
  - ``send_finished(object)``: a `cxrviewer.net.outbox.DeliveryReport` after each delivery;
  - ``send_failed(str)``: the results could not even be queued (e.g. not a DICOM study).

  ``apply(settings)`` starts, restarts or stops the receiver to match; ``send_study(images, predictions,
  card)`` writes SR + SC into the outbox and delivers them; ``send_files(paths)``;
  ``shutdown()`` before the application quits (stops the receiver, waits for the sender).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cxrviewer.model.card import ModelCard
from cxrviewer.net.config import MIB, ConfigError, Limits, NodeConfig, RemoteNode, default_data_dir
from cxrviewer.net.errors import NetError
from cxrviewer.net.node import Analysed, Node
from cxrviewer.net.scp import Received
from cxrviewer.net.send import echo

if TYPE_CHECKING:
    from cxrviewer.imaging.image import Image
    from cxrviewer.model.inference import Prediction

log = logging.getLogger(__name__)

PREFIX = "pacs/"
RETRY_INTERVAL_S = 60.0
DIALOG_MIN_WIDTH = 640
ECHO_LIMITS = Limits(connect_timeout=5, acse_timeout=5, dimse_timeout=5, network_timeout=5)


@dataclass(frozen=True)
class PacsSettings:
    """The user's PACS choices: the node configuration plus two switches."""

    enabled: bool = False  # the receiver (Storage SCP) runs
    auto_send: bool = False  # send SR + SC after each analysis without asking
    config: NodeConfig = field(default_factory=NodeConfig)


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in str(text or "").replace(";", ",").split(",") if part.strip())


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def load_pacs_settings(q: QSettings) -> PacsSettings:
    """Read the stored settings; anything invalid falls back to the safe default (logged, never raised)."""
    def get(key: str, default: Any) -> Any:
        value = q.value(PREFIX + key, default)
        return default if value is None else value

    base = NodeConfig()
    try:
        remote = None
        host = str(get("remote_host", "")).strip()
        if host:
            remote = RemoteNode(host, int(get("remote_port", 104)), str(get("remote_ae_title", "")))
        limits = replace(base.limits, max_object_bytes=int(float(get("max_object_mb", 256)) * MIB),
                         max_associations=int(get("max_associations", base.limits.max_associations)))
        config = NodeConfig(
            ae_title=str(get("ae_title", base.ae_title)), port=int(get("port", base.port)),
            bind_address=str(get("bind_address", base.bind_address)),
            allowed_ae_titles=_split(get("allowed_ae_titles", "")),
            allowed_addresses=_split(get("allowed_addresses", "")), remote=remote,
            inbox=Path(str(get("inbox", base.inbox))), outbox=Path(str(get("outbox", base.outbox))),
            limits=limits,
        ).validated()
    except (ConfigError, TypeError, ValueError) as exc:
        log.warning("stored PACS settings are invalid (%s); the receiver stays off", exc)
        return PacsSettings()
    return PacsSettings(enabled=_as_bool(get("enabled", False)), auto_send=_as_bool(get("auto_send", False)),
                        config=config)


def save_pacs_settings(q: QSettings, settings: PacsSettings) -> None:
    c = settings.config
    values: dict[str, Any] = {
        "enabled": bool(settings.enabled), "auto_send": bool(settings.auto_send), "ae_title": c.ae_title,
        "port": int(c.port), "bind_address": c.bind_address, "allowed_ae_titles": ", ".join(c.allowed_ae_titles),
        "allowed_addresses": ", ".join(c.allowed_addresses), "inbox": str(c.inbox), "outbox": str(c.outbox),
        "remote_host": c.remote.host if c.remote else "", "remote_port": int(c.remote.port) if c.remote else 104,
        "remote_ae_title": c.remote.ae_title if c.remote else "",
        "max_object_mb": round(c.limits.max_object_bytes / MIB, 3), "max_associations": c.limits.max_associations,
    }
    for key, value in values.items():
        q.setValue(PREFIX + key, value)
    q.sync()


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address == "::1"


class _EchoBridge(QObject):
    done = Signal(str)


class PacsPreferencesDialog(QDialog):
    """Preferences > PACS: receiver, allow-list, remote node; validated when OK is pressed."""

    def __init__(self, settings: PacsSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("PACS settings")
        self._result = settings
        self._echo_thread: threading.Thread | None = None
        self._bridge = _EchoBridge(self)
        self._bridge.done.connect(self._echo_done)
        c = settings.config
        self.setMinimumWidth(DIALOG_MIN_WIDTH)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(14)

        receive = QGroupBox("Receive studies from the PACS")
        form = QFormLayout(receive)
        self.enabled = QCheckBox("Turn the DICOM receiver on")
        self.enabled.setChecked(settings.enabled)
        self.ae_title = QLineEdit(c.ae_title)
        self.ae_title.setMaxLength(16)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(c.port or 11112)
        self.bind_address = QLineEdit(c.bind_address)
        self.bind_address.setToolTip("127.0.0.1: only this computer can connect. 0.0.0.0: every interface.")
        self.allowed_ae_titles = QLineEdit(", ".join(c.allowed_ae_titles))
        self.allowed_ae_titles.setPlaceholderText("e.g. ORTHANC, PACS1 (required)")
        self.allowed_addresses = QLineEdit(", ".join(c.allowed_addresses))
        self.allowed_addresses.setPlaceholderText("e.g. 10.0.0.5, 10.1.0.0/16 (empty: any)")
        inbox_row = QHBoxLayout()
        self.inbox = QLineEdit(str(c.inbox))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_inbox)
        inbox_row.addWidget(self.inbox)
        inbox_row.addWidget(browse)
        self.exposure = QLabel()
        self.exposure.setWordWrap(True)
        form.addRow(self.enabled)
        form.addRow("Our AE title", self.ae_title)
        form.addRow("Port", self.port)
        form.addRow("Listen on address", self.bind_address)
        form.addRow("Allowed calling AE titles", self.allowed_ae_titles)
        form.addRow("Allowed addresses", self.allowed_addresses)
        form.addRow("Inbox folder", inbox_row)
        form.addRow(self.exposure)
        layout.addWidget(receive)

        send = QGroupBox("Send results (DICOM SR + Secondary Capture) to")
        form2 = QFormLayout(send)
        self.remote_host = QLineEdit(c.remote.host if c.remote else "")
        self.remote_host.setPlaceholderText("host name or address (empty: do not send)")
        self.remote_port = QSpinBox()
        self.remote_port.setRange(1, 65535)
        self.remote_port.setValue(c.remote.port if c.remote else 104)
        self.remote_ae_title = QLineEdit(c.remote.ae_title if c.remote else "")
        self.remote_ae_title.setMaxLength(16)
        self.auto_send = QCheckBox("Send automatically after each analysis")
        self.auto_send.setChecked(settings.auto_send)
        echo_row = QHBoxLayout()
        self.echo_button = QPushButton("Test connection")
        self.echo_button.clicked.connect(self.test_remote)
        self.echo_status = QLabel()
        self.echo_status.setWordWrap(True)
        echo_row.addWidget(self.echo_button)
        echo_row.addWidget(self.echo_status, 1)
        form2.addRow("Host", self.remote_host)
        form2.addRow("Port", self.remote_port)
        form2.addRow("AE title", self.remote_ae_title)
        form2.addRow(self.auto_send)
        form2.addRow(echo_row)
        layout.addWidget(send)
        for f in (form, form2):  # room for the fields and their examples
            f.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            f.setHorizontalSpacing(14)
            f.setVerticalSpacing(8)
            f.setContentsMargins(12, 14, 12, 10)

        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c0392b;")
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.bind_address.textChanged.connect(self._update_exposure)
        self._update_exposure()

    def _browse_inbox(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Inbox folder", self.inbox.text())
        if folder:
            self.inbox.setText(folder)

    def _update_exposure(self) -> None:
        address = self.bind_address.text().strip()
        if _is_loopback(address) or address.lower() == "localhost":
            self.exposure.setText("Only programs on this computer can connect.")
        else:
            self.exposure.setText("Other computers on the network can reach this port; "
                                  "only the allowed AE titles (and addresses) are accepted.")

    def _remote(self) -> RemoteNode | None:
        host = self.remote_host.text().strip()
        if not host:
            return None
        return RemoteNode(host, self.remote_port.value(), self.remote_ae_title.text()).validated()

    def settings_from_fields(self) -> PacsSettings:
        """The settings the fields describe (`ConfigError` naming the bad field)."""
        base = self._result.config
        config = replace(
            base, ae_title=self.ae_title.text(), port=self.port.value(), bind_address=self.bind_address.text(),
            allowed_ae_titles=_split(self.allowed_ae_titles.text()),
            allowed_addresses=_split(self.allowed_addresses.text()), remote=self._remote(),
            inbox=Path(self.inbox.text().strip() or str(default_data_dir() / "inbox")),
        ).validated()
        enabled = self.enabled.isChecked()
        if enabled and not config.allowed_ae_titles:
            raise ConfigError("list at least one allowed calling AE title (the PACS's) to turn the receiver on")
        if self.auto_send.isChecked() and config.remote is None:
            raise ConfigError("automatic sending needs a remote host, port and AE title")
        return PacsSettings(enabled=enabled, auto_send=self.auto_send.isChecked(), config=config)

    def accept(self) -> None:
        try:
            self._result = self.settings_from_fields()
        except ConfigError as exc:
            self.error.setText(str(exc))
            return
        self.error.clear()
        super().accept()

    def result_settings(self) -> PacsSettings:
        return self._result

    # -- C-ECHO test ---------------------------------------------------------------------------------
    def test_remote(self) -> None:
        if self._echo_thread is not None and self._echo_thread.is_alive():
            return
        try:
            remote = self._remote()
            our_ae = NodeConfig(ae_title=self.ae_title.text()).validated().ae_title
        except ConfigError as exc:
            self.echo_status.setText(str(exc))
            return
        if remote is None:
            self.echo_status.setText("Enter the remote host, port and AE title first.")
            return
        self.echo_button.setEnabled(False)
        self.echo_status.setText(f"Contacting {remote}…")
        bridge = self._bridge

        def work() -> None:
            try:
                problem = echo(remote, our_ae, ECHO_LIMITS)
            except Exception as exc:  # a plain message in the dialog, never a traceback
                problem = f"echo failed ({type(exc).__name__})"
            bridge.done.emit(problem or f"{remote} answered the echo.")

        self._echo_thread = threading.Thread(target=work, name="cxr-pacs-echo", daemon=True)
        self._echo_thread.start()

    def _echo_done(self, message: str) -> None:
        self.echo_status.setText(message)
        self.echo_button.setEnabled(True)

    def wait_for_echo(self, timeout: float = 30.0) -> None:
        if self._echo_thread is not None:
            self._echo_thread.join(timeout)

    def done(self, result: int) -> None:
        self.wait_for_echo(ECHO_LIMITS.connect_timeout + ECHO_LIMITS.acse_timeout + ECHO_LIMITS.dimse_timeout)
        super().done(result)


class PacsController(QObject):
    """The viewer's DICOM node: a `cxrviewer.net.Node` without an engine (the viewer analyses received
    images in its own pipeline), started and stopped to match the user's settings. Every signal arrives
    in the GUI thread."""

    received = Signal(str)
    stored = Signal(object)
    refused = Signal(str)
    state_changed = Signal(str)
    send_progress = Signal(object)
    send_finished = Signal(object)
    send_failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = PacsSettings()
        self.node: Node | None = None
        self.status = "Receiver off"

    @property
    def is_running(self) -> bool:
        """The receiver (Storage SCP) is listening."""
        return self.node is not None and self.node.scp.running

    @property
    def address(self) -> tuple[str, int] | None:
        return self.node.address if self.is_running and self.node is not None else None

    @property
    def auto_send(self) -> bool:
        return self.settings.auto_send and self.settings.config.remote is not None

    def _set_status(self, text: str) -> None:
        self.status = text
        self.state_changed.emit(text)

    def _make_node(self, receive: bool) -> Node:
        return Node(self.settings.config, None, retry_interval=RETRY_INTERVAL_S, receive=receive,
                    on_analysed=self._on_results, on_delivered=self.send_finished.emit,
                    on_received=self._on_received, on_refused=self.refused.emit, on_sent=self.send_progress.emit)

    def apply(self, settings: PacsSettings) -> bool:
        """Adopt `settings`: run the node while the receiver is enabled or a remote is set (delivering what
        an earlier session left in the outbox), stop it otherwise. False when the receiver could not start
        (reported through ``state_changed``; sending still works)."""
        self.settings = settings
        self._stop_node()
        if not settings.enabled and settings.config.remote is None:
            self._set_status("Receiver off")
            return True
        node = self._make_node(receive=settings.enabled)
        try:
            node.start()
        except (NetError, ConfigError) as exc:
            node.stop()
            self.node = self._make_node(receive=False)
            self.node.start()
            self._set_status(f"Receiver error: {exc}")
            return False
        self.node = node
        if not settings.enabled:
            self._set_status("Receiver off")
            return True
        host, port = node.address
        self._set_status(f"Receiving on {host}:{port} as {settings.config.ae_title}")
        return True

    def _stop_node(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            node.stop()

    def _on_received(self, item: Received) -> None:
        """In a pynetdicom thread: hand over to the GUI thread through queued signals."""
        self.stored.emit(item)
        if item.analysable:
            self.received.emit(str(item.path))

    def _on_results(self, done: Analysed) -> None:
        if done.status == "error":
            self.send_failed.emit(done.message)

    # -- sending ------------------------------------------------------------------------------------
    def send_study(self, images: Image | Sequence[Image], predictions: Prediction | None | Sequence[Prediction | None],
                   card: ModelCard | None) -> None:
        """Write DICOM SR + Secondary Capture for a study into the outbox, then deliver them (background)."""
        from cxrviewer.report.export import is_dicom

        items = list(images) if isinstance(images, list | tuple) else [images]
        if not items or not all(is_dicom(im) for im in items):
            self.send_failed.emit("only DICOM studies can be sent to the PACS")
            return
        if self.node is None:
            self.send_failed.emit("no remote PACS configured")
            return
        self.node.queue_results(items, predictions, card)
        if self.settings.config.remote is None:
            self.send_failed.emit("no remote PACS configured; the results wait in the outbox")

    def send_files(self, paths: Sequence[str | Path]) -> None:
        """Copy existing DICOM files into the outbox and deliver them (background)."""
        if self.node is None:
            self.send_failed.emit("no remote PACS configured")
            return
        try:
            self.node.queue_files(paths)
        except NetError as exc:
            self.send_failed.emit(str(exc))

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop the receiver and the sender (an interrupted delivery leaves its files in the outbox)."""
        node, self.node = self.node, None
        if node is not None:
            node.stop(timeout)
        self._set_status("Receiver off")

