"""Anonymised export: what is removed, what replaces it, and how that is recorded.

Choice (documented for users in the export dialog and README):

* DICOM (SR, Secondary Capture) follows the PS3.15 Basic Application Confidentiality Profile by
  **whitelist**: the new objects are built from a reference dataset that holds only non-identifying
  image attributes (SOP class, modality, body part, view, laterality, image geometry). Patient name and
  ID become one random pseudonym per export (``ANON-`` + 12 hex digits, from `secrets`; nothing that
  could reverse it is stored); birth date, sex, age, accession number, study ID, study date/time,
  referring physician, institution, device and every free-text attribute are absent or empty; every
  UID (study, series, SOP instance, frame of reference) is replaced by a new one, consistently within
  the export, so the SR's reference to its source image points at the source's pseudonymous UID.
  PatientIdentityRemoved = YES, DeidentificationMethod and the code 113100 (Basic Application
  Confidentiality Profile) record this. No retention option is claimed.
* PNG never contains identifiers (only findings and the model are burned in). JSON replaces the file
  path by ``image-N``. The PDF header shows the pseudonym instead of name, ID, birth date, accession,
  study date, description and file name.
* Output file names in an anonymised export are built from the pseudonym, never from the source file
  name (names such as a SOP Instance UID or a patient name can identify).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid

#: Short text for DeidentificationMethod (VR LO: at most 64 characters).
DEIDENTIFICATION_METHOD = "cxrviewer: basic profile, pseudonymised, UIDs replaced"

#: Attributes copied from the source image into an anonymised reference dataset (none identifies).
KEPT_ATTRIBUTES: tuple[str, ...] = (
    "SOPClassUID", "Modality", "BodyPartExamined", "ViewPosition", "ImageLaterality", "Laterality",
    "PatientOrientation", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
)

#: Patient/study attributes that derived objects copy from their reference; emptied when anonymising.
EMPTIED_ATTRIBUTES: tuple[str, ...] = (
    "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
    "ReferringPhysicianName",
)

#: UIDs of the source that are replaced by new ones.
REPLACED_UIDS: tuple[str, ...] = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
)


def new_pseudonym() -> str:
    """A random pseudonymous patient ID (no link to the real one)."""
    return "ANON-" + secrets.token_hex(6).upper()


@dataclass
class Pseudonymiser:
    """One anonymised export: its pseudonym and a consistent old -> new UID mapping."""

    pseudonym: str = field(default_factory=new_pseudonym)
    _uids: dict[str, str] = field(default_factory=dict, repr=False)

    def uid(self, original: str) -> str:
        """The replacement for a source UID (the same one every time within this export)."""
        key = str(original)
        if key not in self._uids:
            self._uids[key] = generate_uid()
        return self._uids[key]

    def reference_dataset(self, source: Dataset) -> Dataset:
        """A dataset standing for the source image with no identifier left (see the module docstring)."""
        ref = Dataset()
        for keyword in KEPT_ATTRIBUTES:
            if keyword in source:
                ref[keyword] = source[keyword]
        for keyword in REPLACED_UIDS:
            value = source.get(keyword)
            if value:
                setattr(ref, keyword, self.uid(value))
        ref.PatientName = self.pseudonym + "^"  # family-name component only
        ref.PatientID = self.pseudonym
        for keyword in EMPTIED_ATTRIBUTES:
            setattr(ref, keyword, "")
        mark_deidentified(ref)
        return ref

    def image_name(self, index: int) -> str:
        """The name that stands for the index-th image (1-based) in JSON and file names."""
        return f"image-{index}"


def mark_deidentified(ds: Dataset) -> None:
    """Record the de-identification in a dataset (Patient Identity Removed, method and its code)."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    code = Dataset()
    code.CodeValue = "113100"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    ds.DeidentificationMethodCodeSequence = DicomSequence([code])
