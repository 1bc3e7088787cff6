"""Imaging layer: loading DICOM and raster files into `Image`, display conversion, study grouping.

No Qt and no torch here.
"""

from cxrviewer.imaging.display import default_window, model_input, pixel_value, to_display
from cxrviewer.imaging.errors import ImageLoadError
from cxrviewer.imaging.image import Flag, Image, ImageFlag, ImageMeta, WindowPreset
from cxrviewer.imaging.loader import load_image
from cxrviewer.imaging.study import ImageRef, ScanResult, Series, Study, scan_paths

__all__ = [
    "Flag",
    "Image",
    "ImageFlag",
    "ImageLoadError",
    "ImageMeta",
    "ImageRef",
    "ScanResult",
    "Series",
    "Study",
    "WindowPreset",
    "default_window",
    "load_image",
    "model_input",
    "pixel_value",
    "scan_paths",
    "to_display",
]
