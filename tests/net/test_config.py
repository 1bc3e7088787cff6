"""Node settings: safe defaults, validation with specific messages, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxrviewer.net.config import (
    ConfigError,
    Limits,
    NodeConfig,
    RemoteNode,
    address_allowed,
    check_network,
    load_config,
    save_config,
)


def test_defaults_are_local_and_closed() -> None:
    config = NodeConfig().validated()
    assert config.bind_address == "127.0.0.1"
    assert config.allowed_ae_titles == ()  # nobody may connect until the user lists a PACS
    assert config.remote is None


@pytest.mark.parametrize(("title", "fragment"), [
    ("", "empty"),
    ("A" * 17, "longer than 16"),
    ("BAD\\AE", "backslash"),
    ("TAB\tAE", "printable"),
    ("ÄRZTE", "printable"),
])
def test_bad_ae_titles_are_refused_with_the_reason(title: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        NodeConfig(ae_title=title).validated()
    with pytest.raises(ConfigError, match="allowed calling AE title"):
        NodeConfig(allowed_ae_titles=("OK", title)).validated()


def test_ae_titles_are_stripped_and_deduplicated() -> None:
    config = NodeConfig(ae_title="  CXR ", allowed_ae_titles=("PACS ", "PACS", " MOD1")).validated()
    assert config.ae_title == "CXR"
    assert config.allowed_ae_titles == ("PACS", "MOD1")


def test_addresses_and_networks() -> None:
    nets = [check_network("127.0.0.1"), check_network("10.1.0.0/16"), check_network("::1")]
    assert address_allowed("127.0.0.1", nets)
    assert address_allowed("10.1.200.3", nets)
    assert address_allowed("::ffff:10.1.2.3", nets)  # IPv4-mapped peer address
    assert address_allowed("::1", nets)
    assert not address_allowed("10.2.0.1", nets)
    assert not address_allowed("127.0.0.2", nets)
    assert not address_allowed("not-an-ip", nets)
    with pytest.raises(ConfigError, match="host names are not accepted"):
        NodeConfig(allowed_addresses=("pacs.example.org",)).validated()


def test_bind_address_and_ports() -> None:
    assert NodeConfig(bind_address="localhost").validated().bind_address == "127.0.0.1"
    with pytest.raises(ConfigError, match="bind address"):
        NodeConfig(bind_address="eth0").validated()
    with pytest.raises(ConfigError, match="port 70000"):
        NodeConfig(port=70000).validated()
    with pytest.raises(ConfigError, match="remote port"):
        RemoteNode("pacs", 0, "PACS").validated()


@pytest.mark.parametrize(("limits", "fragment"), [
    (Limits(max_pdu=100), "max PDU"),
    (Limits(max_object_bytes=10), "max object size"),
    (Limits(max_associations=0), "concurrent associations"),
    (Limits(dimse_timeout=0), "dimse timeout"),
])
def test_limits_are_bounded(limits: Limits, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        NodeConfig(limits=limits).validated()


def test_remote_parse() -> None:
    remote = RemoteNode.parse("PACS@10.0.0.5:4242")
    assert (remote.ae_title, remote.host, remote.port) == ("PACS", "10.0.0.5", 4242)
    assert RemoteNode.parse("PACS@[::1]:104").host == "::1"
    with pytest.raises(ConfigError, match="AE_TITLE@HOST:PORT"):
        RemoteNode.parse("10.0.0.5:4242")


def test_json_round_trip_and_unknown_keys(tmp_path: Path) -> None:
    config = NodeConfig(ae_title="CXR", port=11113, allowed_ae_titles=("PACS",), allowed_addresses=("10.0.0.0/8",),
                        remote=RemoteNode("pacs.local", 4242, "PACS"), inbox=tmp_path / "in",
                        outbox=tmp_path / "out", limits=Limits(max_associations=2)).validated()
    path = save_config(config, tmp_path / "node.json")
    assert load_config(path) == config

    data = json.loads(path.read_text())
    data["alowed_ae_titles"] = ["TYPO"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"node\.json: unknown setting\(s\) alowed_ae_titles"):
        load_config(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path)
