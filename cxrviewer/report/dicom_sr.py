"""DICOM Structured Report of a prediction: TID 1500 Measurement Report in a Comprehensive 3D SR.

Content: the device observer (cxrviewer, with the model's name and version), the procedure (chest
radiograph) and one TID 1501 image-level measurement group per finding of the model, each with

* finding type: the observation (SNOMED CT where the DICOM standard's code tables name it exactly,
  otherwise the local coding scheme ``99CXRV``),
* a qualitative evaluation at the model's operating point: ``Present`` (SNOMED CT) for a flagged finding;
  otherwise a local code, never ``Absent``: ``Not flagged at this operating point`` (CXRNF), ``Check:
  triage point, not a finding`` (CXRCHK) or ``Not asserted: another finding is flagged`` (CXRNA),
* measurements: ``Probability`` (DCM 122157), the operating point as ``Threshold Value`` (DCM 122411) and,
  where the card records it, the label's validation ``Sensitivity at operating point`` (CXRSENS), unit ``1``
  (UCUM, no units),
* ``Near operating point`` (CXRNEAR) = ``Yes`` when the probability is within the near-cutoff band,
* ``Film unlike the training films`` (CXRABRD) = ``Yes`` in every group when the abroad check warned
  (`cxrviewer.model.abroad`: edge-enhanced processing, lines or tubes, ...; findings less reliable),
* the algorithm identification (model name and version; as its parameters the weights' SHA-256, the model
  card's SHA-256 and whether the card is sealed, or the "modified model card" warning) and the source image
  reference.

Groups follow the viewer's reading order (`cxrviewer.report.reading`), "No Finding" first as the summary.
Observations the model does not cover are not written (absence of a group never means "absent").
Patient and study attributes come from the source image (or its anonymised stand-in); the SR gets a
new series and SOP instance UID.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from cxrviewer import __version__
from cxrviewer.labels import KNOWN_LABELS
from cxrviewer.model.card import MODIFIED_CARD, ModelCard
from cxrviewer.report import reading
from cxrviewer.report.dicom_common import MANUFACTURER, new_sr
from cxrviewer.report.findings import FindingLike, PredictionLike

LOCAL_SCHEME = "99CXRV"
SERIES_DESCRIPTION = "cxrviewer AI findings (not for diagnostic use)"
#: The series description of an SR made with a card that does not match its seal (at most 64 characters).
MODIFIED_SERIES_DESCRIPTION = f"cxrviewer AI ({MODIFIED_CARD}; not for diagnostic use)"

#: Local codes of the qualitative evaluations and the sensitivity (never "Absent": see the module docstring).
NOT_FLAGGED = hd.sr.CodedConcept("CXRNF", LOCAL_SCHEME, "Not flagged at this operating point")
CHECK = hd.sr.CodedConcept("CXRCHK", LOCAL_SCHEME, "Check: triage point, not a finding")
NOT_ASSERTED = hd.sr.CodedConcept("CXRNA", LOCAL_SCHEME, "Not asserted: another finding is flagged")
SENSITIVITY = hd.sr.CodedConcept("CXRSENS", LOCAL_SCHEME, "Sensitivity at operating point")
NEAR_CUTOFF = hd.sr.CodedConcept("CXRNEAR", LOCAL_SCHEME, "Near operating point")
ABROAD = hd.sr.CodedConcept("CXRABRD", LOCAL_SCHEME, "Film unlike the training films")

#: SNOMED CT concepts from the DICOM standard's own code tables (pydicom.sr.codedict).
_SCT_FINDINGS = {
    "Cardiomegaly": codes.SCT.Cardiomegaly,
    "Pleural Effusion": codes.SCT.PleuralEffusion,
    "Pneumothorax": codes.SCT.Pneumothorax,
    "Edema": codes.SCT.PulmonaryEdema,
}

PROCEDURE = codes.SCT.ChestImaging  # 413815006 "Chest imaging"


def finding_code(label: str) -> hd.sr.CodedConcept:
    """The coded concept for one of our labels (stable local code values CXR01.. in vocabulary order)."""
    code = _SCT_FINDINGS.get(label)
    if code is not None:
        return hd.sr.CodedConcept(code.value, code.scheme_designator, code.meaning)
    if label in KNOWN_LABELS:
        return hd.sr.CodedConcept(f"CXR{KNOWN_LABELS.index(label) + 1:02d}", LOCAL_SCHEME, label)
    raise ValueError(f"no code for label {label!r}")


def label_of(scheme: str, value: str) -> str | None:
    """Our label for a finding code written by `finding_code` (None for codes we do not write)."""
    for label in KNOWN_LABELS:
        code = finding_code(label)
        if (code.scheme_designator, code.value) == (scheme, value):
            return label
    return None


def device_uid(model_name: str, model_version: str) -> str:
    """A stable UID for the observing device: cxrviewer running this model."""
    return generate_uid(entropy_srcs=["cxrviewer", model_name, model_version])


def _name_version(card: ModelCard | None) -> tuple[str, str]:
    if not isinstance(card, ModelCard):
        return "unnamed model", "unknown"
    return card.name or "unnamed model", card.version or "unknown"


def algorithm_parameters(card: ModelCard | None) -> list[str]:
    """The weights' and the card's SHA-256 and the card's state (with the "modified model card" warning)."""
    if not isinstance(card, ModelCard):
        return []
    return [f"weights SHA-256 {card.weights.sha256}",
            f"model card SHA-256 {card.card_sha256} ({card.card_status})",
            *([note] if (note := card.integrity_note()) else [])]


