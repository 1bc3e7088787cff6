"""`cxrviewer-node` end to end: Orthanc pushes a study, the node analyses it and sends SR + SC back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest

from cxrviewer.net.cli import main
from tests.net.conftest import listening

REPO = Path(__file__).resolve().parents[2]
SOURCE = "udacity_nih_test2.dcm"  # a study no other test sends to the shared Orthanc
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def test_node_receives_analyses_and_sends_back(orthanc: Any, scp_port: int, tiny_card: Path, dicom_dir: Path,
                                               tmp_path: Path, waiter: Any) -> None:
    source = pydicom.dcmread(dicom_dir / SOURCE, stop_before_pixels=True)
    study_id = orthanc.upload(dicom_dir / SOURCE)["ParentStudy"]
    log_path = tmp_path / "node.log"
    args = [sys.executable, "-m", "cxrviewer.net.cli", "--ae-title", "CXRTEST", "--port", str(scp_port),
            "--allow-ae", "ORTHANC", "--allow-address", "127.0.0.1",
            "--remote", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}", "--inbox", str(tmp_path / "inbox"),
            "--outbox", str(tmp_path / "outbox"), "--model", str(tiny_card), "--threads", "1",
            "--timeout", "10", "--retry-interval", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log_path, "w") as log:
        node = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        assert waiter(lambda: listening(scp_port) or node.poll() is not None, timeout=60, interval=0.2)
        assert node.poll() is None, log_path.read_text()
        job = orthanc.post("/modalities/cxr/store", {"Resources": [study_id], "Synchronous": True})
        assert job["FailedInstancesCount"] == 0

        def results_in_orthanc() -> bool:
            return len(orthanc.study_instances(study_id)) == 3

        assert waiter(results_in_orthanc, timeout=60, interval=0.3), log_path.read_text()
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            code = node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
            raise
    text = log_path.read_text()
    assert code == 0, text
    tags = [orthanc.get(f"/instances/{i['ID']}/simplified-tags") for i in orthanc.study_instances(study_id)]
    new = [t for t in tags if t["SOPInstanceUID"] != source.SOPInstanceUID]
    assert sorted(t["SOPClassUID"] for t in new) == sorted([SR_CLASS, SC_CLASS])
    assert all(t["StudyInstanceUID"] == source.StudyInstanceUID for t in new)

    assert "analysed:" in text and "2 delivered, 0 waiting in the outbox" in text
    assert not list((tmp_path / "outbox" / "pending").rglob("*.dcm"))
    assert len(list((tmp_path / "inbox").rglob("*.dcm"))) == 1
    for value in (source.PatientID, source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID,
                  source.get("AccessionNumber"), str(source.get("PatientName", ""))):
        if value and len(str(value)) > 3:  # short values (PatientID "1") appear in any log by chance
            assert str(value) not in text, f"identifier in the node's log: {value}"


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--port", "0", "--inbox", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "cxrviewer-node: error: no calling AE title allowed: " \
                                              "give --allow-ae AE (the PACS's AE title)"
    assert main(["--allow-ae", "PACS", "--remote", "pacs:104"]) == 2
    assert "AE_TITLE@HOST:PORT" in capsys.readouterr().err
    bad = tmp_path / "node.json"
    bad.write_text('{"port": 11112, "allowed_ae_titels": ["PACS"]}')
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "node.json: unknown setting(s) allowed_ae_titels" in err and "Traceback" not in err
