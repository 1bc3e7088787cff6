"""Flags for inputs the model should not be trusted on, computed from header values only.

Flags are warnings, not errors: a flagged image still opens. They come from the DICOM header (raster files
carry no such information and get no flags).
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from cxrviewer.imaging.image import Flag, ImageFlag, ImageMeta

RADIOGRAPH_MODALITIES = {"CR", "DX"}

# Body Part Examined values (and common local-language/free-text variants) that mean the chest.
_CHEST_WORDS = ("CHEST", "THORAX", "THORAC", "TORAX", "TORACE", "LUNG", "BRUST", "POITRINE", "PECHO", "PETTO")

FRONTAL_VIEWS = {"PA", "AP"}
LATERAL_VIEWS = {"LL", "RL", "LAT", "LATERAL", "RLD", "LLD"}  # same sets as Image.view

# PS3.3 C.7.3.1.1.2 Patient Position defined terms.
PATIENT_POSITIONS = {
    "HFP", "HFS", "HFDR", "HFDL", "FFDR", "FFDL", "FFP", "FFS",
    "LFP", "LFS", "RFP", "RFS", "AFDR", "AFDL", "PFDR", "PFDL",
}  # fmt: skip


def view_class(view_position: str) -> str:
    """ "frontal", "lateral" or "unknown" for a view position value (the rule of `Image.view`)."""
    vp = view_position.strip().upper()
    if vp in FRONTAL_VIEWS:
        return "frontal"
    if vp in LATERAL_VIEWS:
        return "lateral"
    return "unknown"


def is_chest(body_part: str) -> bool:
    bp = body_part.strip().upper()
    return any(word in bp for word in _CHEST_WORDS)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip().upper()


def compute_flags(meta: ImageMeta, ds: Dataset | None = None) -> list[ImageFlag]:
    """Flags for one image from its metadata and (for DICOM) its header."""
    flags: list[ImageFlag] = []
    if meta.modality and meta.modality.upper() not in RADIOGRAPH_MODALITIES:
        message = f"Modality is {meta.modality}, not a radiograph (CR/DX): findings unreliable"
        flags.append(ImageFlag(Flag.MODALITY, message))
    if meta.body_part and not is_chest(meta.body_part):
        message = f"Body part is {meta.body_part}, not chest: findings unreliable"
        flags.append(ImageFlag(Flag.BODY_PART, message))
    if view_class(meta.view_position) == "lateral":
        flags.append(ImageFlag(Flag.LATERAL, "Lateral view: the model reads frontal (PA/AP) views only"))
    if ds is not None:
        flags.extend(_contradictions(ds))
    return flags


def _contradictions(ds: Dataset) -> list[ImageFlag]:
    out: list[ImageFlag] = []
    patient_position = _text(ds, "PatientPosition")
    view_position = _text(ds, "ViewPosition")
    if patient_position and patient_position not in PATIENT_POSITIONS | FRONTAL_VIEWS | LATERAL_VIEWS:
        out.append(
            ImageFlag(Flag.CONTRADICTORY, f"Patient Position '{patient_position}' is not a valid value")
        )
    # Some writers put PA/AP into Patient Position; that must agree with View Position when both are given.
    if (
        view_position
        and patient_position in FRONTAL_VIEWS | LATERAL_VIEWS
        and view_class(view_position) != "unknown"
        and patient_position != view_position
    ):
        out.append(
            ImageFlag(
                Flag.CONTRADICTORY,
                f"View Position {view_position} contradicts Patient Position {patient_position}",
            )
        )
    code_view = view_from_code(ds)
    if code_view and view_position and view_class(code_view) != view_class(view_position) != "unknown":
        message = f"View Position {view_position} contradicts the view code ({code_view})"
        out.append(ImageFlag(Flag.CONTRADICTORY, message))
    image_lat, lat = _text(ds, "ImageLaterality"), _text(ds, "Laterality")
    if image_lat in {"L", "R"} and lat in {"L", "R"} and image_lat != lat:
        message = f"Image Laterality {image_lat} contradicts Laterality {lat}"
        out.append(ImageFlag(Flag.CONTRADICTORY, message))
    return out


def view_from_code(ds: Dataset) -> str:
    """A view position ("PA", "AP", "LL", "RL", "LATERAL") from View Code Sequence, or ""."""
    seq = ds.get("ViewCodeSequence")
    if not seq:
        return ""
    meaning = str(seq[0].get("CodeMeaning", "")).lower()
    if "postero-anterior" in meaning or "posteroanterior" in meaning or meaning == "pa":
        return "PA"
    if "antero-posterior" in meaning or "anteroposterior" in meaning or meaning == "ap":
        return "AP"
    if "lateral" in meaning:
        if meaning.startswith("left"):
            return "LL"
        if meaning.startswith("right"):
            return "RL"
        return "LATERAL"
    return ""
