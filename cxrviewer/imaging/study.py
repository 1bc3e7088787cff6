"""Scanning files and folders for images and grouping them into Study -> Series -> image references.

Scanning reads headers only (DICOM with `stop_before_pixels`, raster files through their header), never pixel
data. Folders are walked recursively; symlinked folders are followed once (loops are cut); hidden entries and
DICOMDIR files are skipped; files that are not images are skipped silently, unless they claim to be one by
their extension (or were named explicitly), in which case they are reported as errors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from cxrviewer.imaging.dicom import check_decodable
from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.imaging.flags import compute_flags, view_class
from cxrviewer.imaging.formats import (
    MAX_SIDE,
    NON_IMAGE_SOP_PREFIXES,
    FileKind,
    has_image_extension,
    is_dicomdir,
    sniff,
)
from cxrviewer.imaging.header import frame_count, meta_from_dataset, read_header
from cxrviewer.imaging.image import Image, ImageFlag, ImageMeta
from cxrviewer.imaging.loader import detach
from cxrviewer.imaging.raster import raster_size

log = logging.getLogger(__name__)

_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class ImageRef:
    """One image file found by a scan: where it is and what its header says (pixels not read)."""

    path: Path
    meta: ImageMeta
    flags: list[ImageFlag] = field(default_factory=list)
    width: int = 0
    height: int = 0
    frames: int = 1
    instance_number: int | None = None
    series_number: int | None = None
    series_description: str = ""

    @property
    def view(self) -> str:
        """ "frontal", "lateral" or "unknown" (same rule as `Image.view`)."""
        return view_class(self.meta.view_position)

    def load(self) -> Image:
        """Decode the image (raises ImageLoadError)."""
        from cxrviewer.imaging.loader import load_image

        return load_image(self.path)


@dataclass
class Series:
    """Images sharing a SeriesInstanceUID (a raster file is a series of one)."""

    uid: str
    number: int | None = None
    description: str = ""
    modality: str = ""
    images: list[ImageRef] = field(default_factory=list)


@dataclass
class Study:
    """Images sharing a StudyInstanceUID (a raster file is a study of one). Patient fields are PHI."""

    key: str  # unique within a scan: the Study Instance UID, or "file:<path>" for a raster/UID-less file
    uid: str = ""
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""  # YYYYMMDD as in DICOM, "" if unknown
    description: str = ""
    series: list[Series] = field(default_factory=list)

    @property
    def images(self) -> list[ImageRef]:
        return [ref for s in self.series for ref in s.images]

    @property
    def modality(self) -> str:
        """The modalities of the series, e.g. "CR" or "CR/DX" ("" for raster files)."""
        return "/".join(dict.fromkeys(s.modality for s in self.series if s.modality))

    @property
    def is_raster(self) -> bool:
        return all(ref.meta.source_format != "dicom" for ref in self.images)

    @property
    def display_key(self) -> str:
        """A short label for a study list (no patient identifiers): date, modality, description.

        Raster files (and DICOMs without any of these) show their file name.
        """
        if self.is_raster or not (self.study_date or self.description or self.modality):
            return self.images[0].path.name if self.images else self.key
        date = self.study_date.replace(".", "")  # ACR-NEMA style YYYY.MM.DD
        if len(date) == 8 and date.isdigit():
            date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
        parts = [date or "(no date)", self.modality or "?", self.description or "(no description)"]
        return " · ".join(parts)

    @property
    def sort_key(self) -> tuple[str, str, str]:
        return (self.study_date, self.display_key, self.key)


@dataclass
class ScanResult:
    studies: list[Study] = field(default_factory=list)
    errors: list[ImageLoadError] = field(default_factory=list)

    @property
    def image_count(self) -> int:
        return sum(len(s.images) for s in self.studies)


def scan_paths(paths: Iterable[str | Path]) -> ScanResult:
    """Find the images in files and folders (recursively) and group them into studies; never raises."""
    refs: list[ImageRef] = []
    errors: list[ImageLoadError] = []
    seen_files: set[tuple[int, int]] = set()
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                candidates: Iterator[tuple[Path, bool]] = ((p, False) for p in _walk(path))
            elif path.exists():
                candidates = iter([(path, True)])
            else:
                errors.append(ImageLoadError(path, "file or folder not found"))
                continue
            for file, explicit in candidates:
                try:
                    st = file.stat()
                except OSError as exc:
                    errors.append(_unreadable(file, exc))
                    continue
                if (st.st_dev, st.st_ino) in seen_files:
                    continue
                seen_files.add((st.st_dev, st.st_ino))
                try:
                    ref = _examine(file, explicit)
                except ImageLoadError as exc:
                    errors.append(detach(exc))  # its frames would keep the whole data set alive
                    continue
                except MemoryError:
                    errors.append(ImageLoadError(file, "not enough memory to read the header"))
                    continue
                except OSError as exc:
                    errors.append(_unreadable(file, exc))
                    continue
                except Exception:  # one bad file must not stop the scan
                    log.debug("scan failed on %s", file.name, exc_info=True)
                    errors.append(ImageLoadError(file, "could not be read (damaged file or unsupported encoding)"))
                    continue
                if ref is not None:
                    refs.append(ref)
        except OSError as exc:
            errors.append(ImageLoadError(path, f"could not be read ({exc.strerror or exc})"))
    return ScanResult(studies=group(refs), errors=errors)


def _unreadable(path: Path, exc: OSError) -> ImageLoadError:
    if path.is_symlink() and not path.exists():
        return ImageLoadError(path, "broken link (its target does not exist or links back to itself)")
    if isinstance(exc, PermissionError):
        return ImageLoadError(path, "permission denied")
    return ImageLoadError(path, f"could not be read ({(exc.strerror or str(exc)).lower()})")


def _walk(root: Path) -> Iterator[Path]:
    """Files under `root`, depth first in name order; each real folder is entered once (no symlink loops).

    Entries that are neither folders nor regular files (pipes, sockets, devices, broken links) are
    yielded only when their name claims an image, so that the scan reports them instead of hiding them.
    """
    visited: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in visited:
                continue
            visited.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            log.info("cannot list folder %s: %s", folder.name, exc.strerror or exc)
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=True):
                    subfolders.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=True) or has_image_extension(entry.name):
                    yield Path(entry.path)
            except OSError:
                if has_image_extension(entry.name):
                    yield Path(entry.path)  # e.g. a link looping onto itself: reported by the caller
        stack.extend(reversed(subfolders))


def _examine(path: Path, explicit: bool) -> ImageRef | None:
    """An ImageRef for an image file; None for a file to skip silently; ImageLoadError for a broken image."""
    if is_dicomdir(path):
        return None
    kind = sniff(path)
    if kind is None:
        if explicit or has_image_extension(path):
            if path.stat().st_size == 0:
                raise ImageLoadError(path, "empty file (0 bytes)")
            if path.suffix.lower() in {".dcm", ".dicom", ".dic"} or not path.suffix:
                raise ImageLoadError(path, "not a DICOM file")
            raise ImageLoadError(path, "not a DICOM file or a supported image (damaged or unknown format)")
        return None
    if kind.is_dicom:
        return _examine_dicom(path, kind, explicit)
    width, height, frames = raster_size(path)
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageLoadError(
            path, f"image too large ({width} x {height} pixels; at most {MAX_SIDE} per side can be opened)"
        )
    meta = ImageMeta(source_format=kind.value)
    return ImageRef(path=path, meta=meta, width=width, height=height, frames=frames)


def _examine_dicom(path: Path, kind: FileKind, explicit: bool) -> ImageRef | None:
    try:
        ds = read_header(path, kind)
    except pydicom.errors.InvalidDicomError:
        raise ImageLoadError(path, "not a DICOM file") from None
    except (EOFError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
        raise ImageLoadError(path, "damaged DICOM header") from None
    media_class = str(getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPClassUID", ""))
    if media_class == _DICOMDIR_SOP_CLASS:
        return None
    if "Rows" not in ds:
        sop_class = str(ds.get("SOPClassUID", "") or media_class)
        if sop_class.startswith(NON_IMAGE_SOP_PREFIXES):  # a report, presentation state, ...
            if explicit:
                raise ImageLoadError(path, "no pixel data (this DICOM object is not an image)")
            return None
        raise ImageLoadError(path, "damaged DICOM header (image description missing)")
    check_decodable(path, ds)
    meta = meta_from_dataset(ds)
    return ImageRef(
        path=path,
        meta=meta,
        flags=compute_flags(meta, ds),
        width=int(ds.Columns),
        height=int(ds.Rows),
        frames=frame_count(ds),
        instance_number=_int(ds.get("InstanceNumber")),
        series_number=_int(ds.get("SeriesNumber")),
        series_description=str(ds.get("SeriesDescription", "") or "").strip(),
    )


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def group(refs: Iterable[ImageRef]) -> list[Study]:
    """Group image references into studies and series by their UIDs.

    Raster files and DICOM files without a Study Instance UID are one study each. Copies of one instance
    (same SOP Instance UID in several files) are all kept: each file the user gave appears.
    """
    studies: dict[str, Study] = {}
    series_of: dict[tuple[str, str], Series] = {}
    for ref in refs:
        meta = ref.meta
        key = meta.study_uid if meta.source_format == "dicom" and meta.study_uid else f"file:{ref.path}"
        study = studies.get(key)
        if study is None:
            study = Study(
                key=key,
                uid=meta.study_uid,
                patient_name=meta.patient_name,
                patient_id=meta.patient_id,
                study_date=meta.study_date,
                description=meta.study_description,
            )
            studies[key] = study
        series_key = (key, meta.series_uid)
        series = series_of.get(series_key)
        if series is None:
            series = Series(
                uid=meta.series_uid,
                number=ref.series_number,
                description=ref.series_description,
                modality=meta.modality,
            )
            series_of[series_key] = series
            study.series.append(series)
        series.images.append(ref)
    for study in studies.values():
        study.series.sort(key=lambda s: (s.number is None, s.number or 0, s.uid))
        for series in study.series:
            series.images.sort(key=lambda r: (r.instance_number is None, r.instance_number or 0, str(r.path)))
    return sorted(studies.values(), key=lambda s: s.sort_key)
