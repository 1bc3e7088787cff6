"""Constants and the document skeleton shared by the DICOM writers (SR, notice SR and Secondary Capture)."""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from cxrviewer import __version__

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


SR = TypeVar("SR", bound=hd.sr.EnhancedSR | hd.sr.Comprehensive3DSR)


def new_sr(sr_class: type[SR], reference: Dataset, content: Any, *, series_uid: str, sop_uid: str,
           instance_number: int, description: str) -> SR:
    """An SR document of `sr_class` in the reference image's study: our series number, manufacturer and
    software version, preliminary, complete and unverified (a machine's second opinion)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PERSON_NAME_WARNING)
        sr = sr_class(
            evidence=[reference],
            content=content,
            series_instance_uid=series_uid,
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=sop_uid,
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,
            is_verified=False,
        )
    sr.SeriesDescription = description
    sr.SoftwareVersions = __version__
    return sr
