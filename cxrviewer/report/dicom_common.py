"""Constants shared by the DICOM writers (SR and Secondary Capture)."""

from __future__ import annotations

MANUFACTURER = "cxrviewer project"
SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902
#: highdicom warns about single-component person names; source names are copied as they are.
PERSON_NAME_WARNING = ".*unlikely to represent the intended person name"
