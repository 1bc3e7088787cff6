"""The window/level preset box (toolbar combo + View menu): the presets of the displayed image, applied on
the canvas, and a "Custom" entry whenever the window no longer matches one (right-drag, typed values)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QComboBox, QMenu

from cxrviewer.gui import backend
from cxrviewer.gui.image_view import ImageCanvas

if TYPE_CHECKING:
    from cxrviewer.imaging.image import WindowPreset

CUSTOM = "Custom"
FILE_DEFAULT = "File default"  # the name `cxrviewer.imaging.presets` gives the file's own window


@dataclass(frozen=True)
class Preset:
    name: str
    center: float | None  # None: the file's own VOI
    width: float | None

    def values(self, default: WindowPreset) -> tuple[float, float]:
        if self.center is None or self.width is None:
            return float(default.center), float(default.width)
        return self.center, self.width


def presets_for(decoded: backend.Decoded, limit: int = 9) -> list[Preset]:
    """The image as the file shows it ("File default": its own VOI, or the stored range), then the file's
    other windows and Lung / Mediastinum / Bone from `cxrviewer.imaging.presets.window_presets`."""
    named = decoded.presets if decoded.presets is not None else backend.window_presets(decoded.image)
    presets = [Preset(FILE_DEFAULT, None, None)]
    presets += [Preset(wp.name, float(wp.center), float(wp.width)) for wp in named if wp.name != FILE_DEFAULT]
    return presets[:limit]


class PresetBox(QObject):
    """Keeps the combo, the menu and the canvas's window in step."""

    def __init__(self, canvas: ImageCanvas, menu: QMenu, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.menu = menu
        self.presets: list[Preset] = []
        self._default: WindowPreset | None = None
        self.combo = QComboBox()
        self.combo.setObjectName("presetCombo")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.combo.setMinimumWidth(170)
        self.combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.combo.setToolTip("Window/level presets (keys 1–9 as listed); right-drag on the image adjusts freely")
        self.combo.activated.connect(self.apply)
        canvas.view_changed.connect(self.sync)

    def fill(self, decoded: backend.Decoded) -> None:
        self.presets = presets_for(decoded)
        self._default = decoded.window
        self.combo.blockSignals(True)
        self.combo.clear()
        self.menu.clear()
        for i, preset in enumerate(self.presets):
            center, width = preset.values(decoded.window)
            self.combo.addItem(f"{i + 1} · {preset.name}")
            self.combo.setItemData(i, f"{preset.name}: W {width:.0f} L {center:.0f}", Qt.ItemDataRole.ToolTipRole)
            act = self.menu.addAction(f"{i + 1}  {preset.name} (W {width:.0f} L {center:.0f})")
            act.triggered.connect(lambda checked=False, i=i: self.apply(i))
        self.combo.blockSignals(False)
        self.sync()

    def apply(self, index: int) -> None:
        if not self.canvas.has_image() or not 0 <= index < len(self.presets):
            self.sync()  # "Custom" picked from the combo: keep showing the current window
            return
        preset = self.presets[index]
        if preset.center is None or preset.width is None:
            self.canvas.reset_window()
        else:
            self.canvas.set_window(preset.center, preset.width, preset.name)

    def current_index(self) -> int | None:
        """The preset matching the canvas's window, or None for a custom window."""
        window = self.canvas.user_window
        if window is None:
            return 0 if self.presets else None
        for i, preset in enumerate(self.presets):
            if preset.center is not None and preset.width is not None and (
                abs(preset.center - window.center) < 1e-6 and abs(preset.width - window.width) < 1e-6
            ):
                return i
        return None

    def sync(self) -> None:
        """Show the preset in use, or "Custom (W … L …)" after a free adjustment."""
        if not self.presets:
            return
        index = self.current_index()
        self.combo.blockSignals(True)
        custom_row = len(self.presets)
        if index is None:
            window = self.canvas.current_window
            text = f"{CUSTOM} · W {window.width:.0f} L {window.center:.0f}" if window is not None else CUSTOM
            if self.combo.count() <= custom_row:
                self.combo.addItem(text)
            else:
                self.combo.setItemText(custom_row, text)
            self.combo.setCurrentIndex(custom_row)
        else:
            while self.combo.count() > custom_row:
                self.combo.removeItem(custom_row)
            self.combo.setCurrentIndex(index)
        self.combo.blockSignals(False)

    def is_custom(self) -> bool:
        return bool(self.presets) and self.combo.currentIndex() == len(self.presets)

    def help_rows(self) -> list[tuple[str, str]]:
        """(what, key) of each preset of the displayed image, for the shortcut help."""
        return [(f"Window/level: {p.name}", str(i + 1)) for i, p in enumerate(self.presets)]
