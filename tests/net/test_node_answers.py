"""The node answers every acknowledged image exactly once (issue 21 items 4-6): a durable backlog (journal +
inbox rescan) across crashes and full disks, orphans cleaned, idempotent results, notices for images that
cannot be analysed. In process with a real (tiny) model, and `cxrviewer-node` killed with SIGKILL."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from cxrviewer.imaging import ImageLoadError
from cxrviewer.net import NodeConfig
from cxrviewer.net import node as node_module
from cxrviewer.net.inbox import Inbox
from cxrviewer.net.journal import Journal
from cxrviewer.net.node import Node
from cxrviewer.report.errors import ExportError
from tests.net.conftest import listening

REPO = Path(__file__).resolve().parents[2]
SOURCE = "udacity_nih_test1.dcm"
NOTICE_TEXT = "cxrviewer notice: image not analysed"


def _copies(dicom_dir: Path, n: int, study: str | None = None) -> list[pydicom.Dataset]:
    """`n` distinct instances (new SOP Instance UIDs) of one real film, in one study."""
    study = study or generate_uid()
    out = []
    for _ in range(n):
        ds = pydicom.dcmread(dicom_dir / SOURCE)
        ds.StudyInstanceUID, ds.SOPInstanceUID = study, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out.append(ds)
    return out


def _store(inbox: Inbox, ds: pydicom.Dataset, tmp: Path) -> Path:
    """Put an object into the inbox as the SCP does after acknowledging it."""
    raw = tmp / "raw.dcm"
    ds.save_as(raw, enforce_file_format=True)
    path, _ = inbox.store(raw.read_bytes(), study_uid=ds.StudyInstanceUID, sop_uid=ds.SOPInstanceUID,
                          modality=str(ds.Modality))
    return path


def _config(tmp_path: Path, **changes: Any) -> NodeConfig:
    return NodeConfig(**{"port": 0, "allowed_ae_titles": ("GOODSCU",), "inbox": tmp_path / "inbox",
                         "outbox": tmp_path / "outbox", **changes})


def _results(outbox: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted((outbox / "pending").glob("*/*.dcm"))]


def _wait(condition: Any, timeout: float = 60.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_backlog_and_orphans_of_a_crashed_run_are_answered_at_start(tmp_path: Path, dicom_dir: Path, engine: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """Images acknowledged before a crash (in the inbox, no journal entry), a half-stored temporary, a
    half-written result batch and a stray temporary in a pending batch: at start the orphans go, the backlog
    is reported and every image gets exactly one SR + SC."""
    inbox = Inbox(tmp_path / "inbox")
    inbox.ensure()
    images = [_store(inbox, ds, tmp_path) for ds in _copies(dicom_dir, 3)]
    (images[0].parent / f".{images[0].name}.x1y2.part").write_bytes(b"half a file")
    staging = tmp_path / "outbox" / "pending" / ".staging-20260101-000000-study-x-abc123"
    staging.mkdir(parents=True)
    (staging / "half.sr.dcm").write_bytes(b"half a result")
    batch = tmp_path / "outbox" / "pending" / "20260101-000000-study-y-def456"
    batch.mkdir()
    (batch / ".result.sc.dcm.k3j4.tmp").write_bytes(b"temporary")
    caplog.set_level(logging.INFO, logger="cxrviewer.net")
    node = Node(_config(tmp_path), engine, retry_interval=30)
    with node:
        assert node.backlog_at_start == 3
        assert _wait(lambda: node.journal is not None and not node.unanswered())
    assert "backlog: 3 received image(s) were never answered" in caplog.text
    assert "removed 3 incomplete file(s) or folder(s)" in caplog.text
    assert not staging.exists() and not batch.exists() and not list(inbox.root.rglob("*.part"))
    results = _results(tmp_path / "outbox")
    assert sorted(str(r.Modality) for r in results) == ["OT", "OT", "OT", "SR", "SR", "SR"]
    referenced = {str(r.SourceImageSequence[0].ReferencedSOPInstanceUID) for r in results if r.Modality == "OT"}
    assert referenced == {str(pydicom.dcmread(p).SOPInstanceUID) for p in images}


def test_results_not_written_on_a_full_disk_are_retried(tmp_path: Path, dicom_dir: Path, engine: Any,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """The outbox disk refuses the first two attempts ("no space left on device"); the image is answered once
    space returns, without a new send or a restart."""
    real_export = node_module.export_study
    failures = {"left": 2}

    def full_disk(*args: Any, **kwargs: Any) -> list[Path]:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ExportError("cannot write result.sr.dcm: no space left on device")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(node_module, "export_study", full_disk)
    monkeypatch.setattr(node_module, "FIRST_RETRY_DELAY_S", 0.3)
    caplog.set_level(logging.INFO, logger="cxrviewer.net")
    inbox = Inbox(tmp_path / "inbox")
    node = Node(_config(tmp_path), engine, retry_interval=30)
    with node:
        path = _store(inbox, _copies(dicom_dir, 1)[0], tmp_path)
        node._enqueue(path)  # as the SCP's callback does
        assert _wait(lambda: node.journal is not None and node.journal.answered(path), timeout=30)
    assert failures["left"] == 0
    assert "no space left on device); trying again in 0 s" in caplog.text or "trying again in" in caplog.text
    assert len(_results(tmp_path / "outbox")) == 2  # one SR + one SC, nothing left over from the failures
    assert not list((tmp_path / "outbox" / "pending").glob(".staging-*"))


def test_an_answered_image_is_answered_once_and_reanalysis_gives_the_same_uids(
        tmp_path: Path, dicom_dir: Path, engine: Any, make_scp: Any, dcmtk: dict[str, str]) -> None:
    """Three sends of one instance through the network: one SR + one SC. Analysing it again after its
    journal entry is gone writes the same series and instance UIDs (the PACS replaces, never duplicates)."""
    node = Node(_config(tmp_path, allowed_ae_titles=("GOODSCU",)), engine, retry_interval=30)
    source = tmp_path / "one.dcm"
    _copies(dicom_dir, 1)[0].save_as(source, enforce_file_format=True)
    with node:
        host, port = node.address
        for _ in range(3):
            proc = subprocess.run([dcmtk["storescu"], "-aet", "GOODSCU", "-aec", "CXRVIEWER", host, str(port),
                                   str(source)], capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            time.sleep(0.3)
        [image] = Inbox(tmp_path / "inbox").files()
        assert _wait(lambda: node.journal is not None and node.journal.answered(image))
        time.sleep(1.0)  # room for any (wrong) second analysis
        first = _results(tmp_path / "outbox")
        assert sorted(str(r.Modality) for r in first) == ["OT", "SR"]
        assert node.analyse(image).status == "answered"  # asked again: no new results
        assert node.journal is not None
        node.journal.forget(image)
        again = node.analyse(image)
    assert again.status == "ok" and len(again.results) == 2
    uids = {(str(r.SeriesInstanceUID), str(r.SOPInstanceUID)) for r in first}
    assert {(str(r.SeriesInstanceUID), str(r.SOPInstanceUID)) for r in map(pydicom.dcmread, again.results)} == uids


def test_an_image_that_cannot_be_analysed_is_answered_with_a_notice(tmp_path: Path, dicom_dir: Path, engine: Any,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoding fails after C-STORE success (the header looked fine): the PACS gets an SR saying so."""
    inbox = Inbox(tmp_path / "inbox")
    inbox.ensure()
    path = _store(inbox, _copies(dicom_dir, 1)[0], tmp_path)
    node = Node(_config(tmp_path), engine, retry_interval=30)

    def broken(p: Path) -> Any:
        raise ImageLoadError(p, "JPEG 2000 pixel data could not be decoded (damaged or unsupported encoding)")

    monkeypatch.setattr(node._loader, "load", broken)
    done = node.analyse(path)
    assert done.status == "unreadable" and len(done.results) == 1
    sr = pydicom.dcmread(done.results[0])
    assert sr.Modality == "SR" and sr.StudyInstanceUID == pydicom.dcmread(path).StudyInstanceUID
    texts = [str(item.get("TextValue", "")) for item in sr.ContentSequence]
    assert sr.ConceptNameCodeSequence[0].CodeMeaning == NOTICE_TEXT
    assert any("could not be read: JPEG 2000 pixel data could not be decoded" in t for t in texts)
    assert node.journal is not None and node.journal.entry(path)["answer"] == "notice"  # type: ignore[index]


