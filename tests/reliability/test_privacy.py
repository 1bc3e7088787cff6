"""Privacy: no network access, and no patient identifiers in logs, warnings, messages or CLI output.

The identifiers come from real DICOMs (shared chest films) whose Patient's Name, Patient ID, Birth Date,
Accession Number and Other Patient IDs were set to distinctive values; copies are damaged in ways that
take the error paths (truncated pixels, a corrupted VR, flipped header bytes, no pixel data, over-long
identifiers with control characters) because error paths are where identifiers tend to leak.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pydicom
import pytest

from cxrviewer.imaging import ImageLoadError, load_image, scan_paths

HERE = Path(__file__).resolve().parent
PHI = {
    "PatientName": "Zyxwvut^Qwertyuiop",
    "PatientID": "PID83920417",
    "PatientBirthDate": "19230817",
    "AccessionNumber": "ACC55512399",
    "OtherPatientIDs": "OPI77410026",
}
NEEDLES = ("Zyxwvut", "Qwertyuiop", "83920417", "19230817", "1923-08-17", "17.08.1923", "08/17/1923",
           "55512399", "77410026")


def leaks(text: str) -> list[str]:
    return [n for n in NEEDLES if n.lower() in text.lower()]


def _phi_dataset(src: Path, **extra: str) -> bytes:
    ds = pydicom.dcmread(src)
    with pydicom.config.disable_value_validation():
        for keyword, value in {**PHI, **extra}.items():
            setattr(ds, keyword, value)
        buf = io.BytesIO()
        ds.save_as(buf)
    return buf.getvalue()


def _corrupt_vr(data: bytes, tag: tuple[int, int]) -> bytes:
    """Explicit VR file: replace the VR of element `tag` by two invalid bytes."""
    needle = tag[0].to_bytes(2, "little") + tag[1].to_bytes(2, "little")
    pos = data.index(needle, 132)
    return data[: pos + 4] + b"Q\xa7" + data[pos + 6 :]


@pytest.fixture(scope="module")
def phi_folder(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    folder = tmp_path_factory.mktemp("phi") / "study"
    folder.mkdir()
    implicit = shared_data / "dicom" / "udacity_nih_test1.dcm"
    explicit = next((shared_data / "dicom").glob("siim-acr_*.dcm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        good = _phi_dataset(implicit)
        jpeg = _phi_dataset(explicit)
        (folder / "phi_ok.dcm").write_bytes(good)
        (folder / "phi_jpeg.dcm").write_bytes(jpeg)
        (folder / "phi_truncated.dcm").write_bytes(good[: len(good) // 2])
        (folder / "phi_bad_vr_name.dcm").write_bytes(_corrupt_vr(jpeg, (0x0010, 0x0010)))
        (folder / "phi_bad_vr_rows.dcm").write_bytes(_corrupt_vr(jpeg, (0x0028, 0x0010)))
        flipped = bytearray(good)
        for offset in range(200, 700, 50):
            flipped[offset] ^= 0x5A
        (folder / "phi_flipped.dcm").write_bytes(bytes(flipped))
        ds = pydicom.dcmread(io.BytesIO(good))
        del ds.PixelData
        buf = io.BytesIO()
        ds.save_as(buf)
        (folder / "phi_no_pixels.dcm").write_bytes(buf.getvalue())
        long = _phi_dataset(implicit, PatientName=PHI["PatientName"] * 5 + "\x01",
                            PatientID=PHI["PatientID"] * 7 + "\x07", AccessionNumber=PHI["AccessionNumber"] * 2)
        (folder / "phi_long_values.dcm").write_bytes(long)
    return folder


def test_identifiers_are_really_in_the_files(phi_folder: Path) -> None:
    """The needles are present in what is read (else the leak checks below would prove nothing)."""
    image = load_image(phi_folder / "phi_ok.dcm")
    assert image.meta.patient_name == PHI["PatientName"] and image.meta.patient_id == PHI["PatientID"]
    assert image.meta.patient_birth_date == PHI["PatientBirthDate"]
    assert image.meta.accession_number == PHI["AccessionNumber"]
    assert leaks((phi_folder / "phi_truncated.dcm").read_bytes().decode("latin-1"))


def test_no_identifiers_in_logs_warnings_messages_or_output(phi_folder: Path, tiny_card: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from cxrviewer.predict import main

    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in sorted(phi_folder.iterdir()):
            try:
                image = load_image(path)
                messages += image.meta.notes + [flag.message for flag in image.flags]
            except ImageLoadError as exc:
                messages.append(str(exc))
        scan = scan_paths([phi_folder])
        messages += [str(e) for e in scan.errors]
        out = tmp_path / "out.json"
        assert main(["--model", str(tiny_card), "--output", str(out), "--verbose", str(phi_folder)]) == 0
        csv_out = tmp_path / "out.csv"
        assert main(["--model", str(tiny_card), "--output", str(csv_out), "--format", "csv", str(phi_folder)]) == 0
    std = capsys.readouterr()
    results = json.loads(out.read_text())["results"]
    assert len(results) == len(list(phi_folder.iterdir()))
    assert {r["status"] for r in results} >= {"error"}  # the error paths were taken
    assert any(r["status"] in ("ok", "rejected") for r in results)
    assert len(caplog.records) >= len(results)  # something was logged (per file, at INFO)
    places = {
        "log records": caplog.text,
        "warnings": "\n".join(str(w.message) for w in caught),
        "error/notes messages": "\n".join(messages),
        "stdout/stderr": std.out + std.err,
        "JSON output": out.read_text(),
        "CSV output": csv_out.read_text(),
    }
    found = {where: leaks(text) for where, text in places.items() if leaks(text)}
    assert not found, f"patient identifiers leaked: {found}"


def test_offline_and_quiet_in_a_fresh_interpreter(phi_folder: Path, tiny_card: Path, tmp_path: Path) -> None:
    """Network trapped from the first import: every module, load, scan and the CLI at DEBUG log level."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen",
               PYTHONPATH=str(HERE.parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, str(HERE / "offline_probe.py"), "--model", str(tiny_card), "--images", str(phi_folder),
         "--out", str(tmp_path / "probe.json")],
        capture_output=True, text=True, timeout=240, env=env, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["guard_live"], "the network guard did not catch a test connection"
    assert report["attempts"] == [], "network access attempted:\n" + "\n".join(report["attempts"])
    assert not report["import_errors"], report["import_errors"]
    assert report["modules"] >= 40
    n = len(list(phi_folder.iterdir()))
    assert report["loaded"] + report["refused"] == n and report["loaded"] >= 2 and report["refused"] >= 2
    assert report["predict_rc"] == 0 and len(report["predict_statuses"]) == n
    # the CLI decodes in a helper process, which runs this script's top level (the guard) first: a trapped
    # connection there would turn a loadable file into an error
    assert report["predict_statuses"].count("error") == report["refused"]
    assert "DEBUG" in proc.stderr  # the log really ran at DEBUG level
    assert not leaks(proc.stderr), f"identifiers in the DEBUG log: {leaks(proc.stderr)}"
    assert not leaks(proc.stdout)