def evaluation(finding: FindingLike) -> hd.sr.CodedConcept:
    """The coded result of one label at its operating point (see the module docstring)."""
    word = reading.status_word(finding)
    if word == reading.FLAGGED:
        return hd.sr.CodedConcept(codes.SCT.Present.value, "SCT", codes.SCT.Present.meaning)
    return {reading.CHECK: CHECK, reading.NOT_ASSERTED: NOT_ASSERTED}.get(word, NOT_FLAGGED)


def _report_order(prediction: PredictionLike) -> list[FindingLike]:
    """"No Finding" (the summary) first, then the abnormalities in reading order."""
    normal = reading.no_finding(prediction.findings)
    return ([normal] if normal is not None else []) + reading.reading_order(prediction.findings)


def _algorithm(card: ModelCard | None) -> hd.sr.AlgorithmIdentification:
    name, version = _name_version(card)
    return hd.sr.AlgorithmIdentification(name=name[:64], version=version[:64],
                                         parameters=algorithm_parameters(card) or None, manufacturer=MANUFACTURER)


def build_sr(reference: Dataset, prediction: PredictionLike, card: ModelCard | None, *,
             series_uid: str, sop_uid: str, instance_number: int = 1) -> hd.sr.Comprehensive3DSR:
    """The SR for one image. `reference` is the source image's dataset (pixels not needed), or its
    anonymised stand-in from `Pseudonymiser.reference_dataset`."""
    name, version = _name_version(card)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(name, version), name=f"cxrviewer {__version__}"[:64],
            manufacturer_name=MANUFACTURER, model_name=f"{name} {version}"[:64]),
    )
    algorithm = _algorithm(card)
    frames = [1] if int(reference.get("NumberOfFrames", 1) or 1) > 1 else None  # the viewer shows frame 1
    source = hd.sr.SourceImageForMeasurementGroup.from_source_image(reference,
                                                                    referenced_frame_numbers=frames)
    abroad = getattr(prediction.gate, "abroad", None)
    abroad_warns = bool(abroad is not None and abroad.warns)
    groups = []
    for finding in _report_order(prediction):
        concept = finding_code(finding.label)
        measurements = [
            hd.sr.Measurement(name=codes.DCM.Probability, value=float(finding.probability),
                              unit=codes.UCUM.NoUnits, algorithm_id=algorithm),
            hd.sr.Measurement(name=codes.DCM.ThresholdValue, value=float(finding.threshold),
                              unit=codes.UCUM.NoUnits, algorithm_id=algorithm),
        ]
        sensitivity = reading.sensitivity_at(card, finding)
        if sensitivity is not None:
            measurements.append(hd.sr.Measurement(name=SENSITIVITY, value=sensitivity, unit=codes.UCUM.NoUnits,
                                                  algorithm_id=algorithm))
        evaluations = [hd.sr.QualitativeEvaluation(name=concept, value=evaluation(finding))]
        if reading.near_cutoff(finding):
            evaluations.append(hd.sr.QualitativeEvaluation(name=NEAR_CUTOFF, value=codes.SCT.Yes))
        if abroad_warns:
            evaluations.append(hd.sr.QualitativeEvaluation(name=ABROAD, value=codes.SCT.Yes))
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=finding.label[:64]),
            finding_type=concept,
            algorithm_id=algorithm,
            source_images=[source],
            measurements=measurements,
            qualitative_evaluations=evaluations,
        ))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE,
        imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport,
    )
    modified = isinstance(card, ModelCard) and card.is_modified
    return new_sr(hd.sr.Comprehensive3DSR, reference, report, series_uid=series_uid, sop_uid=sop_uid,
                  instance_number=instance_number,
                  description=MODIFIED_SERIES_DESCRIPTION if modified else SERIES_DESCRIPTION)