def _start_node(tmp_path: Path, port: int, tiny_card: Path, log_name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = tmp_path / log_name
    args = [sys.executable, "-m", "cxrviewer.net.cli", "--ae-title", "CXRTEST", "--port", str(port),
            "--allow-ae", "GOODSCU", "--inbox", str(tmp_path / "inbox"), "--outbox", str(tmp_path / "outbox"),
            "--model", str(tiny_card), "--threads", "1", "--retry-interval", "2"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert _wait(lambda: listening(port) or proc.poll() is not None, timeout=90)
    assert proc.poll() is None, log_path.read_text()
    return proc, log_path


@pytest.mark.slow
def test_sigkill_after_a_send_loses_no_image(tmp_path: Path, dicom_dir: Path, tiny_card: Path, scp_port: int,
                                             dcmtk: dict[str, str]) -> None:
    """The red team's crash: the node is killed right after acknowledging a batch; after a restart every
    image has exactly one answer and the log states the backlog."""
    folder = tmp_path / "send"
    folder.mkdir()
    for i, ds in enumerate(_copies(dicom_dir, 16)):
        ds.save_as(folder / f"{i:02d}.dcm", enforce_file_format=True)
    node, log1 = _start_node(tmp_path, scp_port, tiny_card, "first.log")
    try:
        proc = subprocess.run([dcmtk["storescu"], "-aet", "GOODSCU", "-aec", "CXRTEST", "127.0.0.1", str(scp_port),
                               "+sd", str(folder)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait(30)
    images = Inbox(tmp_path / "inbox").files()
    assert len(images) == 16  # every acknowledged image is on disk
    journal = Journal(tmp_path / "inbox", "")
    answered_before = sum(journal.entry(p) is not None for p in images)
    node, log2 = _start_node(tmp_path, scp_port, tiny_card, "second.log")
    try:
        assert _wait(lambda: all(journal.entry(p) is not None for p in images), timeout=180), log2.read_text()
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)
    text = log2.read_text()
    if answered_before < 16:
        assert f"backlog: {16 - answered_before} received image(s) were never answered" in text, text
    results = _results(tmp_path / "outbox")
    sources = [str(r.SourceImageSequence[0].ReferencedSOPInstanceUID) for r in results if r.Modality == "OT"]
    assert sorted(sources) == sorted({str(pydicom.dcmread(p).SOPInstanceUID) for p in images})  # one SC each
    entries = [json.loads(p.read_text()) for p in (tmp_path / "inbox" / ".journal").glob("*.json")]
    assert len(entries) == 16 and all(e["answer"] == "findings" for e in entries)
