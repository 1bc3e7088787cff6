"""Settings of the DICOM node: our AE, who may talk to us, where we send results, and the limits.

`NodeConfig` is plain data (frozen dataclass), validated by `NodeConfig.validated()`, stored as JSON
(`load_config` / `save_config`, `to_dict` / `from_dict`). The SCP is off unless a caller starts it, and
binds to 127.0.0.1 unless `bind_address` says otherwise.

Allow-list: an association is accepted only when the calling AE title is in `allowed_ae_titles` (an
empty list accepts nobody) and, when `allowed_addresses` is not empty, the peer's IP address lies in
one of the listed addresses or networks ("127.0.0.1", "10.0.0.0/24", "::1").
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cxrviewer.fileio import atomic_write_text

DEFAULT_AE_TITLE = "CXRVIEWER"
DEFAULT_PORT = 11112
DEFAULT_BIND = "127.0.0.1"
MIB = 1024 * 1024


class ConfigError(ValueError):
    """An invalid node setting; the message names the setting and what is wrong."""


def default_data_dir() -> Path:
    """Where the inbox and outbox live unless configured: $XDG_DATA_HOME/cxrviewer (~/.local/share)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cxrviewer"


def check_ae_title(value: str, what: str = "AE title") -> str:
    """A valid AE title (1-16 characters of the default repertoire, no backslash), stripped."""
    title = str(value).strip()
    if not title:
        raise ConfigError(f"{what} is empty")
    if len(title) > 16:
        raise ConfigError(f"{what} {title!r} is longer than 16 characters")
    if any(ord(c) < 0x20 or ord(c) > 0x7E or c == "\\" for c in title):
        raise ConfigError(f"{what} {title!r} may hold only printable ASCII characters other than backslash")
    return title


def check_port(value: Any, what: str = "port", allow_zero: bool = False) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {value!r} is not a number") from None
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise ConfigError(f"{what} {port} is outside {low}-65535")
    return port


def check_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        raise ConfigError(f"allowed address {value!r} is not an IP address or network "
                          "(e.g. 127.0.0.1 or 10.0.0.0/24; host names are not accepted)") from None


def check_bind_address(value: str) -> str:
    text = str(value).strip()
    if text.lower() == "localhost":
        return DEFAULT_BIND
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ConfigError(f"bind address {value!r} is not an IP address of this machine "
                          "(e.g. 127.0.0.1, or 0.0.0.0 for every interface)") from None


