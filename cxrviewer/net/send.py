"""Storage SCU: C-STORE files to a remote node with a status per object, and C-ECHO.

`send_files` opens one association for a batch, proposing for each SOP class the file's own transfer
syntax (plus the uncompressed ones for uncompressed files), and reports a `SendResult` per file:

* ``delivered`` - the remote answered success (0000) or a warning (B000, B006, B007: stored anyway);
* ``failed``    - the remote answered a failure status (it holds no copy); ``code`` says which;
* ``not sent``  - the object never reached the remote (no connection, association refused or lost,
  no response within the DIMSE timeout); sending again later may succeed.

Nothing here deletes or moves a file: keeping undelivered results is the outbox's job (`outbox`).
Every network step has a timeout (`Limits`). Messages carry no identifiers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, evt

from cxrviewer.net.config import Limits, RemoteNode, check_ae_title
from cxrviewer.net.sopclasses import UNCOMPRESSED, VERIFICATION, class_name

log = logging.getLogger(__name__)

DELIVERED, FAILED, NOT_SENT = "delivered", "failed", "not sent"
WARNING_CODES = {0xB000: "coercion of data elements", 0xB006: "elements discarded",
                 0xB007: "data set does not match SOP class"}
MAX_CONTEXTS = 128


@dataclass(frozen=True)
class SendResult:
    """The outcome for one file."""

    path: Path
    status: str  # DELIVERED | FAILED | NOT_SENT
    message: str
    code: int | None = None  # the remote's DIMSE status, when it answered
    sop_class: str = ""

    @property
    def delivered(self) -> bool:
        return self.status == DELIVERED


def status_text(code: int) -> str:
    if code == 0x0000:
        return "success"
    if code in WARNING_CODES:
        return f"warning {code:04X} ({WARNING_CODES[code]})"
    groups = [(0xA700, 0xA7FF, "out of resources"), (0xA900, 0xA9FF, "data set does not match SOP class"),
              (0xC000, 0xCFFF, "cannot understand"), (0x0122, 0x0122, "SOP class not supported"),
              (0x0124, 0x0124, "not authorised"), (0x0117, 0x0117, "invalid SOP instance")]
    for low, high, text in groups:
        if low <= code <= high:
            return f"failure {code:04X} ({text})"
    return f"failure {code:04X}"


def _new_ae(calling_ae: str, limits: Limits) -> AE:
    ae = AE(ae_title=check_ae_title(calling_ae, "our AE title"))
    ae.connection_timeout = limits.connect_timeout
    ae.acse_timeout = limits.acse_timeout
    ae.dimse_timeout = limits.dimse_timeout
    ae.network_timeout = limits.network_timeout
    ae.maximum_pdu_size = int(limits.max_pdu)
    return ae


def _associate(ae: AE, remote: RemoteNode, limits: Limits) -> tuple[Any, bool]:
    """(association, whether the TCP connection was made at all)."""
    connected = threading.Event()
    assoc = ae.associate(remote.host, remote.port, ae_title=remote.ae_title, max_pdu=int(limits.max_pdu),
                         evt_handlers=[(evt.EVT_CONN_OPEN, lambda _event: connected.set())])
    return assoc, connected.is_set()


def _why_not_established(assoc: Any, remote: RemoteNode, connected: bool, limits: Limits) -> str:
    if not connected:
        wait = f"{limits.connect_timeout:g}"
        return f"could not connect to {remote} (not reachable: refused or no answer within {wait} s)"
    if assoc.is_rejected:
        rj = getattr(assoc.acceptor, "primitive", None)
        detail = ""
        if rj is not None and getattr(rj, "result_str", None):
            detail = f" ({rj.result_str}, {rj.source_str}: {rj.reason_str})"
        return f"{remote} rejected the association{detail}; check that it knows our AE title"
    return f"{remote} did not accept the association (aborted, or no answer within {limits.acse_timeout:g} s)"


def echo(remote: RemoteNode, calling_ae: str, limits: Limits | None = None) -> str | None:
    """C-ECHO `remote`: None when it answered success, else a plain reason."""
    remote = remote.validated()
    limits = limits or Limits()
    ae = _new_ae(calling_ae, limits)
    ae.add_requested_context(VERIFICATION)
    assoc, connected = _associate(ae, remote, limits)
    if not assoc.is_established:
        return _why_not_established(assoc, remote, connected, limits)
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if "Status" not in status:
        return f"{remote} did not answer the echo"
    return None if status.Status == 0 else f"{remote} answered {status_text(int(status.Status))}"


@dataclass
class _Item:
    path: Path
    dataset: Dataset | None = None
    error: str = ""


def _read(paths: Sequence[Path]) -> list[_Item]:
    items = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path)
            _ = ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID
            items.append(_Item(path, ds))
        except Exception as exc:  # unreadable local file: reported per object
            items.append(_Item(path, error=f"{path.name}: not a readable DICOM file ({type(exc).__name__})"))
    return items


def _contexts(items: list[_Item]) -> dict[str, list[str]]:
    wanted: dict[str, list[str]] = {}
    for item in items:
        if item.dataset is None:
            continue
        sop = str(item.dataset.SOPClassUID)
        syntax = UID(str(item.dataset.file_meta.TransferSyntaxUID))
        offered = wanted.setdefault(sop, [])
        for ts in [syntax, *(UNCOMPRESSED[:2] if syntax in UNCOMPRESSED else ())]:
            if ts not in offered:
                offered.append(str(ts))
    return wanted


def send_files(paths: Sequence[str | Path], remote: RemoteNode, calling_ae: str, limits: Limits | None = None,
               on_result: Callable[[SendResult], None] | None = None) -> list[SendResult]:
    """C-STORE `paths` to `remote` over one association; one `SendResult` per path, in order."""
    remote = remote.validated()
    limits = limits or Limits()
    items = _read([Path(p) for p in paths])
    results: dict[Path, SendResult] = {}

    def report(result: SendResult) -> None:
        results[result.path] = result
        log.info("%s -> %s: %s (%s)", result.path.name, remote, result.status, result.message)
        if on_result is not None:
            on_result(result)

    for item in items:
        if item.dataset is None:
            report(SendResult(item.path, FAILED, item.error))
    sendable = [i for i in items if i.dataset is not None]
    contexts = _contexts(sendable)
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(f"{len(contexts)} SOP classes in one batch; at most {MAX_CONTEXTS}")
    if sendable:
        ae = _new_ae(calling_ae, limits)
        for sop, syntaxes in contexts.items():
            ae.add_requested_context(sop, syntaxes)
        assoc, connected = _associate(ae, remote, limits)
        if not assoc.is_established:
            why = _why_not_established(assoc, remote, connected, limits)
            for item in sendable:
                sop_class = str(item.dataset.SOPClassUID) if item.dataset is not None else ""
                report(SendResult(item.path, NOT_SENT, why, sop_class=sop_class))
        else:
            try:
                for number, item in enumerate(sendable, start=1):
                    report(_store_one(assoc, item, number, remote))
            finally:
                if assoc.is_established:
                    assoc.release()
    return [results[Path(p)] for p in paths]


def _store_one(assoc: Any, item: _Item, msg_id: int, remote: RemoteNode) -> SendResult:
    ds = item.dataset
    assert ds is not None
    sop = str(ds.SOPClassUID)
    name = class_name(sop)
    if not assoc.is_established:
        return SendResult(item.path, NOT_SENT, f"association with {remote} lost before sending", sop_class=sop)
    try:
        status = assoc.send_c_store(ds, msg_id=msg_id)
    except ValueError:  # no accepted presentation context (SOP class or transfer syntax refused)
        return SendResult(item.path, FAILED, f"{remote} does not accept {name} in this encoding", sop_class=sop)
    except RuntimeError:
        return SendResult(item.path, NOT_SENT, f"association with {remote} lost before sending", sop_class=sop)
    if "Status" not in status:
        return SendResult(item.path, NOT_SENT, f"no answer from {remote} (connection lost or timed out)",
                          sop_class=sop)
    code = int(status.Status)
    if code == 0x0000 or code in WARNING_CODES:
        return SendResult(item.path, DELIVERED, f"{name} stored ({status_text(code)})", code, sop)
    return SendResult(item.path, FAILED, f"{name} refused: {status_text(code)}", code, sop)
