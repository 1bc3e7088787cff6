"""`export_study`: the one entry point the GUI and `cxrviewer-predict --export` call.

Formats (file names in brackets; STEM is the source file's stem, or ``ANON-<12 hex>_image-N`` when anonymised):

* ``png``  annotated image, one per image [STEM.cxr.png]
* ``json`` the `cxrviewer-predict` contract for the study [STEM.cxr.json]
* ``pdf``  report, one page per image [STEM.cxr.pdf]
* ``sr``   DICOM Comprehensive 3D SR, TID 1500, one per image, new series in the source study [STEM.sr.dcm]
* ``sc``   DICOM RGB Secondary Capture of the annotated image, new series in the source study [STEM.sc.dcm]

All files of one call are written to temporaries in the target folder and renamed into place only when
every one of them succeeded: a failed export leaves nothing behind. DICOM formats need DICOM sources:
for a PNG/JPEG image they are refused up front with an `ExportError` ("no source DICOM identifiers"),
before anything is written (see `dicom_source`). A rejected image (input gate) gets no SR: an SR
without findings could be misread as "nothing found"; its PNG, PDF page and JSON entry say why.
Anonymisation: see `anonymise`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from cxrviewer.imaging.display import to_display
from cxrviewer.labels import not_covered
from cxrviewer.model.card import ModelCard
from cxrviewer.report import json_report
from cxrviewer.report.anonymise import Pseudonymiser, mark_deidentified
from cxrviewer.report.atomic import StagedFiles, ensure_folder
from cxrviewer.report.dicom_common import derived_uid
from cxrviewer.report.dicom_sc import build_sc
from cxrviewer.report.dicom_source import no_dicom_message, read_reference
from cxrviewer.report.dicom_sr import build_sr
from cxrviewer.report.errors import ExportError
from cxrviewer.report.findings import PredictionLike, is_rejected
from cxrviewer.report.marks import ReaderMarks
from cxrviewer.report.pdf_content import ReportPage, build_page, header_rows
from cxrviewer.report.reading import top_label
from cxrviewer.report.render import DEFAULT_ALPHA, model_display_name, render, render_figure

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("png", "json", "pdf", "sr", "sc")
DEFAULT_FORMATS = frozenset(FORMATS)
DICOM_FORMATS = frozenset({"sr", "sc"})


def parse_formats(formats: str | Iterable[str]) -> frozenset[str]:
    """"png,pdf" or an iterable of names -> a validated set (ExportError for unknown names)."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen = frozenset(str(f).strip().lower() for f in items if str(f).strip())
    unknown = sorted(chosen - DEFAULT_FORMATS)
    if unknown:
        raise ExportError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if not chosen:
        raise ExportError(f"no export format chosen; choose from {', '.join(FORMATS)}")
    return chosen


def is_dicom(image: Any) -> bool:
    return str(getattr(image.meta, "source_format", "")).lower() == "dicom"


