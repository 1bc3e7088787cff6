"""A DICOM SR notice for an image the node received but could not analyse.

A PACS that sent an image and got C-STORE success expects an answer. When the image cannot be decoded or
the input check rejects it, the node sends this Enhanced SR instead of findings: a container "cxrviewer
notice: image not analysed" holding the reason (plain text, never patient data), the model (name,
version, weights and card SHA-256) and the not-for-diagnostic-use statement, in the image's study as a
new series (same series number as the findings SR), referencing the image.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from cxrviewer.model.card import ModelCard
from cxrviewer.report.dicom_common import new_sr
from cxrviewer.report.dicom_sr import LOCAL_SCHEME, algorithm_parameters
from cxrviewer.report.render import DISCLAIMER, model_display_name

TITLE = hd.sr.CodedConcept("CXRNOTICE", LOCAL_SCHEME, "cxrviewer notice: image not analysed")
REASON = hd.sr.CodedConcept("CXRREASON", LOCAL_SCHEME, "Reason the image was not analysed")
MODEL = hd.sr.CodedConcept("CXRMODEL", LOCAL_SCHEME, "Model")
SERIES_DESCRIPTION = "cxrviewer notice: not analysed (not for diagnostic use)"


def _text(name: hd.sr.CodedConcept | Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(name=name, value=value[:1024],
                                 relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)


def build_notice_sr(reference: Dataset, reason: str, card: ModelCard | None, *, series_uid: str, sop_uid: str,
                    instance_number: int = 1) -> hd.sr.EnhancedSR:
    """The notice for the image whose header is `reference` (pixels not needed); `reason` is one sentence."""
    container = hd.sr.ContainerContentItem(name=TITLE)
    model = "; ".join(part for part in [model_display_name(card), *algorithm_parameters(card)] if part) or "no model"
    container.ContentSequence = hd.sr.ContentSequence([
        _text(REASON, reason),
        _text(MODEL, model),
        _text(codes.DCM.Comment, f"No findings were produced for this image. {DISCLAIMER}"),
    ])
    return new_sr(hd.sr.EnhancedSR, reference, container, series_uid=series_uid, sop_uid=sop_uid,
                  instance_number=instance_number, description=SERIES_DESCRIPTION)
