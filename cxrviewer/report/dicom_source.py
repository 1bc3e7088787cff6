"""The source image's DICOM header, as the reference that derived objects (SR, SC) are built from.

DICOM export needs the source's identifiers: a PNG/JPEG-sourced image has none, and exporting it to
DICOM is refused with a clear message rather than inventing a patient and study that a PACS would
file as a new, unrelated study (a misfiled result is worse than none). Such images export to PNG,
PDF and JSON only.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from cxrviewer.report.errors import ExportError

#: Patient/study attributes derived objects copy; missing ones (Type 2) are added empty.
TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                       "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName")
REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def no_dicom_message(path: str | Path, fmt: str = "") -> str:
    kind = f"a {fmt.upper()} file" if fmt else "not a DICOM file"
    return (f"{Path(path).name}: no source DICOM identifiers ({kind}); DICOM SR and Secondary Capture "
            "can only be exported for DICOM images - choose PNG, PDF or JSON")


def read_reference(path: str | Path) -> Dataset:
    """Read the source header (no pixels) and complete missing Type 2 patient/study attributes."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise ExportError(f"{path.name}: cannot read the source DICOM header "
                          f"({type(exc).__name__})") from None
    missing = [k for k in REQUIRED_UIDS if not str(ds.get(k, "") or "").strip()]
    if missing:
        raise ExportError(f"{path.name}: the source DICOM lacks {', '.join(missing)}; cannot place "
                          "derived objects in its study")
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds
