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


def load_image(path: str | Path) -> Image:
    """Open a DICOM, PNG, JPEG, TIFF or BMP file as an `Image` (pixels in modality units, metadata, flags).

    Every failure, whatever its cause, raises `ImageLoadError` with a plain message naming the file.
    """
    path = Path(path)
    try:
        return _load(path)
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except IsADirectoryError:
        raise ImageLoadError(path, "is a folder, not a file") from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied") from None
    except MemoryError:
        raise ImageLoadError(path, "not enough memory to open the image") from None
    except OSError as exc:
        raise ImageLoadError(path, f"could not be read ({exc.strerror or exc})") from None
    except Exception as exc:  # the loader boundary: nothing else may escape
        log.debug("unexpected failure loading %s", path.name, exc_info=True)
        raise ImageLoadError(path, f"could not be opened ({type(exc).__name__}: {exc})") from None


def _load(path: Path) -> Image:
    if path.is_dir():
        raise ImageLoadError(path, "is a folder, not a file")
    kind = sniff(path)
    if kind is None:
        if path.suffix.lower() in DICOM_EXTENSIONS or not path.suffix:
            raise ImageLoadError(path, "not a DICOM file")
        raise ImageLoadError(path, "not a DICOM file or a supported image (PNG, JPEG, TIFF, BMP)")
    if kind.is_dicom:
        return load_dicom(path, kind)
    return load_raster(path, kind)
