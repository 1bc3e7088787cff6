"""Connection guards of the Storage SCP (issue 21 items 1-2): bounded PDUs and deadlines before any
authentication, connection caps at accept; raw sockets and pynetdicom peers on loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pynetdicom import AE

from cxrviewer.net import Limits, StorageSCP
from cxrviewer.net.guard import MAX_REQUEST_PDU

GOOD_AE = "GOODSCU"
VERIFICATION = "1.2.840.10008.1.1"


def _echo(scp: StorageSCP) -> int | None:
    """C-ECHO status, or None when no association could be made."""
    ae = AE(ae_title=GOOD_AE)
    ae.add_requested_context(VERIFICATION)
    ae.acse_timeout = ae.network_timeout = 10
    host, port = scp.address
    assoc = ae.associate(host, port, ae_title="CXRVIEWER")
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status else None
    finally:
        assoc.release()


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """True when the node closes `sock` within `within` seconds (end of file or reset)."""
    sock.settimeout(within)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.fixture
def raw(make_scp: Any) -> Iterator[Callable[[StorageSCP], socket.socket]]:
    sockets: list[socket.socket] = []

    def connect(scp: StorageSCP) -> socket.socket:
        sock = socket.create_connection(scp.address, timeout=5)
        sockets.append(sock)
        return sock

    yield connect
    for sock in sockets:
        sock.close()


def test_a_huge_association_request_is_refused_from_its_header(make_scp: Any, raw: Any) -> None:
    """The red team's 2 GB A-ASSOCIATE-RQ: closed after the 6-byte header, nothing buffered; others unaffected."""
    scp, _, refused = make_scp()
    sock = raw(scp)
    sock.sendall(bytes([0x01, 0x00]) + (2 * 1024**3).to_bytes(4, "big"))
    sock.sendall(b"\x00" * 65536)  # the start of the claimed body
    assert _closed_by_peer(sock, within=5.0), "the node kept reading a 2 GB association request"
    assert any("association request of 2147483648 bytes exceeds the limit" in m for m in refused)
    assert scp.guard.closed_oversized == 1
    assert _echo(scp) == 0x0000
    # a request at the limit is read (and then rejected as garbage), not refused for its size
    assert MAX_REQUEST_PDU >= 128 * 1024


def test_an_oversized_p_data_pdu_aborts_the_association(make_scp: Any) -> None:
    """After association, a P-DATA-TF PDU longer than our advertised maximum is refused before it is read."""
    scp, _, refused = make_scp(limits=Limits(max_pdu=16384))
    ae = AE(ae_title=GOOD_AE)
    ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(*scp.address, ae_title="CXRVIEWER")
    assert assoc.is_established
    assoc.dul.socket.socket.sendall(bytes([0x04, 0x00]) + (64 * 1024 * 1024).to_bytes(4, "big") + b"\x00" * 1024)
    deadline = time.monotonic() + 10
    while assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not assoc.is_established and assoc.is_aborted
    assert any("PDU of type 0x04 of 67108864 bytes exceeds the limit of 16384" in m for m in refused)
    assert _echo(scp) == 0x0000


def _drip(sock: socket.socket, stop: threading.Event, header: bytes, every: float) -> None:
    """Send a PDU header, then one byte every `every` seconds (the slow-loris of the red team)."""
    with contextlib.suppress(OSError):
        sock.sendall(header)
        while not stop.wait(every):
            sock.sendall(b"\x00")


def test_idle_and_dripping_connections_cannot_hold_the_node(make_scp: Any, raw: Any) -> None:
    """Four idle sockets and four that drip an association request byte by byte: the node still answers a
    C-ECHO at once (they hold no association slot) and closes all eight at their deadline."""
    limits = Limits(max_associations=4, request_deadline=1.5, pdu_deadline=30)
    scp, _, refused = make_scp(limits=limits)
    idle = [raw(scp) for _ in range(4)]
    dripping = [raw(scp) for _ in range(4)]
    stop = threading.Event()
    threads = [threading.Thread(target=_drip, args=(s, stop, bytes([0x01, 0, 0, 0, 0, 0x44]), 0.2), daemon=True)
               for s in dripping]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        assert _echo(scp) == 0x0000  # while all eight are open
        assert all(_closed_by_peer(s, within=4.0) for s in idle + dripping)
        assert any("no complete association request within 1.5 s" in m for m in refused)
        assert _echo(scp) == 0x0000
    finally:
        stop.set()


def test_a_pdu_dripped_after_association_is_cut_at_its_deadline(make_scp: Any) -> None:
    scp, _, refused = make_scp(limits=Limits(pdu_deadline=1.0, network_timeout=60))
    ae = AE(ae_title=GOOD_AE)
    ae.add_requested_context(VERIFICATION)
    ae.network_timeout = 60
    assoc = ae.associate(*scp.address, ae_title="CXRVIEWER")
    assert assoc.is_established
    stop = threading.Event()
    threading.Thread(target=_drip, args=(assoc.dul.socket.socket, stop, bytes([0x04, 0, 0, 0, 0x03, 0xE8]), 0.2),
                     daemon=True).start()
    try:
        deadline = time.monotonic() + 8
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not assoc.is_established  # the per-read timeout (60 s) never fired; the PDU deadline did
        assert any("a PDU not complete within 1 s" in m for m in refused)
    finally:
        stop.set()


def test_connections_per_peer_are_capped_at_accept(make_scp: Any, raw: Any) -> None:
    scp, _, refused = make_scp(limits=Limits(max_connections_per_peer=3, request_deadline=30))
    held = [raw(scp) for _ in range(3)]
    time.sleep(0.2)
    extra = raw(scp)
    assert _closed_by_peer(extra, within=3.0)
    assert any("3 connections from this address already open" in m for m in refused)
    assert not any(_closed_by_peer(s, within=0.2) for s in held)  # the first three are still served
    for sock in held:
        sock.close()
    time.sleep(0.3)
    assert _echo(scp) == 0x0000  # closed connections free their places
