"""The Storage SCP: C-ECHO and C-STORE (CR, DX, Secondary Capture, SR) into the inbox.

`StorageSCP(config, on_received=...)` listens on ``config.bind_address:config.port`` (127.0.0.1 by
default) once `start()` is called, in pynetdicom's server thread; each association runs in its own
thread. Nothing listens before `start()`: the node is off by default.

Who may connect: a peer address off the allow-list (when one is set) is closed at accept, as is a
connection beyond the caps on open connections (`cxrviewer.net.guard`: PDU sizes bounded before they are
read, deadlines for the association request and each PDU). The calling AE title must be on the
allow-list and the called AE title ours; otherwise the association is rejected (A-ASSOCIATE-RJ,
permanent, "calling / called AE title not recognised", logged) before any data is exchanged.

Limits (`config.limits`): the PDU size we advertise; at most ``max_associations`` established
associations (more are rejected, transient, "local limit exceeded"; connections still negotiating do not
count); ACSE / DIMSE / network timeouts (an idle or stalled peer is dropped). An object larger than
``max_object_bytes`` is refused with status A700 without being held in memory: `_SizeGuard` counts the
data set bytes of each incoming message as the PDUs arrive and, past the limit, swaps the message's
buffer for one that only counts. A malformed object
(damaged elements, a data set that contradicts its request, truncated pixels; see `validate`) is refused
with its own status. Either way the association goes on and other objects are unaffected.

Logs name AE titles, addresses, SOP classes and inbox file names (hashed), never patient identifiers.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.dsutils import encode_file_meta

from cxrviewer.imaging.log_privacy import RateLimiter
from cxrviewer.net.config import NodeConfig, address_allowed
from cxrviewer.net.errors import NetError
from cxrviewer.net.guard import ConnectionGuard, GuardedHandler, GuardedServer
from cxrviewer.net.inbox import Inbox
from cxrviewer.net.sopclasses import IMAGE_CLASSES, STORAGE_CLASSES, VERIFICATION, class_name, syntaxes_for
from cxrviewer.net.validate import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, Refusal, check_dataset
from cxrviewer.report.dicom_common import MANUFACTURER

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ (result, source, diagnostic): rejected-permanent, service-user, calling AE not recognised.
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
# ... called AE title not recognised.
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
# rejected-transient, service-provider (presentation), local limit exceeded.
REJECT_BUSY = (0x02, 0x03, 0x02)


@dataclass(frozen=True)
class Received:
    """One stored object, as handed to `on_received` (no identifiers besides the hashed file name)."""

    path: Path
    sop_class: str
    modality: str
    calling_ae: str
    replaced: bool  # the same instance had been received before and was overwritten
    ours: bool  # produced by cxrviewer (our own SR / SC coming back): never analysed

    @property
    def is_image(self) -> bool:
        return self.sop_class in IMAGE_CLASSES

    @property
    def analysable(self) -> bool:
        return self.is_image and not self.ours


class _Discarded(io.BytesIO):
    """Stands in for the data set buffer of an oversized message: counts bytes, keeps none."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def write(self, data: Any) -> int:
        self.size += len(data)
        return len(data)


class _SizeGuard:
    """Per association: bytes of the data set being received, from the PDVs of each P-DATA-TF PDU."""

    def __init__(self) -> None:
        self.size = 0

    def feed(self, pdu: bytes) -> None:
        pos = 6
        while pos + 6 <= len(pdu):
            length = int.from_bytes(pdu[pos:pos + 4], "big")
            header = pdu[pos + 5]
            if header & 0x01:  # command fragment; the last one starts a new message
                if header & 0x02:
                    self.size = 0
            else:
                self.size += max(0, length - 2)
            pos += 4 + length


