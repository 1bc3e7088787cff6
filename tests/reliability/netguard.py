"""Make every outgoing network attempt from Python fail loudly, and remember it.

`install()` replaces ``socket.socket.connect`` / ``connect_ex`` / ``sendto`` / ``sendmsg``,
``socket.create_connection`` and ``socket.getaddrinfo`` (name lookups) with functions that record the
attempt (with a short stack) and raise `NetworkAttempt`. Local AF_UNIX sockets stay allowed (Qt and
multiprocessing use them for local IPC); everything else, loopback included, counts as an attempt.
"""

from __future__ import annotations

import socket
import traceback
from typing import Any

ATTEMPTS: list[str] = []
_ORIGINAL: dict[str, Any] = {}


class NetworkAttempt(RuntimeError):
    """Raised instead of opening a network connection."""


def _record(what: str, target: object) -> None:
    stack = "".join(traceback.format_stack(limit=8)[:-2])
    ATTEMPTS.append(f"{what}({target!r})\n{stack}")
    raise NetworkAttempt(f"network access attempted: {what}({target!r})")


def _is_local(sock: socket.socket) -> bool:
    return getattr(socket, "AF_UNIX", None) is not None and sock.family == socket.AF_UNIX


def install() -> None:
    if _ORIGINAL:
        return
    cls = socket.socket
    _ORIGINAL.update(connect=cls.connect, connect_ex=cls.connect_ex, sendto=cls.sendto,
                     sendmsg=getattr(cls, "sendmsg", None), create_connection=socket.create_connection,
                     getaddrinfo=socket.getaddrinfo)

    def connect(self: socket.socket, address: Any) -> None:
        if _is_local(self):
            return _ORIGINAL["connect"](self, address)
        _record("connect", address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if _is_local(self):
            return _ORIGINAL["connect_ex"](self, address)
        _record("connect_ex", address)
        return 1

    def sendto(self: socket.socket, *args: Any) -> int:
        if _is_local(self):
            return _ORIGINAL["sendto"](self, *args)
        _record("sendto", args[-1])
        return 0

    def sendmsg(self: socket.socket, *args: Any) -> int:
        if _is_local(self) or len(args) < 4:  # no explicit address: a connected (already checked) socket
            return _ORIGINAL["sendmsg"](self, *args)
        _record("sendmsg", args[3])
        return 0

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        _record("create_connection", address)
        raise AssertionError("unreachable")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> list:
        _record("getaddrinfo", host)
        return []

    cls.connect = connect  # type: ignore[method-assign]
    cls.connect_ex = connect_ex  # type: ignore[method-assign]
    cls.sendto = sendto  # type: ignore[method-assign]
    if _ORIGINAL["sendmsg"] is not None:
        cls.sendmsg = sendmsg  # type: ignore[method-assign]
    socket.create_connection = create_connection  # type: ignore[assignment]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]


def uninstall() -> None:
    if not _ORIGINAL:
        return
    cls = socket.socket
    cls.connect = _ORIGINAL["connect"]  # type: ignore[method-assign]
    cls.connect_ex = _ORIGINAL["connect_ex"]  # type: ignore[method-assign]
    cls.sendto = _ORIGINAL["sendto"]  # type: ignore[method-assign]
    if _ORIGINAL["sendmsg"] is not None:
        cls.sendmsg = _ORIGINAL["sendmsg"]  # type: ignore[method-assign]
    socket.create_connection = _ORIGINAL["create_connection"]
    socket.getaddrinfo = _ORIGINAL["getaddrinfo"]
    _ORIGINAL.clear()


def self_test() -> bool:
    """True if a connection attempt to a loopback port is caught and recorded (then forgotten)."""
    before = len(ATTEMPTS)
    caught = False
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    except NetworkAttempt:
        caught = True
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect(("127.0.0.1", 9))
    except NetworkAttempt:
        caught = caught and True
    else:
        caught = False
    finally:
        s.close()
    ok = caught and len(ATTEMPTS) == before + 2
    del ATTEMPTS[before:]
    return ok
