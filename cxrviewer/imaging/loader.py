"""`load_image`: the one entry point that opens any supported file, raising only `ImageLoadError`."""

from __future__ import annotations

import logging
from pathlib import Path

from cxrviewer.imaging.dicom import load_dicom
from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.imaging.formats import DICOM_EXTENSIONS, sniff
from cxrviewer.imaging.image import Image
from cxrviewer.imaging.raster import load_raster

log = logging.getLogger(__name__)

# The reason given when an unforeseen error escapes a decoder (the robustness tests treat it as a bug).
GENERIC_REASON = "could not be opened (damaged file or unsupported encoding)"


def detach(exc: ImageLoadError) -> ImageLoadError:
    """Drop the traceback and chained exceptions of an error that will be kept (e.g. in a scan's list).

    Their frames hold the decoder's locals (the whole data set, pixel buffers): kept errors would keep
    megabytes each alive.
    """
    exc.__traceback__ = None
    exc.__context__ = None
    exc.__cause__ = None
    return exc


def load_image(path: str | Path, for_model: bool = False) -> Image:
    """Open a DICOM, PNG, JPEG, TIFF or BMP file as an `Image` (pixels in modality units, metadata, flags).

    Every failure, whatever its cause, raises `ImageLoadError` with a plain message naming the file.
    `for_model`: see `load_for_model`.
    """
    path = Path(path)
    try:
        return _load(path, for_model)
    except Exception as exc:  # the loader boundary: nothing else may escape
        error = _as_load_error(path, exc)
    raise detach(error)  # raised outside the handler: no chained exception keeps the decoder's frames alive


def load_for_model(path: str | Path) -> Image:
    """`load_image` for callers whose pixels only feed the model (`cxrviewer-predict` without exports): the same
    `Image`, but a large JPEG 2000 film is decoded at a lower resolution level (see `load_dicom`)."""
    return load_image(path, for_model=True)


def _as_load_error(path: Path, exc: Exception) -> ImageLoadError:
    if isinstance(exc, ImageLoadError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return ImageLoadError(path, "file not found")
    if isinstance(exc, IsADirectoryError):
        return ImageLoadError(path, "is a folder, not a file")
    if isinstance(exc, PermissionError):
        return ImageLoadError(path, "permission denied")
    if isinstance(exc, MemoryError):
        return ImageLoadError(path, "not enough memory to open the image")
    if isinstance(exc, OSError):
        return ImageLoadError(path, f"could not be read ({(exc.strerror or str(exc)).lower()})")
    log.debug("unexpected failure loading %s", path.name, exc_info=exc)  # details in the debug log only
    return ImageLoadError(path, GENERIC_REASON)


def _load(path: Path, for_model: bool = False) -> Image:
    if path.is_dir():
        raise ImageLoadError(path, "is a folder, not a file")
    kind = sniff(path)
    if kind is None:
        if path.stat().st_size == 0:
            raise ImageLoadError(path, "empty file (0 bytes)")
        if path.suffix.lower() in DICOM_EXTENSIONS or not path.suffix:
            raise ImageLoadError(path, "not a DICOM file")
        raise ImageLoadError(path, "not a DICOM file or a supported image (PNG, JPEG, TIFF, BMP)")
    if kind.is_dicom:
        return load_dicom(path, kind, for_model)
    return load_raster(path, kind)
