"""Files shipped in `resources/` (installed as package `cxrviewer._resources`): style, icons, demo study."""

from __future__ import annotations

import logging
from functools import cache
from importlib import resources
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QIcon, QPainter, QPixmap

log = logging.getLogger(__name__)

PACKAGE = "cxrviewer._resources"


def resource_path(*parts: str) -> Path:
    """Filesystem path of a bundled resource (the package is installed unzipped)."""
    return Path(str(resources.files(PACKAGE).joinpath(*parts)))


@cache
def stylesheet() -> str:
    try:
        return resource_path("style.qss").read_text(encoding="utf-8")
    except OSError:
        log.warning("stylesheet missing from the installation; using the plain style")
        return ""


@cache
def icon(name: str) -> QIcon:
    """A bundled SVG icon; its disabled look is faded (the default greying hardly shows on a dark theme)."""
    path = resource_path("icons", f"{name}.svg")
    if not path.is_file():
        return QIcon()
    source = QIcon(str(path))
    result = QIcon()
    for side in (16, 24, 32, 48, *((64, 96, 128, 256) if name == "app" else ())):
        pixmap = source.pixmap(side, side)
        result.addPixmap(pixmap, QIcon.Mode.Normal)
        faded = QPixmap(pixmap.size())
        faded.setDevicePixelRatio(pixmap.devicePixelRatio())
        faded.fill(Qt.GlobalColor.transparent)
        painter = QPainter(faded)
        painter.setOpacity(0.3)
        painter.drawPixmap(0, 0, pixmap)
        painter.end()
        result.addPixmap(faded, QIcon.Mode.Disabled)
    return result


def demo_folder() -> Path:
    """The bundled demo study (NIH ChestX-ray14 images, see its ATTRIBUTION.md)."""
    return resource_path("demo")
