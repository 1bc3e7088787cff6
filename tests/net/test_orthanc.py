"""Against a real PACS: Orthanc (Debian package) on loopback, driven through its REST API."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest

from cxrviewer.imaging import load_image
from cxrviewer.net import DELIVERED, NOT_SENT, NodeConfig, Outbox, Received, RemoteNode, SendResult, StorageSCP
from cxrviewer.report.export import export_study

SCP_AET = "CXRTEST"
ORTHANC_AET = "ORTHANC"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
RG1 = "pydicom-data_RG1_J2KI.dcm"  # CR, JPEG 2000, MONOCHROME1
UDACITY = "udacity_nih_test1.dcm"  # DX in a Secondary Capture, uncompressed


def _remote(orthanc: Any) -> RemoteNode:
    return RemoteNode("127.0.0.1", orthanc.dicom_port, ORTHANC_AET)


def _export(engine: Any, source: Path, outbox: Outbox) -> list[Path]:
    image = load_image(source)
    prediction = engine.predict(image)
    return export_study(image, prediction, engine.card, outbox.new_batch("test"), formats={"sr", "sc"})


def _tags(orthanc: Any, instance_id: str) -> dict[str, Any]:
    return orthanc.get(f"/instances/{instance_id}/simplified-tags")


def test_orthanc_pushes_studies_to_our_scp(orthanc: Any, scp_port: int, dicom_dir: Path, tmp_path: Path,
                                           waiter: Any) -> None:
    studies = {name: orthanc.upload(dicom_dir / name)["ParentStudy"] for name in (UDACITY, RG1)}
    received: list[Received] = []
    config = NodeConfig(ae_title=SCP_AET, port=scp_port, allowed_ae_titles=(ORTHANC_AET,),
                        allowed_addresses=("127.0.0.1",), inbox=tmp_path / "inbox")
    with StorageSCP(config, on_received=received.append) as scp:
        orthanc.post("/modalities/cxr/echo", {})  # Orthanc's C-ECHO (an HTTP error would raise)
        job = orthanc.post("/modalities/cxr/store", {"Resources": list(studies.values()), "Synchronous": True})
        assert job["FailedInstancesCount"] == 0 and job["InstancesCount"] == 2
        assert waiter(lambda: len(received) == 2, timeout=10)
        assert scp.refused_count == 0

    by_class = {r.sop_class: r for r in received}
    assert set(by_class) == {"1.2.840.10008.5.1.4.1.1.1", SC_CLASS}  # the CR and the DX-in-SC
    assert len({r.path.parent for r in received}) == 2  # grouped by study
    cr = load_image(by_class["1.2.840.10008.5.1.4.1.1.1"].path)  # received JPEG 2000 still decodes
    original = load_image(dicom_dir / RG1)
    assert (cr.width, cr.height) == (original.width, original.height) == (1841, 1955)
    assert pydicom.dcmread(by_class[SC_CLASS].path).PixelData == pydicom.dcmread(dicom_dir / UDACITY).PixelData


def test_results_reach_orthanc_in_the_source_study_and_sr_passes_dsrdump(
        orthanc: Any, engine: Any, dicom_dir: Path, tmp_path: Path, dcmtk: dict[str, str]) -> None:
    source = pydicom.dcmread(dicom_dir / UDACITY, stop_before_pixels=True)
    study_id = orthanc.upload(dicom_dir / UDACITY)["ParentStudy"]
    outbox = Outbox(tmp_path / "outbox")
    files = _export(engine, dicom_dir / UDACITY, outbox)
    assert len(files) == 2 and outbox.pending() == sorted(files)

    seen: list[SendResult] = []
    report = outbox.deliver(_remote(orthanc), SCP_AET, on_result=seen.append)
    assert [(r.status, r.code) for r in report.results] == [(DELIVERED, 0), (DELIVERED, 0)]
    assert {r.sop_class for r in seen} == {SR_CLASS, SC_CLASS}
    assert outbox.pending() == [] and report.pending == 0
    assert sorted(p.name for p in (tmp_path / "outbox" / "sent").rglob("*.dcm")) == sorted(f.name for f in files)

    tags_by_id = {i["ID"]: _tags(orthanc, i["ID"]) for i in orthanc.study_instances(study_id)}
    ours = {t["SOPClassUID"]: i for i, t in tags_by_id.items() if t["SOPInstanceUID"] != source.SOPInstanceUID}
    assert len(tags_by_id) == 3 and set(ours) == {SR_CLASS, SC_CLASS}  # in the very study the image came from
    classes = ours
    for instance_id in (classes[SR_CLASS], classes[SC_CLASS]):
        tags = _tags(orthanc, instance_id)
        assert tags["StudyInstanceUID"] == source.StudyInstanceUID
        assert tags["SeriesInstanceUID"] != source.SeriesInstanceUID  # a new series each

    sr_file = tmp_path / "from-orthanc.sr.dcm"
    sr_file.write_bytes(orthanc.request("GET", f"/instances/{classes[SR_CLASS]}/file"))
    dump = subprocess.run([dcmtk["dsrdump"], str(sr_file)], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    assert not [ln for ln in dump.stderr.splitlines() if ln.startswith(("E:", "F:"))], dump.stderr
    assert "Comprehensive 3D SR" in dump.stdout and "Imaging Measurement Report" in dump.stdout
    assert any(f'"Tracking Identifier")="{label}"' in dump.stdout for label in engine.labels)


def test_remote_killed_mid_send_keeps_the_result_until_a_retry_delivers_it(
        make_orthanc: Any, engine: Any, dicom_dir: Path, tmp_path: Path) -> None:
    pacs = make_orthanc()
    outbox = Outbox(tmp_path / "outbox")
    files = _export(engine, dicom_dir / UDACITY, outbox)
    kept_bytes = {f.name: f.read_bytes() for f in files}

    def kill_after_first(result: SendResult) -> None:
        if result.delivered:
            pacs.kill()  # SIGKILL while our association is still open

    report = outbox.deliver(_remote(pacs), SCP_AET, retries=1, retry_delay=0.1, on_result=kill_after_first)
    statuses = sorted(r.status for r in report.results)
    assert statuses == [DELIVERED, NOT_SENT], report.results
    undelivered = report.undelivered[0]
    assert undelivered.message.startswith(f"could not connect to {_remote(pacs)} (not reachable")  # the retry
    left = outbox.pending()
    assert [p.name for p in left] == [undelivered.path.name] and left[0].read_bytes() == kept_bytes[left[0].name]

    pacs.start()  # same storage folder: the first object survived the crash
    again = outbox.deliver(_remote(pacs), SCP_AET, retries=0)
    assert [r.status for r in again.results] == [DELIVERED] and outbox.pending() == []
    studies = pacs.get("/studies")
    assert len(studies) == 1
    classes = sorted(_tags(pacs, i["ID"])["SOPClassUID"] for i in pacs.study_instances(studies[0]))
    assert classes == sorted([SR_CLASS, SC_CLASS])
    shutil.rmtree(tmp_path / "outbox", ignore_errors=True)


@pytest.fixture(autouse=True)
def _need_orthanc(orthanc_exe: str) -> None:
    """Every test here needs Orthanc (skip or, with CXR_REQUIRE_PACS=1, fail)."""
