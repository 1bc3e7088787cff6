"""Persistent user settings (QSettings): last open and export folders, overlay opacity, hidden identifiers, geometry."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

ORGANIZATION = "cxrviewer"
APPLICATION = "cxrviewer"


def default_qsettings() -> QSettings:
    """The user's settings file (INI format, per user)."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION)


class AppSettings:
    """Typed access to the few things the viewer remembers between sessions."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings if qsettings is not None else default_qsettings()

    def _get(self, key: str, default: object) -> object:
        value = self.q.value(key, default)
        return default if value is None else value

    @property
    def last_folder(self) -> str:
        folder = str(self._get("paths/last_folder", "") or "")
        return folder if folder and Path(folder).is_dir() else str(Path.home())

    @last_folder.setter
    def last_folder(self, folder: str | Path) -> None:
        path = Path(folder)
        self.q.setValue("paths/last_folder", str(path if path.is_dir() else path.parent))

    @property
    def export_folder(self) -> str:
        """Where the export dialog opens: the last export folder, else the user's documents folder (made when
        the account has none yet, as on a fresh Linux install), else home."""
        folder = str(self._get("paths/export_folder", "") or "")
        if folder and Path(folder).is_dir():
            return folder
        documents = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
        if documents and not Path(documents).is_dir() and Path(documents).parent.is_dir():
            try:
                Path(documents).mkdir()
            except OSError:
                pass
        return documents if documents and Path(documents).is_dir() else str(Path.home())

    @export_folder.setter
    def export_folder(self, folder: str | Path) -> None:
        self.q.setValue("paths/export_folder", str(Path(folder)))

    @property
    def opacity(self) -> float:
        try:
            return min(1.0, max(0.0, float(self._get("overlay/opacity", 0.5))))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return 0.5

    @opacity.setter
    def opacity(self, value: float) -> None:
        self.q.setValue("overlay/opacity", round(float(value), 3))

    @property
    def hide_identifiers(self) -> bool:
        return _as_bool(self._get("privacy/hide_identifiers", False))

    @hide_identifiers.setter
    def hide_identifiers(self, value: bool) -> None:
        self.q.setValue("privacy/hide_identifiers", bool(value))

    @property
    def sort_mode(self) -> str:
        return str(self._get("browser/sort_mode", "") or "")

    @sort_mode.setter
    def sort_mode(self, value: str) -> None:
        self.q.setValue("browser/sort_mode", value)

    def geometry(self) -> tuple[QByteArray | None, QByteArray | None]:
        geometry = self.q.value("window/geometry")
        state = self.q.value("window/state")
        return (
            geometry if isinstance(geometry, QByteArray) else None,
            state if isinstance(state, QByteArray) else None,
        )

    def save_geometry(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)

    def sync(self) -> None:
        self.q.sync()


def _as_bool(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)
