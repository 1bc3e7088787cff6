"""DICOM Secondary Capture of the annotated image, in the source study as a new series."""

from __future__ import annotations

import warnings

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from cxrviewer import __version__
from cxrviewer.model.card import ModelCard
from cxrviewer.report.dicom_common import MANUFACTURER, PERSON_NAME_WARNING, SC_SERIES_NUMBER
from cxrviewer.report.render import DISCLAIMER, model_display_name

SERIES_DESCRIPTION = "cxrviewer annotated image (not for diagnostic use)"


def build_sc(reference: Dataset, rgb: np.ndarray, card: ModelCard | None, *, series_uid: str,
             sop_uid: str, instance_number: int = 1, label: str | None = None) -> hd.sc.SCImage:
    """An RGB Secondary Capture holding `rgb` exactly (uncompressed, Explicit VR Little Endian).

    `reference` gives patient and study: the source header (`dicom_source.read_reference`) or its
    anonymised stand-in (`Pseudonymiser.reference_dataset`).
    """
    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got {pixels.shape}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PERSON_NAME_WARNING)
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=reference,
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            patient_orientation=("L", "F"),  # placeholder, replaced below by the source's own value
            series_instance_uid=series_uid,
            series_number=SC_SERIES_NUMBER,
            sop_instance_uid=sop_uid,
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
    # The image part keeps the source's orientation; unknown stays empty (Type 2).
    sc.PatientOrientation = reference.get("PatientOrientation", "") or ""  # type: ignore[assignment]  # Type 2
    sc.SeriesDescription = SERIES_DESCRIPTION
    sc.SoftwareVersions = __version__
    sc.BurnedInAnnotation = "YES"  # findings and the model name, never patient identifiers
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ConversionType = "WSD"  # workstation
    what = f"heat map of {label}" if label else "findings"
    model = model_display_name(card)
    sc.DerivationDescription = f"cxrviewer annotated image: {what}; model {model}; {DISCLAIMER}"[:1024]
    source = Dataset()
    source.ReferencedSOPClassUID = reference.SOPClassUID
    source.ReferencedSOPInstanceUID = reference.SOPInstanceUID
    sc.SourceImageSequence = [source]
    return sc