def swallowing(src: Path, element: bytes = b"\x08\x00\x18\x00UI") -> bytes:
    """Explicit VR copy of `src` (identifiers set, a new SOP Instance UID) whose `element` (tag + VR bytes; default
    the SOP Instance UID) has a length field that swallows the elements up to and including the patient's birth
    date (accession number, name, ID): pydicom's "Invalid value for VR ..." message then quotes them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(src)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        for keyword, value in PHI.items():
            setattr(ds, keyword, value)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    data = bytearray(buf.getvalue())
    start = data.index(element, 132)
    end = data.index(b"\x10\x00\x30\x00DA", start) + 8 + len(PHI["PatientBirthDate"])
    data[start + 6: start + 8] = (end - (start + 8)).to_bytes(2, "little")
    return bytes(data)


def test_library_warnings_are_redacted_and_rate_limited_in_the_cli(shared_data: Path, tiny_card: Path,
                                                                  tmp_path: Path) -> None:
    """The construction that leaked name, ID, birth date and accession number through pydicom's warning (and
    its logger, in the CLI and its decoding helper), 12 times: what reaches stderr is redacted, a few lines."""
    data = swallowing(shared_data / "dicom" / "udacity_nih_test1.dcm")
    assert leaks(data.decode("latin-1"))
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(12):
        (folder / f"swallow{i:02d}.dcm").write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "cxrviewer.predict", "--model", str(tiny_card), "--output",
                           str(tmp_path / "out.json"), str(folder)], capture_output=True, text=True, timeout=240,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not leaks(proc.stderr + proc.stdout), f"identifiers on stderr: {leaks(proc.stderr)}"
    lines = [line for line in proc.stderr.splitlines() if "Invalid value for VR UI" in line]
    assert lines and all("<value>" in line for line in lines)  # the warning is still there, without the value
    assert len(lines) <= 4, f"{len(lines)} copies of one library warning for 12 files:\n" + proc.stderr[-2000:]
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    assert len(results) == 12


def test_redaction_and_rate_limit() -> None:
    from cxrviewer.imaging.log_privacy import RateLimiter, redact

    text = "Invalid value for VR PN: b'Zyxwvut^Qwertyuiop\\x00' and \"PID83920417\"\nnext line"
    clean = redact(text)
    assert not leaks(clean) and "\n" not in clean and clean.startswith("Invalid value for VR PN: <value>")
    limiter = RateLimiter(window_s=60, budget=3)
    assert limiter.admit("bad length 12", now=0.0) == "bad length 12"
    assert limiter.admit("bad length 99", now=1.0) is None  # same message, other number: held back
    assert limiter.admit("other", now=2.0) == "other"
    assert limiter.admit("third", now=3.0) == "third"
    assert limiter.admit("fourth", now=4.0) is None  # budget spent
    assert limiter.admit("bad length 7", now=61.0) == "bad length 7 (1 similar message(s) held back)"
