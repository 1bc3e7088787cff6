"""`cxrviewer-node`'s log under hostile objects (issue 21 items 3 and 7): no element values, no floods."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.reliability.test_privacy import leaks, swallowing

REPO = Path(__file__).resolve().parents[2]


def test_hostile_objects_leave_a_short_redacted_log(tmp_path: Path, dicom_dir: Path, dcmtk: dict[str, str],
                                                   scp_port: int, waiter: object) -> None:
    folder = tmp_path / "send"
    folder.mkdir()
    uid_case = swallowing(dicom_dir / "udacity_nih_test1.dcm")
    for i in range(6):
        (folder / f"uid{i}.dcm").write_bytes(uid_case)
        (folder / f"name{i}.dcm").write_bytes(swallowing(dicom_dir / "udacity_nih_test1.dcm", b"\x10\x00\x10\x00PN"))
    assert leaks(uid_case.decode("latin-1"))
    log_path = tmp_path / "node.log"
    with open(log_path, "w") as log:
        node = subprocess.Popen([sys.executable, "-m", "cxrviewer.net.cli", "--port", str(scp_port), "--allow-ae",
                                 "GOODSCU", "--inbox", str(tmp_path / "in"), "--outbox", str(tmp_path / "out"),
                                 "--no-analysis", "--verbose"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ})
    try:
        deadline = time.monotonic() + 60
        while "ready" not in log_path.read_text() and node.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        proc = subprocess.run([dcmtk["storescu"], "-aet", "GOODSCU", "-aec", "CXRVIEWER", "-nh", "127.0.0.1",
                               str(scp_port), "+sd", str(folder)], capture_output=True, text=True, timeout=120)
        assert "Association Rejected" not in proc.stderr
        time.sleep(0.5)
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(30)
    text = log_path.read_text()
    assert text.count("received ") == 6 and "(5 repeated refusal line(s) were held back)" in text, text[-4000:]
    assert text.count("refused (status") == 1  # the same refusal six times: one line and a count
    assert not leaks(text), f"identifiers in the node log: {leaks(text)}"
    library = [line for line in text.splitlines() if " pydicom" in line or " pynetdicom" in line]
    assert all("Traceback" not in line for line in text.splitlines())
    # 12 hostile objects at DEBUG level: each kind of library complaint once, not once per element and object
    assert len(library) <= 8, f"{len(library)} library lines:\n" + "\n".join(library)
    assert len(text.splitlines()) <= 12 + 30, text[-4000:]
