"""Constants shared by the DICOM writers (SR and Secondary Capture)."""

from __future__ import annotations

from pydicom.uid import generate_uid

MANUFACTURER = "cxrviewer project"
SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902
#: highdicom warns about single-component person names; source names are copied as they are.
PERSON_NAME_WARNING = ".*unlikely to represent the intended person name"
#: The UID root of the instances we write (highdicom's, which `highdicom.UID()` uses too).
UID_ROOT = "1.2.826.0.1.3680043.10.511.3."


def derived_uid(seed: str, *parts: str) -> str:
    """A UID that is the same for the same `seed` and `parts` (e.g. model and source SOP Instance UID), so
    that results written twice for one analysis replace each other instead of piling up."""
    return str(generate_uid(prefix=UID_ROOT, entropy_srcs=[seed, *parts]))
