"""What the Storage SCP accepts: SOP classes (CR, DX, Secondary Capture, SR) and transfer syntaxes."""

from __future__ import annotations

from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

VERIFICATION = UID("1.2.840.10008.1.1")

#: Image storage classes whose instances are analysed.
IMAGE_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.1": "CR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
}

#: Structured reports: stored (e.g. a PACS sending back earlier results), never analysed.
SR_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR Storage",
}

STORAGE_CLASSES: dict[str, str] = {**IMAGE_CLASSES, **SR_CLASSES}

UNCOMPRESSED: tuple[UID, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian)

#: Everything the imaging layer can decode (pydicom + pylibjpeg/openjpeg + gdcm).
IMAGE_SYNTAXES: tuple[UID, ...] = UNCOMPRESSED + (
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, RLELossless,
)


def syntaxes_for(sop_class: str) -> tuple[UID, ...]:
    return IMAGE_SYNTAXES if sop_class in IMAGE_CLASSES else UNCOMPRESSED


def class_name(sop_class: str) -> str:
    """A readable name for a SOP class UID (pydicom's dictionary, else the UID itself)."""
    if sop_class in STORAGE_CLASSES:
        return STORAGE_CLASSES[sop_class]
    name = UID(sop_class).name
    return name or str(sop_class)
