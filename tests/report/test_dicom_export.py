"""DICOM SR (TID 1500) and Secondary Capture written from real DICOMs and read back."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from cxrviewer.report.dicom_sr import label_of
from cxrviewer.report.export import export_study

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _by_suffix(paths: list[Path]) -> dict[str, Path]:
    return {"".join(p.suffixes[-2:]): p for p in paths}


@pytest.fixture(scope="module")
def plain(tmp_path_factory, udacity, udacity_prediction, engine) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("plain")
    return _by_suffix(export_study(udacity, udacity_prediction, engine.card, out, formats="png,sr,sc"))


@pytest.fixture(scope="module")
def anonymised(tmp_path_factory, rg1, rg1_prediction, engine) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("anon")
    return _by_suffix(export_study(rg1, rg1_prediction, engine.card, out, anonymise=True))


def _text_values(ds: pydicom.Dataset) -> list[str]:
    """Text and code values of every content item in an SR tree."""
    out = []
    for elem in ds.iterall():
        if elem.keyword in ("TextValue", "CodeMeaning", "PersonName", "UID"):
            out.append(str(elem.value))
    return out


def test_sr_reads_back_with_findings_probabilities_and_references(plain, udacity, udacity_prediction,
                                                                  engine) -> None:
    source = pydicom.dcmread(udacity.path, stop_before_pixels=True)
    ds = pydicom.dcmread(plain[".sr.dcm"])
    assert ds.SOPClassUID == COMPREHENSIVE_3D_SR != ComprehensiveSRStorage
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert ds.Modality == "SR"
    # Source study and patient preserved; new series and instance.
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.PatientID == source.PatientID == "2"
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.SOPInstanceUID != source.SOPInstanceUID
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID

    sr = hd.sr.srread(plain[".sr.dcm"])
    groups = sr.content.get_image_measurement_groups()
    assert len(groups) == len(engine.labels)
    seen = set()
    for group in groups:
        label = label_of(group.finding_type.scheme_designator, group.finding_type.value)
        assert group.tracking_identifier == label
        finding = udacity_prediction.finding(label)
        assert finding is not None, group.finding_type.meaning
        seen.add(label)
        values = {m.name.meaning: m.value for m in group.get_measurements()}
        assert values["Probability"] == pytest.approx(finding.probability, abs=1e-6)
        assert values["Threshold Value"] == pytest.approx(finding.threshold)
        evaluation = group.get_qualitative_evaluations()[0]  # (a second one says "near operating point")
        assert evaluation.value.meaning == ("Present" if finding.positive else "Not flagged at this operating point")
        assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
    assert seen == set(engine.labels)
    texts = _text_values(ds)
    assert any(t.startswith("cxrviewer") for t in texts)  # device observer
    assert any("report-test-model 0.0.1" in t for t in texts)  # model name and version


def test_sr_uses_standard_codes_where_dicom_has_them(plain) -> None:
    sr = hd.sr.srread(plain[".sr.dcm"])
    codes = {g.finding_type.meaning: (g.finding_type.scheme_designator, g.finding_type.value)
             for g in sr.content.get_image_measurement_groups()}
    assert codes["Pneumothorax"] == ("SCT", "36118008")
    assert codes["Pleural effusion"] == ("SCT", "60046008")
    assert codes["Lung Opacity"][0] == "99CXRV"


def test_sc_pixels_equal_the_png_in_the_source_study(plain, udacity) -> None:
    source = pydicom.dcmread(udacity.path, stop_before_pixels=True)
    ds = pydicom.dcmread(plain[".sc.dcm"])
    assert ds.SOPClassUID == SecondaryCaptureImageStorage
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
    sr_series = pydicom.dcmread(plain[".sr.dcm"]).SeriesInstanceUID
    assert ds.SeriesInstanceUID not in (source.SeriesInstanceUID, sr_series)
    assert ds.SOPInstanceUID != source.SOPInstanceUID
    assert ds.PhotometricInterpretation == "RGB" and ds.BurnedInAnnotation == "YES"
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    png = cv2.imread(str(plain[".cxr.png"]), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.array_equal(ds.pixel_array, png)
    assert np.array_equal(hd.imread(plain[".sc.dcm"]).get_frame(1), png)  # highdicom reads it too


def _identifier_hits(ds: pydicom.Dataset, identifiers: dict[str, str]) -> list[str]:
    """Every element (sequences included, file meta included, pixel data excluded) holding an identifier."""
    hits = []
    elements = list(ds.file_meta.iterall()) + list(ds.iterall())
    for elem in elements:
        if elem.keyword == "PixelData" or elem.VR == "SQ":
            continue
        text = str(elem.value)
        for name, value in identifiers.items():
            if value and value in text:
                hits.append(f"{elem.keyword or elem.tag} holds {name}")
    return hits


def test_anonymised_dicom_holds_no_source_identifier(anonymised, rg1_identifiers) -> None:
    sr = pydicom.dcmread(anonymised[".sr.dcm"])
    sc = pydicom.dcmread(anonymised[".sc.dcm"])
    for ds in (sr, sc):
        assert _identifier_hits(ds, rg1_identifiers) == []
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethod
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert re.fullmatch(r"ANON-[0-9A-F]{12}", ds.PatientID)
        assert ds.get("PatientBirthDate", "") in ("", None)
        assert ds.get("AccessionNumber", "") in ("", None)
    raw = anonymised[".sr.dcm"].read_bytes()  # the SR has no pixels: scan its raw bytes too
    assert not [k for k, v in rg1_identifiers.items() if v.encode() in raw]
    # One pseudonymous patient and study across the export, consistent references.
    assert sr.PatientID == sc.PatientID and sr.StudyInstanceUID == sc.StudyInstanceUID
    assert sr.PatientID in anonymised[".sr.dcm"].name
    referenced = hd.sr.srread(anonymised[".sr.dcm"]).content.get_image_measurement_groups()[0] \
        .source_images[0].referenced_sop_instance_uid
    assert referenced == sc.SourceImageSequence[0].ReferencedSOPInstanceUID


def test_anonymised_files_are_named_by_pseudonym_only(anonymised) -> None:
    for path in anonymised.values():
        assert "RG1" not in path.name and "pydicom" not in path.name


def test_the_identifier_scan_finds_identifiers_in_a_plain_export(tmp_path, rg1, rg1_prediction, engine,
                                                                  rg1_identifiers) -> None:
    """Positive control for the scan above: without anonymisation the same export carries them."""
    (sr_path,) = export_study(rg1, rg1_prediction, engine.card, tmp_path, formats="sr")
    hits = " ".join(_identifier_hits(pydicom.dcmread(sr_path), rg1_identifiers))
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyInstanceUID"):
        assert f"holds {keyword}" in hits