def address_allowed(address: str, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """True when `address` lies in one of `networks` (IPv4-mapped IPv6 addresses count as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


@dataclass(frozen=True)
class RemoteNode:
    """The PACS (or other Storage SCP) that receives our results."""

    host: str
    port: int
    ae_title: str

    def validated(self) -> RemoteNode:
        host = str(self.host).strip()
        if not host or any(c.isspace() for c in host):
            raise ConfigError(f"remote host {self.host!r} is not a host name or address")
        return RemoteNode(host, check_port(self.port, "remote port"), check_ae_title(self.ae_title, "remote AE title"))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    @staticmethod
    def parse(text: str) -> RemoteNode:
        """"AE@HOST:PORT" -> RemoteNode (validated)."""
        ae, sep, rest = str(text).partition("@")
        host, colon, port = rest.rpartition(":")
        if not sep or not colon:
            raise ConfigError(f"remote {text!r} is not of the form AE_TITLE@HOST:PORT")
        return RemoteNode(host.strip("[]"), check_port(port, "remote port"), ae).validated()


@dataclass(frozen=True)
class Limits:
    """Resource limits and timeouts (seconds) for every network operation."""

    max_pdu: int = 256 * 1024  # largest PDU we accept (advertised to the peer)
    max_object_bytes: int = 256 * MIB  # a larger incoming object is refused (status A700)
    max_associations: int = 4  # concurrent incoming associations; more are rejected
    max_connections: int = 48  # open TCP connections in all (associated or not); more are closed at accept
    max_connections_per_peer: int = 16  # open TCP connections from one address; more are closed at accept
    connect_timeout: float = 10.0  # TCP connect when sending
    acse_timeout: float = 30.0  # association request / release
    dimse_timeout: float = 120.0  # waiting for a DIMSE response (C-STORE-RSP of a large object)
    network_timeout: float = 60.0  # no data at all on an association: it is closed
    request_deadline: float = 10.0  # a connection's whole A-ASSOCIATE-RQ must arrive within this of accept
    pdu_deadline: float = 60.0  # each whole PDU must arrive within this of its first byte

    def validated(self) -> Limits:
        if not 4096 <= int(self.max_pdu) <= 16 * MIB:
            raise ConfigError(f"max PDU size {self.max_pdu} is outside 4096-{16 * MIB} bytes")
        if int(self.max_object_bytes) < 64 * 1024:
            raise ConfigError(f"max object size {self.max_object_bytes} bytes is below 64 KiB")
        if not 1 <= int(self.max_associations) <= 64:
            raise ConfigError(f"max concurrent associations {self.max_associations} is outside 1-64")
        if not int(self.max_associations) <= int(self.max_connections) <= 1024:
            raise ConfigError(f"max connections {self.max_connections} is outside "
                              f"{self.max_associations} (max associations)-1024")
        if not 1 <= int(self.max_connections_per_peer) <= int(self.max_connections):
            raise ConfigError(f"max connections per peer {self.max_connections_per_peer} is outside "
                              f"1-{self.max_connections} (max connections)")
        for name in ("connect_timeout", "acse_timeout", "dimse_timeout", "network_timeout", "request_deadline",
                     "pdu_deadline"):
            value = float(getattr(self, name))
            if not 0 < value <= 3600:
                raise ConfigError(f"{name.replace('_', ' ')} {value} s is outside 0-3600 s")
        return self


@dataclass(frozen=True)
class NodeConfig:
    """Everything the Storage SCP, the sender and the outbox need."""

    ae_title: str = DEFAULT_AE_TITLE
    port: int = DEFAULT_PORT  # 0: any free port (tests)
    bind_address: str = DEFAULT_BIND
    allowed_ae_titles: tuple[str, ...] = ()
    allowed_addresses: tuple[str, ...] = ()  # empty: any address (the bind address already limits who can reach us)
    remote: RemoteNode | None = None
    inbox: Path = field(default_factory=lambda: default_data_dir() / "inbox")
    outbox: Path = field(default_factory=lambda: default_data_dir() / "outbox")
    limits: Limits = field(default_factory=Limits)
    send_retries: int = 2  # extra attempts within one delivery when the remote cannot be reached
    retry_delay: float = 2.0  # seconds before the first extra attempt (doubles each time)

    def validated(self) -> NodeConfig:
        """A normalised copy; `ConfigError` naming the first bad setting."""
        aes = tuple(dict.fromkeys(check_ae_title(a, "allowed calling AE title") for a in self.allowed_ae_titles))
        nets = tuple(str(check_network(a)) for a in self.allowed_addresses)
        if not 0 <= int(self.send_retries) <= 10:
            raise ConfigError(f"send retries {self.send_retries} is outside 0-10")
        if not 0 <= float(self.retry_delay) <= 600:
            raise ConfigError(f"retry delay {self.retry_delay} s is outside 0-600 s")
        return replace(
            self,
            ae_title=check_ae_title(self.ae_title),
            port=check_port(self.port, allow_zero=True),
            bind_address=check_bind_address(self.bind_address),
            allowed_ae_titles=aes,
            allowed_addresses=nets,
            remote=self.remote.validated() if self.remote is not None else None,
            inbox=Path(self.inbox).expanduser(),
            outbox=Path(self.outbox).expanduser(),
            limits=self.limits.validated(),
            send_retries=int(self.send_retries),
            retry_delay=float(self.retry_delay),
        )

    @property
    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [check_network(a) for a in self.allowed_addresses]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["allowed_ae_titles"] = list(self.allowed_ae_titles)
        data["allowed_addresses"] = list(self.allowed_addresses)
        data["inbox"], data["outbox"] = str(self.inbox), str(self.outbox)
        return data

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> NodeConfig:
        """Build and validate from a mapping (unknown keys are an error: a typo must not pass silently)."""
        known = set(NodeConfig.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
        kwargs: dict[str, Any] = dict(data)
        for key in ("allowed_ae_titles", "allowed_addresses"):
            if key in kwargs:
                value = kwargs[key]
                kwargs[key] = tuple([value] if isinstance(value, str) else (value or ()))
        remote = kwargs.get("remote")
        if isinstance(remote, Mapping):
            extra = sorted(set(remote) - {"host", "port", "ae_title"})
            if extra:
                raise ConfigError(f"unknown remote setting(s) {', '.join(extra)}")
            try:
                kwargs["remote"] = RemoteNode(**remote)
            except TypeError:
                raise ConfigError("remote needs host, port and ae_title") from None
        elif isinstance(remote, str):
            kwargs["remote"] = RemoteNode.parse(remote)
        limits = kwargs.get("limits")
        if isinstance(limits, Mapping):
            extra = sorted(set(limits) - set(Limits.__dataclass_fields__))
            if extra:
                raise ConfigError(f"unknown limit(s) {', '.join(extra)}")
            kwargs["limits"] = Limits(**limits)
        for key in ("inbox", "outbox"):
            if key in kwargs:
                kwargs[key] = Path(kwargs[key])
        return NodeConfig(**kwargs).validated()


def load_config(path: str | Path) -> NodeConfig:
    """Read a JSON node configuration (ConfigError with the file name for any problem)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    try:
        return NodeConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_config(config: NodeConfig, path: str | Path) -> Path:
    """Write the configuration as JSON (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(config.to_dict(), indent=2) + "\n")
