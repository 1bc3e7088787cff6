"""Report tests: real shared DICOMs, a small real model (random weights, built here) and its predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
import torch

from cxrviewer.imaging import Image, load_image
from cxrviewer.model.inference import Engine
from cxrviewer.model.network import build_network
from cxrviewer.model.preprocess import preprocessing_record
from cxrviewer.model.weights import save_bundle

LABELS = ["No Finding", "Cardiomegaly", "Lung Opacity", "Edema", "Atelectasis", "Pneumothorax",
          "Pleural Effusion", "Emphysema"]

# Identifying values of pydicom-data_RG1_J2KI.dcm that must never appear in an anonymised export.
RG1_IDENTIFIER_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                           "OtherPatientIDs", "InstitutionName", "InstitutionalDepartmentName",
                           "ReferringPhysicianName", "StationName", "DeviceSerialNumber", "StudyID",
                           "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "StudyDate",
                           "SeriesDate", "ContentDate", "InstanceCreationDate")


@pytest.fixture(scope="session", autouse=True)
def _qt_application(qapp):
    """PDF export paints with Qt: use pytest-qt's QApplication, so that the writer's own fallback (a bare
    QGuiApplication for headless callers, tested in a subprocess) never becomes the application that
    later widget tests in the same session would get."""
    return qapp


@pytest.fixture(scope="session")
def dicom_dir(shared_data: Path) -> Path:
    return shared_data / "dicom"


@pytest.fixture(scope="session")
def udacity(dicom_dir: Path) -> Image:
    """NIH image in a DICOM wrapper: DX, 1024 x 1024, Patient ID present, no patient name."""
    return load_image(dicom_dir / "udacity_nih_test1.dcm")


@pytest.fixture(scope="session")
def rg1(dicom_dir: Path) -> Image:
    """Scanner CR (JPEG 2000, MONOCHROME1) with a full set of patient and study identifiers."""
    return load_image(dicom_dir / "pydicom-data_RG1_J2KI.dcm")


@pytest.fixture(scope="session")
def rg1_identifiers(dicom_dir: Path) -> dict[str, str]:
    """Every identifying value of the RG1 file (keyword -> value), plus the UIDs it references."""
    ds = pydicom.dcmread(dicom_dir / "pydicom-data_RG1_J2KI.dcm", stop_before_pixels=True)
    values = {k: str(ds.get(k)) for k in RG1_IDENTIFIER_KEYWORDS if str(ds.get(k, "") or "").strip()}
    values["ReferencedSOPInstanceUID"] = str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)
    for part in str(ds.PatientName).split("^"):  # name components on their own (PDF shows "Family, Given")
        values[f"PatientName:{part}"] = part
    assert {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber"} <= values.keys()
    return values


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """A real engine on a small untrained network (fixed seed): real Prediction objects, fast."""
    torch.manual_seed(0)
    net = build_network("resnet18", len(LABELS)).eval()
    card: dict[str, Any] = {
        "name": "report-test-model", "version": "0.0.1", "input_size": 128,
        "preprocessing": preprocessing_record(128), "labels": LABELS,
        "thresholds": {lab: 0.5 for lab in LABELS},
        "validation": {"per_label": {lab: {"auroc": 0.5 + 0.05 * i} for i, lab in enumerate(LABELS)},
                       "split": "patient-level fold 0 of 5"},
        "datasets": [{"name": "NIH ChestX-ray14", "license": "No restrictions on use"}],
        "intended_use": "Tests only.",
    }
    path = save_bundle(net, card, tmp_path_factory.mktemp("model") / "m.json", fp16=False)
    return Engine.from_card(path)


@pytest.fixture(scope="session")
def udacity_prediction(engine: Engine, udacity: Image) -> Any:
    pred = engine.predict(udacity)
    assert pred.gate.status == "ok" and pred.findings, pred.gate.reasons
    return pred


@pytest.fixture(scope="session")
def rg1_prediction(engine: Engine, rg1: Image) -> Any:
    return engine.predict(rg1, force=True)