class StorageSCP:
    """A Storage SCP writing into an inbox; start() / stop(), or use as a context manager."""

    def __init__(self, config: NodeConfig, on_received: Callable[[Received], None] | None = None,
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.config = config.validated()
        self.inbox = Inbox(self.config.inbox)
        self.on_received = on_received
        self.on_refused = on_refused
        self._ae: AE | None = None
        self._server: Any = None
        self._networks = self.config.networks
        self.guard = ConnectionGuard(self.config.limits, self._networks, report=self._refuse)
        self._log_limiter = RateLimiter()
        self._guards: weakref.WeakKeyDictionary[Any, _SizeGuard] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self.received_count = 0
        self.refused_count = 0

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound (port 0 in the config picks a free one)."""
        if self._server is None:
            return self.config.bind_address, self.config.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def _build_ae(self) -> AE:
        limits = self.config.limits
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = int(limits.max_pdu)
        # pynetdicom counts every connection, associated or not; established associations are counted
        # against max_associations in _on_requested, connections by the guard.
        ae.maximum_associations = int(limits.max_connections)
        ae.acse_timeout = limits.acse_timeout
        ae.dimse_timeout = limits.dimse_timeout
        ae.network_timeout = limits.network_timeout
        ae.connection_timeout = limits.connect_timeout
        ae.require_calling_aet = list(self.config.allowed_ae_titles)  # second line of defence
        ae.require_called_aet = True
        ae.add_supported_context(VERIFICATION)
        for uid in STORAGE_CLASSES:
            ae.add_supported_context(uid, list(syntaxes_for(uid)))
        return ae

    def start(self) -> None:
        """Bind and listen (returns at once; serving happens in background threads)."""
        if self._server is not None:
            return
        if not self.config.allowed_ae_titles:
            raise NetError("no calling AE title is allowed: add the PACS's AE title to the allow-list "
                           "before turning the receiver on")
        self.inbox.ensure()
        # Never log data set identifiers (pynetdicom logs C-FIND/C-MOVE identifiers by default).
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
        self._ae = self._build_ae()
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_DATA_RECV, self._on_data),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
        ]
        host, port = self.config.bind_address, self.config.port
        try:
            server = cast(GuardedServer, self._ae.make_server(
                (host, port), evt_handlers=handlers, server_class=GuardedServer, request_handler=GuardedHandler))
        except OSError as exc:
            self._ae = None
            hint = " (ports below 1024 need administrator rights)" if port and port < 1024 else ""
            raise NetError(f"cannot listen on {host}:{port}: {(exc.strerror or str(exc)).lower()}{hint}") from None
        server.guard = self.guard
        self._ae._servers.append(server)  # as AE.start_server does: AE.shutdown() stops it too
        self._server = server
        self.guard.start()
        threading.Thread(target=server.serve_forever, name="cxr-scp-server", daemon=True).start()
        host, port = self.address
        log.info("DICOM receiver %s listening on %s:%d (allowed calling AE titles: %s%s)", self.config.ae_title,
                 host, port, ", ".join(self.config.allowed_ae_titles),
                 f"; addresses: {', '.join(self.config.allowed_addresses)}" if self.config.allowed_addresses else "")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, abort open associations and wait (up to `timeout` s) for their threads."""
        ae, server, self._ae, self._server = self._ae, self._server, None, None
        if ae is None:
            return
        server.shutdown()  # no new associations
        self.guard.stop()
        end = time.monotonic() + timeout
        # A-ABORT every open association, in parallel (each waits for its peer to hang up).
        aborting = [threading.Thread(target=assoc.abort, name="cxr-scp-abort", daemon=True)
                    for assoc in ae.active_associations]
        for thread in aborting:
            thread.start()
        for thread in aborting:
            thread.join(max(0.0, min(1.0, end - time.monotonic())))
        for assoc in ae.active_associations:  # a peer slow to hang up: close the connection ourselves
            sock = getattr(assoc.dul, "socket", None)
            if sock is not None:
                sock.close()
        for thread in aborting:
            thread.join(max(0.0, end - time.monotonic()))
        # A connection that never sent an association request keeps its thread (no socket, no data) until
        # the ACSE timeout: pynetdicom offers no way to wake it. Wait only for real associations.
        while any(a.is_established for a in ae.active_associations) and time.monotonic() < end:
            time.sleep(0.02)
        held = self._log_limiter.held_back()
        log.info("DICOM receiver stopped%s", f" ({held} repeated refusal line(s) were held back)" if held else "")

    def __enter__(self) -> StorageSCP:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- association -------------------------------------------------------------------------------
    def _refuse(self, message: str) -> None:
        with self._lock:
            self.refused_count += 1
        line = self._log_limiter.admit(message)
        if line is not None:  # a sender retrying a bad object in a loop: one line a minute
            log.warning(line)
        if self.on_refused is not None:
            try:
                self.on_refused(message)
            except Exception:  # a listener's problem must not break the association
                log.exception("on_refused listener failed")

    def _on_requested(self, event: Any) -> None:
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title or "").strip()
        address = str(assoc.requestor.address)
        called = str(assoc.requestor.primitive.called_ae_title or "").strip()
        why, reject = "", REJECT_CALLING_AE
        if calling not in self.config.allowed_ae_titles:
            why = "calling AE title not on the allow-list"
        elif self._networks and not address_allowed(address, self._networks):
            why = "address not on the allow-list"
        elif called != self.config.ae_title:
            why, reject = f"called AE title {called[:16]!r} is not ours ({self.config.ae_title!r})", REJECT_CALLED_AE
        else:
            others = sum(a.is_established for a in self._ae.active_associations if a.is_acceptor and a is not assoc) \
                if self._ae is not None else 0
            if others >= self.config.limits.max_associations:
                why = f"{others} associations already open (limit {self.config.limits.max_associations})"
                reject = REJECT_BUSY
        if why:
            self._refuse(f"association from {calling[:16]!r} at {address} rejected: {why}")
            assoc.acse.send_reject(*reject)
            assoc.kill()

    def _on_data(self, event: Any) -> None:
        """Runs in the association's DUL thread for each PDU, before it reaches the DIMSE layer."""
        data = event.data
        if not data or data[0] != 0x04:  # P-DATA-TF only
            return
        guard = self._guards.get(event.assoc)
        if guard is None:
            with self._lock:
                guard = self._guards.setdefault(event.assoc, _SizeGuard())
        guard.feed(data)
        if guard.size > self.config.limits.max_object_bytes:
            message = getattr(event.assoc.dimse, "message", None)
            buffer = getattr(message, "data_set", None)
            if message is not None and isinstance(buffer, io.BytesIO) and not isinstance(buffer, _Discarded):
                message.data_set = _Discarded(buffer.tell())  # drop what was kept, count the rest

    def _on_echo(self, event: Any) -> int:
        log.info("C-ECHO from %r", str(event.assoc.requestor.ae_title).strip())
        return 0x0000

    # -- C-STORE ------------------------------------------------------------------------------------
    def _on_store(self, event: Any) -> int | Dataset:
        request = event.request
        calling = str(event.assoc.requestor.ae_title).strip()
        sop_class = str(request.AffectedSOPClassUID)
        what = class_name(sop_class)
        buffer = request.DataSet
        if isinstance(buffer, _Discarded):
            limit = self.config.limits.max_object_bytes
            return self._refused_store(calling, what, Refusal(
                OUT_OF_RESOURCES, f"object of {buffer.size} bytes exceeds the limit of {limit} bytes"))
        transfer_syntax = str(event.context.transfer_syntax)
        try:
            ds = event.dataset
        except Exception as exc:
            return self._refused_store(calling, what, Refusal(CANNOT_UNDERSTAND,
                                                              f"undecodable data set ({type(exc).__name__})"))
        refusal = check_dataset(ds, sop_class, str(request.AffectedSOPInstanceUID), transfer_syntax)
        if refusal is not None:
            return self._refused_store(calling, what, refusal)
        meta = event.file_meta
        meta.SourceApplicationEntityTitle = calling
        # Preamble, file meta and the data set exactly as received (no re-encoding, no extra copy).
        data = [b"\x00" * 128 + b"DICM", encode_file_meta(meta), buffer.getbuffer()]
        try:
            path, replaced = self.inbox.store(data, study_uid=str(ds.StudyInstanceUID),
                                              sop_uid=str(ds.SOPInstanceUID), modality=str(ds.get("Modality", "")))
        except OSError as exc:
            return self._refused_store(calling, what, Refusal(
                OUT_OF_RESOURCES, f"cannot write to the inbox ({(exc.strerror or type(exc).__name__).lower()})"))
        ours = str(ds.get("Manufacturer", "")) == MANUFACTURER
        item = Received(path=path, sop_class=sop_class, modality=str(ds.get("Modality", "") or ""),
                        calling_ae=calling, replaced=replaced, ours=ours)
        with self._lock:
            self.received_count += 1
        log.info("received %s from %r -> %s/%s%s", what, calling, path.parent.name, path.name,
                 " (replaced an earlier copy)" if replaced else "")
        if self.on_received is not None:
            try:
                self.on_received(item)
            except Exception:  # the object is safely stored; a listener's failure is not the sender's
                log.exception("on_received listener failed for %s", path.name)
        return 0x0000

    def _refused_store(self, calling: str, what: str, refusal: Refusal) -> int:
        self._refuse(f"{what} from {calling!r} refused (status 0x{refusal.status:04X}): {refusal.reason}")
        return refusal.status
