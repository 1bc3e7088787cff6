"""Sending: per-object status, clear reasons, timeouts, and an outbox that never drops a result."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cxrviewer.net import DELIVERED, FAILED, NOT_SENT, Limits, NodeConfig, Outbox, RemoteNode, StorageSCP, echo
from cxrviewer.net.send import send_files

UDACITY = "udacity_nih_test1.dcm"


@pytest.fixture
def our_scp(tmp_path: Path) -> Iterator[StorageSCP]:
    scp = StorageSCP(NodeConfig(ae_title="RECEIVER", port=0, allowed_ae_titles=("SENDER",),
                                inbox=tmp_path / "received"))
    scp.start()
    yield scp
    scp.stop()


def _remote(scp: StorageSCP) -> RemoteNode:
    return RemoteNode(scp.address[0], scp.address[1], "RECEIVER")


def test_per_object_status_and_unreadable_files(our_scp: StorageSCP, dicom_dir: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a DICOM file at all")
    paths = [dicom_dir / UDACITY, junk, dicom_dir / "udacity_nih_test2.dcm"]
    results = send_files(paths, _remote(our_scp), "SENDER")
    assert [r.path for r in results] == paths
    assert [r.status for r in results] == [DELIVERED, FAILED, DELIVERED]
    assert results[1].message.startswith("junk.dcm: not a readable DICOM file")
    assert results[0].code == 0 and "Secondary Capture Image Storage stored" in results[0].message
    assert our_scp.received_count == 2
    assert echo(_remote(our_scp), "SENDER") is None


def test_refused_association_is_explained_and_nothing_is_lost(our_scp: StorageSCP, dicom_dir: Path,
                                                              tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    [queued] = outbox.add([dicom_dir / UDACITY], label="study")
    report = outbox.deliver(_remote(our_scp), "STRANGER", retries=1, retry_delay=0.05)
    [result] = report.results
    assert result.status == NOT_SENT and "rejected the association" in result.message
    assert "check that it knows our AE title" in result.message and report.attempts == 2
    assert outbox.pending() == [queued] and queued.read_bytes() == (dicom_dir / UDACITY).read_bytes()
    assert "0 delivered" in report.summary() and "1 waiting in the outbox" in report.summary()

    report = outbox.deliver(_remote(our_scp), "SENDER")  # configuration fixed: delivered, moved to sent/
    assert [r.status for r in report.results] == [DELIVERED] and outbox.pending() == []
    assert (tmp_path / "outbox" / "sent" / queued.parent.name / queued.name).is_file()
    assert echo(_remote(our_scp), "STRANGER") is not None


def test_remote_refusal_stays_in_outbox(tmp_path: Path, dicom_dir: Path) -> None:
    """A remote that answers a failure status holds no copy: the file stays, reported as failed."""
    small = StorageSCP(NodeConfig(ae_title="RECEIVER", port=0, allowed_ae_titles=("SENDER",),
                                  inbox=tmp_path / "received", limits=Limits(max_object_bytes=256 * 1024)))
    outbox = Outbox(tmp_path / "outbox", keep_sent=False)
    outbox.add([dicom_dir / UDACITY])
    with small:
        report = outbox.deliver(_remote(small), "SENDER", retries=0)
    [result] = report.results
    assert result.status == FAILED
    assert result.code == 0xA700 and "out of resources" in result.message
    assert len(outbox.pending()) == 1


def test_silent_remote_times_out(tmp_path: Path, dicom_dir: Path) -> None:
    """A peer that accepts TCP but never speaks DICOM: the send gives up after the ACSE timeout."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        limits = Limits(connect_timeout=2, acse_timeout=1, dimse_timeout=2, network_timeout=2)
        start = time.monotonic()
        [result] = send_files([dicom_dir / UDACITY], RemoteNode("127.0.0.1", port, "SILENT"), "SENDER", limits)
        elapsed = time.monotonic() - start
    assert result.status == NOT_SENT and "no answer within 1 s" in result.message
    assert elapsed < 6


def test_unreachable_remote(tmp_path: Path, dicom_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        outbox = Outbox(tmp_path / "outbox")
        outbox.add([dicom_dir / UDACITY])
        report = outbox.deliver(RemoteNode("127.0.0.1", port, "GONE"), "SENDER", retries=0)
    assert report.results[0].message.startswith("could not connect to GONE@127.0.0.1")
    assert len(outbox.pending()) == 1
    shutil.rmtree(tmp_path / "outbox")


def test_node_retries_the_outbox_until_the_remote_is_back(tmp_path: Path, dicom_dir: Path, waiter: Any) -> None:
    """A node started while the PACS is down delivers what waits in its outbox once the PACS is up."""
    from cxrviewer.net.node import Node

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        pacs_port = s.getsockname()[1]
    pacs = StorageSCP(NodeConfig(ae_title="PACS", port=pacs_port, allowed_ae_titles=("NODE",),
                                 inbox=tmp_path / "pacs"))
    config = NodeConfig(ae_title="NODE", port=0, allowed_ae_titles=("PACS",), inbox=tmp_path / "inbox",
                        outbox=tmp_path / "outbox", remote=RemoteNode("127.0.0.1", pacs_port, "PACS"),
                        send_retries=0)
    Outbox(config.outbox).add([dicom_dir / UDACITY, dicom_dir / "udacity_nih_test2.dcm"])
    reports: list[object] = []
    node = Node(config, engine=None, retry_interval=0.3, on_delivered=reports.append)
    with node:
        assert waiter(lambda: len(reports) >= 1, timeout=10)  # first attempt at start-up: PACS down
        assert len(Outbox(config.outbox).pending()) == 2
        with pacs:
            assert waiter(lambda: not Outbox(config.outbox).pending(), timeout=10)
            assert pacs.received_count == 2
