"""The Storage SCP against DCMTK's storescu / echoscu and pynetdicom peers, on loopback."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import JPEGBaseline8Bit, generate_uid
from pynetdicom import AE

from cxrviewer.fileio import atomic_write_bytes
from cxrviewer.net import Limits, NetError, NodeConfig, StorageSCP
from cxrviewer.net.inbox import Inbox

GOOD_AE = "GOODSCU"
SC = "1.2.840.10008.5.1.4.1.1.7"


def _storescu(dcmtk: dict[str, str], scp: StorageSCP, aet: str, *files: Path) -> subprocess.CompletedProcess[str]:
    host, port = scp.address
    return subprocess.run([dcmtk["storescu"], "-aet", aet, "-aec", "CXRVIEWER", "-nh", "-to", "10", "-ta", "10",
                           host, str(port), *map(str, files)], capture_output=True, text=True, timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_off_until_started_and_local_by_default(tmp_path: Path) -> None:
    port = _free_port()
    scp = StorageSCP(NodeConfig(port=port, allowed_ae_titles=(GOOD_AE,), inbox=tmp_path / "inbox"))
    with pytest.raises(ConnectionRefusedError):  # constructed, not started: nothing listens
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with scp:
        assert scp.address == ("127.0.0.1", port)
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    with pytest.raises(ConnectionRefusedError):  # stopped again
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_listed_ae_stores_into_study_folders(dcmtk: dict[str, str], make_scp: Any, dicom_dir: Path) -> None:
    scp, received, _ = make_scp()
    files = [dicom_dir / "udacity_nih_test1.dcm", dicom_dir / "udacity_nih_test2.dcm"]
    proc = _storescu(dcmtk, scp, GOOD_AE, *files)
    assert proc.returncode == 0, proc.stderr
    assert [r.replaced for r in received] == [False, False]
    stored = Inbox(scp.config.inbox).files()
    assert len(stored) == 2 and len({p.parent for p in stored}) == 2  # two studies, two folders
    for original, item in zip(files, received, strict=True):
        src, got = pydicom.dcmread(original), pydicom.dcmread(item.path)
        assert got.SOPInstanceUID == src.SOPInstanceUID and got.PixelData == src.PixelData
        assert got.StudyInstanceUID == src.StudyInstanceUID
        assert item.sop_class == SC and item.modality == "DX" and item.analysable and item.calling_ae == GOOD_AE
        # file and folder names carry no identifiers (they reach the logs)
        for uid in (src.StudyInstanceUID, src.SeriesInstanceUID, src.SOPInstanceUID):
            assert uid not in str(item.path)
    assert not [p for p in scp.config.inbox.rglob("*") if p.name.startswith(".")]  # no temporaries left

    proc = _storescu(dcmtk, scp, GOOD_AE, files[0])  # the same instance again replaces its copy
    assert proc.returncode == 0 and received[-1].replaced and len(Inbox(scp.config.inbox).files()) == 2


def test_unlisted_ae_and_address_are_rejected(dcmtk: dict[str, str], make_scp: Any, dicom_dir: Path) -> None:
    scp, received, refused = make_scp()
    proc = _storescu(dcmtk, scp, "INTRUDER", dicom_dir / "udacity_nih_test1.dcm")
    assert proc.returncode != 0
    assert "Association Rejected" in proc.stderr and "Calling AE Title Not Recognized" in proc.stderr
    assert received == [] and not Inbox(scp.config.inbox).files()
    assert any("'INTRUDER'" in m and "not on the allow-list" in m for m in refused)

    echo = subprocess.run([dcmtk["echoscu"], "-aet", GOOD_AE, "-aec", "CXRVIEWER", *map(str, scp.address)],
                          capture_output=True, text=True, timeout=30)
    assert echo.returncode == 0, echo.stderr

    # the right AE title from an address outside the allowed network is closed at accept, before any PDU
    other, received2, refused2 = make_scp(allowed_addresses=("10.0.0.0/8",))
    proc = _storescu(dcmtk, other, GOOD_AE, dicom_dir / "udacity_nih_test1.dcm")
    assert proc.returncode != 0 and "Association Request Failed" in proc.stderr
    assert received2 == [] and any("closed at accept: address not on the allow-list" in m for m in refused2)


def test_wrong_called_ae_is_rejected(dcmtk: dict[str, str], make_scp: Any, dicom_dir: Path) -> None:
    scp, received, refused = make_scp()
    host, port = scp.address
    proc = subprocess.run([dcmtk["storescu"], "-aet", GOOD_AE, "-aec", "SOMEONEELSE", host, str(port),
                           str(dicom_dir / "udacity_nih_test1.dcm")], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "Called AE Title Not Recognized" in proc.stderr
    assert received == []
    assert any("called AE title 'SOMEONEELSE' is not ours" in m for m in refused)  # refused and logged


def test_malformed_and_oversized_objects_are_refused_others_stored(make_scp: Any, dicom_dir: Path) -> None:
    scp, received, refused = make_scp(limits=Limits(max_object_bytes=512 * 1024, max_pdu=16384))
    big = pydicom.dcmread(dicom_dir / "udacity_nih_test1.dcm")  # 1 MiB of pixels: over the limit
    truncated = pydicom.dcmread(dicom_dir / "udacity_nih_test2.dcm")
    truncated.SOPInstanceUID = generate_uid()
    truncated.PixelData = truncated.PixelData[:1000]  # 1024 x 1024 8-bit needs 1 MiB
    no_study = pydicom.dcmread(dicom_dir / "udacity_nih_test3.dcm")
    no_study.PixelData = no_study.PixelData[:300_000]
    no_study.Rows = 292
    del no_study.StudyInstanceUID
    good = pydicom.dcmread(dicom_dir / "siim-acr_1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm")

    ae = AE(ae_title=GOOD_AE)
    ae.add_requested_context(SC, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
    ae.add_requested_context(SC, [JPEGBaseline8Bit])
    assoc = ae.associate(*scp.address, ae_title="CXRVIEWER")
    assert assoc.is_established
    try:
        codes = [int(assoc.send_c_store(ds).Status) for ds in (truncated, big, no_study, good)]
    finally:
        assoc.release()
    assert codes == [0xA900, 0xA700, 0xA900, 0x0000]
    assert [str(pydicom.dcmread(r.path).SOPInstanceUID) for r in received] == [good.SOPInstanceUID]
    assert len(Inbox(scp.config.inbox).files()) == 1
    joined = "\n".join(refused)
    assert "pixel data truncated" in joined and "exceeds the limit of 524288 bytes" in joined
    assert "missing or invalid StudyInstanceUID" in joined
    for ds in (big, truncated):  # refusals name no identifiers
        assert str(ds.StudyInstanceUID) not in joined and str(ds.SOPInstanceUID) not in joined


def test_concurrent_association_cap(make_scp: Any, waiter: Any) -> None:
    scp, _, _ = make_scp(limits=Limits(max_associations=2))
    ae = AE(ae_title=GOOD_AE)
    ae.add_requested_context("1.2.840.10008.1.1")
    held = [ae.associate(*scp.address, ae_title="CXRVIEWER") for _ in range(2)]
    try:
        assert all(a.is_established for a in held)
        third = ae.associate(*scp.address, ae_title="CXRVIEWER")
        assert third.is_rejected  # transient, "local limit exceeded"
        assert third.acceptor.primitive.result == 0x02 and third.acceptor.primitive.diagnostic == 0x02
    finally:
        for a in held:
            a.release()

    def echo_ok() -> bool:  # the released associations' threads end a moment after the release
        again = ae.associate(*scp.address, ae_title="CXRVIEWER")
        if not again.is_established:
            return False
        ok = int(again.send_c_echo().Status) == 0
        again.release()
        return ok

    assert waiter(echo_ok, timeout=10, interval=0.2)


def test_silent_peer_is_dropped_after_the_timeout(make_scp: Any) -> None:
    scp, _, _ = make_scp(limits=Limits(acse_timeout=1.0, network_timeout=1.0))
    with socket.create_connection(scp.address, timeout=10) as sock:
        start = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""  # the SCP closed the connection
        elapsed = time.monotonic() - start
    assert 0.5 < elapsed < 8


def test_start_problems_are_plain_errors(tmp_path: Path, make_scp: Any) -> None:
    with pytest.raises(NetError, match="no calling AE title is allowed"):
        StorageSCP(NodeConfig(port=0, inbox=tmp_path / "in")).start()
    scp, _, _ = make_scp()
    port = scp.address[1]
    with pytest.raises(NetError, match=f"cannot listen on 127.0.0.1:{port}: address already in use"):
        StorageSCP(NodeConfig(port=port, allowed_ae_titles=("X",), inbox=tmp_path / "in")).start()


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.dcm"
    target.write_bytes(b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("cxrviewer.fileio.os.fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new data")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["x.dcm"]


def test_our_own_results_coming_back_are_not_analysed(make_scp: Any, dicom_dir: Path) -> None:
    from cxrviewer.report.dicom_common import MANUFACTURER

    scp, received, _ = make_scp()
    ours = pydicom.dcmread(dicom_dir / "udacity_nih_test3.dcm")
    ours.SOPInstanceUID = generate_uid()
    ours.Manufacturer = MANUFACTURER  # as on the SC / SR that cxrviewer writes
    theirs = pydicom.dcmread(dicom_dir / "udacity_nih_test3.dcm")
    ae = AE(ae_title=GOOD_AE)
    ae.add_requested_context(SC, ["1.2.840.10008.1.2"])
    assoc = ae.associate(*scp.address, ae_title="CXRVIEWER")
    assert [int(assoc.send_c_store(ds).Status) for ds in (ours, theirs)] == [0, 0]
    assoc.release()
    assert [(r.ours, r.analysable) for r in received] == [(True, False), (False, True)]
    assert pydicom.dcmread(received[0].path).file_meta.SourceApplicationEntityTitle == GOOD_AE


@pytest.mark.parametrize("change, reason", [
    ({"Rows": 60000, "Columns": 60000}, "image too large (60000 x 60000 pixels"),
    ({"Rows": 8000, "Columns": 8000}, "8000 x 8000 pixels in the header, 1841 x 1955 in the compressed data"),
    ({"NumberOfFrames": -1}, "number of frames -1 is outside"),
    ({"BitsAllocated": 1, "BitsStored": 1, "HighBit": 0}, "1 bits allocated per pixel cannot be analysed"),
])
def test_compressed_images_with_impossible_geometry_are_refused_before_success(
        make_scp: Any, dicom_dir: Path, change: dict[str, int], reason: str) -> None:
    """The red team's JPEG 2000 objects that got C-STORE success and then never an answer: now refused with a
    failure status, so the PACS learns at once; the genuine object is still stored."""
    scp, received, refused = make_scp()
    genuine = pydicom.dcmread(dicom_dir / "pydicom-data_RG1_J2KI.dcm")
    bad = pydicom.dcmread(dicom_dir / "pydicom-data_RG1_J2KI.dcm")
    bad.SOPInstanceUID = generate_uid()
    for keyword, value in change.items():
        setattr(bad, keyword, value)
    ae = AE(ae_title=GOOD_AE)
    ae.add_requested_context(genuine.SOPClassUID, [genuine.file_meta.TransferSyntaxUID])
    assoc = ae.associate(*scp.address, ae_title="CXRVIEWER")
    assert assoc.is_established
    try:
        status_bad = int(assoc.send_c_store(bad).Status)
        status_good = int(assoc.send_c_store(genuine).Status)
    finally:
        assoc.release()
    assert status_bad in (0xA900, 0xC000) and status_good == 0x0000
    assert len(received) == 1 and any(reason in m for m in refused), refused