def applicable_formats(images: Any | Sequence[Any], formats: str | Iterable[str]) -> frozenset[str]:
    """The requested formats minus the DICOM ones when any image is not DICOM (for batch callers)."""
    chosen = parse_formats(formats)
    items = images if isinstance(images, list | tuple) else [images]
    return chosen if all(is_dicom(im) for im in items) else chosen - DICOM_FORMATS


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _safe_stem(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._") or "image"
    return stem[:100]


def _png_bytes(rgb: np.ndarray, name: str) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ExportError(f"{name}: PNG encoding failed")
    return buf.tobytes()


class _Study:
    """State of one export call: names, UIDs, pseudonym and the collected JSON results / PDF pages."""

    def __init__(self, images: list[Any], preds: list[Any], card: ModelCard | None, folder: Path,
                 chosen: frozenset[str], pseudo: Pseudonymiser | None, references: list[Dataset | None],
                 alpha: float, marks: list[ReaderMarks | None],
                 operating_points: Mapping[str, Any] | None = None) -> None:
        self.images, self.preds, self.card, self.folder = images, preds, card, folder
        self.operating_points = operating_points
        self.chosen, self.pseudo, self.references, self.alpha = chosen, pseudo, references, alpha
        self.marks = marks
        self.model_name = model_display_name(card)
        self.not_assessed = not_covered(list(card.labels) if card else [])
        self.results: list[dict[str, Any]] = []
        self.pages: list[ReportPage] = []
        self.series: dict[tuple[str, str], str] = {}  # (format, study UID) -> new series UID
        self.instances: dict[str, int] = {"sr": 0, "sc": 0}
        self.stems: list[str] = []
        self.step = "export"  # what is being written now, for error messages
        self.uid_seed: str | None = None
        for i, image in enumerate(images, start=1):
            stem = f"{pseudo.pseudonym}_{pseudo.image_name(i)}" if pseudo else _safe_stem(Path(image.path))
            self.stems.append(f"{stem}-{i}" if stem in self.stems else stem)
        if len(self.stems) == 1:
            self.study_stem = self.stems[0]
        else:
            self.study_stem = pseudo.pseudonym if pseudo else f"{self.stems[0]}_study{len(self.stems)}"

    def _new_uid(self, *parts: str) -> str:
        """A fresh UID, or with `uid_seed` one derived from the seed and `parts` (stable across re-exports)."""
        return derived_uid(self.uid_seed, *parts) if self.uid_seed is not None else str(hd.UID())

    def _uids(self, fmt: str, ref: Dataset) -> tuple[str, int]:
        key = (fmt, str(ref.StudyInstanceUID))
        if key not in self.series:
            self.series[key] = self._new_uid(fmt, "series", key[1])
        self.instances[fmt] += 1
        return self.series[key], self.instances[fmt]

    def image(self, staged: StagedFiles, i: int, display: np.ndarray, selected_label: str | None) -> None:
        """Stage the per-image files and collect this image's JSON result and PDF page."""
        image, pred, stem, ref = self.images[i], self.preds[i], self.stems[i], self.references[i]
        shown_name = self.pseudo.image_name(i + 1) if self.pseudo else Path(image.path).name
        usable = pred is not None and not is_rejected(pred)
        labels = {f.label for f in pred.findings} if usable else set()
        label = (selected_label if selected_label in labels else top_label(pred)) if usable else None
        rgb = None
        self.step = f"annotated image of {stem}"
        if self.chosen & {"png", "sc"}:
            rgb = render(display, pred, label=label, model_name=self.model_name, alpha=self.alpha,
                         not_assessed=self.not_assessed, annotations=self.marks[i])
        if "png" in self.chosen:
            assert rgb is not None
            data = _png_bytes(rgb, stem)
            staged.stage(self.folder / f"{stem}.cxr.png", lambda p: p.write_bytes(data))
        if "sc" in self.chosen and ref is not None:
            assert rgb is not None
            self.step = f"Secondary Capture of {stem}"
            series_uid, number = self._uids("sc", ref)
            sc = build_sc(ref, rgb, self.card, series_uid=series_uid,
                          sop_uid=self._new_uid("sc", str(ref.SOPInstanceUID)), instance_number=number, label=label)
            self._stage_dicom(staged, sc, self.folder / f"{stem}.sc.dcm")
        if "sr" in self.chosen and ref is not None:
            if usable:
                self.step = f"SR of {stem}"
                series_uid, number = self._uids("sr", ref)
                sr = build_sr(ref, pred, self.card, series_uid=series_uid,
                              sop_uid=self._new_uid("sr", str(ref.SOPInstanceUID)),
                              instance_number=number)
                self._stage_dicom(staged, sr, self.folder / f"{stem}.sr.dcm")
            else:
                log.info("%s: no model result to report, no SR written", stem)
        if "json" in self.chosen:
            where = shown_name if self.pseudo else str(image.path)
            if pred is None:
                self.results.append(json_report.error_entry(
                    where, "no model result for this image", image_size=(image.width, image.height),
                    view=image.view))
            else:
                self.results.append(json_report.result_entry(where, pred))
        if "pdf" in self.chosen:
            self.step = f"PDF page of {stem}"
            self.pages.append(self._page(i, display, pred, usable, shown_name))

    def _stage_dicom(self, staged: StagedFiles, ds: Dataset, target: Path) -> None:
        if self.pseudo is not None:
            mark_deidentified(ds)
        staged.stage(target, lambda p: ds.save_as(p, enforce_file_format=True))

    def _page(self, i: int, display: np.ndarray, pred: Any, usable: bool, shown_name: str) -> ReportPage:
        image = self.images[i]
        top = top_label(pred) if usable else None
        heat = pred.cam(top) if usable and top else None
        header = header_rows(image.meta, file_name=shown_name, anonymised=self.pseudo is not None,
                             pseudonym=self.pseudo.pseudonym if self.pseudo else None,
                             image_size=(image.width, image.height))
        marks = self.marks[i]
        page = build_page(header=header, figure=render_figure(display, heat, self.alpha, marks), map_label=top,
                          map_shown=heat is not None, prediction=pred, card=self.card,
                          not_assessed=self.not_assessed, page_label=f"Image {i + 1} of {len(self.images)}",
                          measurements=marks.describe() if marks else ())
        if self.operating_points:
            page.model.operating_points = str(self.operating_points.get("description")
                                              or f"the {self.operating_points.get('source', 'model card')}'s")
        return page

    def study_files(self, staged: StagedFiles) -> None:
        if "json" in self.chosen:
            text = json_report.dumps(json_report.contract(self.card, self.results, self.operating_points))
            staged.stage(self.folder / f"{self.study_stem}.cxr.json",
                         lambda p: p.write_text(text, encoding="utf-8"))
        if "pdf" in self.chosen:
            self.step = f"PDF {self.study_stem}"
            from cxrviewer.report.pdf_writer import write_pdf  # ReportLab loads only when a PDF is asked for

            staged.stage(self.folder / f"{self.study_stem}.cxr.pdf", lambda p: write_pdf(self.pages, p))


def export_study(
    images: Any | Sequence[Any],
    predictions: PredictionLike | None | Sequence[PredictionLike | None],
    card: ModelCard | None,
    out_dir: str | Path,
    formats: str | Iterable[str] = DEFAULT_FORMATS,
    anonymise: bool = False,
    window: Any = None,
    selected_label: str | None = None,
    *,
    invert: bool = False,
    displays: Sequence[np.ndarray | None] | None = None,
    alpha: float = DEFAULT_ALPHA,
    pseudonym: str | None = None,
    annotations: Sequence[ReaderMarks | None] | None = None,
    uid_seed: str | None = None,
    operating_points: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write the chosen formats for one study (one image or several) into `out_dir`; return the paths.

    images / predictions: one `Image` and its `Prediction` (None: no model result), or equal-length
    sequences. card: the model card (`Engine.card`; None: no model). window: a `WindowPreset` for every
    image, or one per image (None: the file's own window). selected_label: whose heat map the PNG/SC show (default: the
    first finding of the reading order, `reading.top_label`; the PDF always shows that one). displays: the
    8-bit renderings the caller already shows (used instead of window/invert). pseudonym: reuse one
    pseudonym across calls (default: a new random one per anonymised export). annotations: one per image
    (None: nothing drawn), the reader's measuring lines and lung outline drawn on the PNG, SC and PDF figure.
    uid_seed: derive the SR / SC series and instance UIDs from this seed and the source UIDs (the same
    analysis exported twice gives the same instances; the node passes its model key) instead of new ones.
    operating_points: `cxrviewer.model.site.operating_points_entry` of the engine (the card's or a site profile's
    points): carried by the JSON and named on the PDF's model lines.
    Raises `ExportError` with a plain message; nothing is left behind then.
    """
    image_list = _as_list(images)
    preds = _as_list(predictions)
    if not image_list:
        raise ExportError("nothing to export: no images")
    if len(preds) != len(image_list):
        raise ExportError(f"{len(image_list)} images but {len(preds)} predictions")
    chosen = parse_formats(formats)
    windows = list(window) if isinstance(window, list | tuple) else [window] * len(image_list)
    shown = list(displays) if displays is not None else [None] * len(image_list)
    marks: list[ReaderMarks | None] = list(annotations) if annotations is not None else [None] * len(image_list)
    if len(windows) != len(image_list) or len(shown) != len(image_list) or len(marks) != len(image_list):
        raise ExportError(f"{len(image_list)} images but {len(windows)} windows / {len(shown)} displays / "
                          f"{len(marks)} annotations")

    references: list[Dataset | None] = [None] * len(image_list)
    if chosen & DICOM_FORMATS:
        for i, image in enumerate(image_list):
            if not is_dicom(image):
                raise ExportError(no_dicom_message(image.path, str(getattr(image.meta, "source_format", ""))))
            references[i] = read_reference(image.path)
    folder = ensure_folder(out_dir)
    pseudo = (Pseudonymiser(pseudonym) if pseudonym else Pseudonymiser()) if anonymise else None
    if pseudo is not None:
        references = [pseudo.reference_dataset(r) if r is not None else None for r in references]

    if not isinstance(card, ModelCard):  # no model loaded (callers may pass an empty mapping)
        card = None
    study = _Study(image_list, preds, card, folder, chosen, pseudo, references, alpha, marks, operating_points)
    study.uid_seed = uid_seed if pseudo is None else None  # anonymised copies never reuse source-derived UIDs
    try:
        with StagedFiles() as staged:
            for i, image in enumerate(image_list):
                given = shown[i]
                display = given if given is not None else to_display(image, windows[i], invert)
                study.image(staged, i, display, selected_label)
            study.study_files(staged)
    except ExportError:
        raise
    except Exception as exc:  # the export boundary: a plain message, never a traceback
        # Only the exception type: library messages may quote header values (identifiers).
        log.debug("export of %s failed: %s", study.step, type(exc).__name__)
        raise ExportError(f"{study.step}: export failed ({type(exc).__name__}); nothing was written") from exc
    log.info("exported %d file(s) for %s", len(staged.written), study.study_stem)
    return staged.written
