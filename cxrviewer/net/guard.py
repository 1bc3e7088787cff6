"""Guards on the Storage SCP's TCP connections, before and below the DICOM association.

pynetdicom reads a PDU by trusting its length field and gives each connection a thread whose only clock
is a per-read socket timeout, so before any authentication a client could make the node buffer a PDU
"of 2 GB", or hold every association slot with idle or slowly dripping sockets. The guard closes that gap:

* **at accept** (`GuardedServer.verify_request`): the peer address must be on the allow-list (when one is
  set), and at most ``max_connections`` connections in all and ``max_connections_per_peer`` from one
  address may be open; anything else is closed at once, before a thread or a byte is spent on it;
* **PDU sizes are checked before the body is read** (`GuardedSocket.recv`): an association request may
  not exceed `MAX_REQUEST_PDU`, a P-DATA-TF PDU our advertised maximum PDU length (`Limits.max_pdu`) and
  any other PDU `MAX_OTHER_PDU`; a larger claim closes the connection having read only its 6-byte header;
* **deadlines, not per-read timeouts** (`ConnectionGuard` watchdog thread): the whole association request
  must arrive within ``request_deadline`` of accept, and every PDU within ``pdu_deadline`` of its first
  byte; a connection past either is shut down, however slowly it keeps sending.

Connections that are open but not yet associated do not take association slots (the SCP counts only
established associations against ``max_associations``). Refusals are logged without identifiers and
rate-limited (an attacker reconnecting in a loop gets one line a minute per kind of refusal).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from cxrviewer.net.config import Limits, address_allowed

log = logging.getLogger(__name__)

#: Largest A-ASSOCIATE-RQ accepted. Real requests are a few kB (120 presentation contexts ~ 12 kB); user
#: identity fields may add 2 x 64 kB.
MAX_REQUEST_PDU = 256 * 1024
#: Largest release / abort PDU (their bodies are 4 bytes).
MAX_OTHER_PDU = 1024
#: How often the watchdog looks at the deadlines.
WATCH_INTERVAL_S = 0.2

A_ASSOCIATE_RQ = 0x01
P_DATA_TF = 0x04


@dataclass
class Connection:
    """One open TCP connection as the guard sees it."""

    peer: str
    sock: socket.socket
    accepted: float = field(default_factory=time.monotonic)
    requested: bool = False  # a whole A-ASSOCIATE-RQ has arrived
    pdu_started: float | None = None  # monotonic time of the current PDU's first byte
    pdu_type: int = 0
    closed_because: str = ""

    def close(self, why: str) -> None:
        """Shut the socket down: a thread blocked reading it wakes with end-of-file and ends the association."""
        if not self.closed_because:
            self.closed_because = why
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class ConnectionGuard:
    """Connection bookkeeping shared by the server, the sockets and the watchdog thread."""

    def __init__(self, limits: Limits, networks: Iterable[Any], report: Callable[[str], None]) -> None:
        self.limits = limits
        self.networks = list(networks)
        self.note = report  # takes every refusal (the SCP logs it, rate-limited)
        self._lock = threading.Lock()
        self._open: dict[int, Connection] = {}  # id(socket) -> connection
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.closed_oversized = 0

    # -- accounting --------------------------------------------------------------------------------
    def admit(self, sock: socket.socket, peer: str) -> bool:
        """Register a new connection, or refuse it (False) by the allow-list and the connection caps."""
        why = ""
        with self._lock:
            self._purge()
            if self.networks and not address_allowed(peer, self.networks):
                why = "address not on the allow-list"
            elif len(self._open) >= self.limits.max_connections:
                why = f"{len(self._open)} connections already open (limit {self.limits.max_connections})"
            elif sum(c.peer == peer for c in self._open.values()) >= self.limits.max_connections_per_peer:
                why = f"{self.limits.max_connections_per_peer} connections from this address already open"
            else:
                self._open[id(sock)] = Connection(peer, sock)
                return True
        self.note(f"connection from {peer} closed at accept: {why}")
        return False

    def connection(self, sock: socket.socket) -> Connection | None:
        with self._lock:
            return self._open.get(id(sock))

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.pop(id(sock), None)

    def _purge(self) -> None:
        """Drop the records of sockets closed behind our back (call with the lock held)."""
        for key, conn in list(self._open.items()):
            if conn.sock.fileno() == -1:
                del self._open[key]

    def open_connections(self) -> list[Connection]:
        with self._lock:
            self._purge()
            return list(self._open.values())

    # -- PDU sizes ---------------------------------------------------------------------------------
    def pdu_limit(self, pdu_type: int) -> int:
        if pdu_type == A_ASSOCIATE_RQ:
            return MAX_REQUEST_PDU
        if pdu_type == P_DATA_TF:
            return int(self.limits.max_pdu)
        return MAX_OTHER_PDU

    def oversized(self, conn: Connection, pdu_type: int, length: int) -> None:
        with self._lock:
            self.closed_oversized += 1
        what = "association request" if pdu_type == A_ASSOCIATE_RQ else f"PDU of type 0x{pdu_type:02X}"
        self.note(f"connection from {conn.peer} closed: {what} of {length} bytes exceeds the limit of "
                  f"{self.pdu_limit(pdu_type)} bytes")
        conn.close("oversized PDU")

    # -- deadlines ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="cxr-scp-deadlines", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def check_deadlines(self, now: float | None = None) -> int:
        """Shut down every connection past a deadline; return how many."""
        now = time.monotonic() if now is None else now
        late: list[tuple[Connection, str]] = []
        for conn in self.open_connections():
            if conn.closed_because:
                continue
            if not conn.requested and now - conn.accepted > self.limits.request_deadline:
                late.append((conn, f"no complete association request within {self.limits.request_deadline:g} s"))
            elif conn.pdu_started is not None and now - conn.pdu_started > self.limits.pdu_deadline:
                late.append((conn, f"a PDU not complete within {self.limits.pdu_deadline:g} s"))
        for conn, why in late:
            self.note(f"connection from {conn.peer} closed: {why}")
            conn.close(why)
        return len(late)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            try:
                self.check_deadlines()
            except Exception:  # the watchdog must outlive any surprise
                log.exception("connection deadline check failed")


class GuardedSocket(AssociationSocket):
    """pynetdicom's association socket, reading each PDU's header first and refusing oversized bodies."""

    guard: ConnectionGuard
    conn: Connection

    def recv(self, nr_bytes: int) -> bytearray:
        conn = self.conn
        if conn.pdu_started is None:  # the DUL reads a 6-byte header, then the body it announces
            conn.pdu_started = time.monotonic()
            header = super().recv(nr_bytes)
            if len(header) == 6:
                conn.pdu_type = header[0]
                length = int.from_bytes(header[2:6], "big")
                if length > self.guard.pdu_limit(conn.pdu_type):
                    self.guard.oversized(conn, conn.pdu_type, length)
                    conn.pdu_started = None
                    return bytearray()  # the DUL sees a closed connection and ends the association
                if length == 0:
                    conn.pdu_started = None
            else:
                conn.pdu_started = None
            return header
        try:
            return super().recv(nr_bytes)
        finally:
            if conn.pdu_type == A_ASSOCIATE_RQ:
                conn.requested = True
            conn.pdu_started = None

    def close(self) -> None:
        self.guard.release(self.conn.sock)
        super().close()


class GuardedHandler(RequestHandler):
    """Gives each association a `GuardedSocket` bound to its connection record."""

    server: GuardedServer

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        sock = assoc.dul.socket  # pynetdicom's AssociationSocket, made a GuardedSocket in place
        assert sock is not None
        sock.__class__ = GuardedSocket
        assert isinstance(sock, GuardedSocket)
        sock.guard = self.server.guard
        conn = self.server.guard.connection(self.request)
        if conn is None:  # registered at accept; a race with stop() at worst
            conn = Connection(str(self.client_address[0]), self.request)
        sock.conn = conn
        return assoc


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with `ConnectionGuard` checks at accept."""

    guard: ConnectionGuard

    def verify_request(self, request: Any, client_address: Any) -> bool:
        peer = str(client_address[0]) if isinstance(client_address, tuple) else str(client_address)
        return self.guard.admit(request, peer)

    def shutdown_request(self, request: Any) -> None:
        self.guard.release(request)
        super().shutdown_request(request)
