"""The start screen: what the tool is, a drop zone, the model's state and one-click demo."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from cxrviewer.gui import assets

NOTICE = "Not for diagnostic use"


class WelcomePage(QWidget):
    """Start screen: what the tool is, a drop zone and one-click demo."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("welcome")
        outer = QVBoxLayout(self)
        outer.addStretch(2)
        column = QVBoxLayout()
        column.setSpacing(10)
        icon = QLabel()
        icon.setPixmap(assets.icon("app").pixmap(84, 84))
        icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        column.addWidget(icon)
        column.addWidget(_centred("cxrviewer", "welcomeTitle"))
        column.addWidget(_centred("A second reader for chest radiographs — the film, the model's findings and where "
                                  "it looked.", "welcomeSubtitle", wrap=True))
        column.addSpacing(12)
        zone = QFrame()
        zone.setObjectName("dropZone")
        zone.setMinimumHeight(190)
        zone_layout = QVBoxLayout(zone)
        zone_layout.setContentsMargins(28, 22, 28, 22)
        zone_layout.addWidget(_centred("Drop DICOM, PNG or JPEG files or folders here", "dropText"))
        zone_layout.addWidget(_centred("Folders are searched recursively and grouped by study; files are analysed one "
                                       "by one.", "dropHint", wrap=True))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.open_files = QPushButton("Open files…")
        self.open_folder = QPushButton("Open folder…")
        self.demo = QPushButton("Open demo study")
        self.demo.setObjectName("primary")
        self.demo.setToolTip("Five NIH ChestX-ray14 films bundled with the app")
        for b in (self.open_files, self.open_folder, self.demo):
            b.setMinimumWidth(150)
            buttons.addWidget(b)
        buttons.addStretch(1)
        zone_layout.addSpacing(8)
        zone_layout.addLayout(buttons)
        column.addWidget(zone)
        self.model_label = QLabel("Model: loading…")
        self.model_label.setObjectName("welcomeModel")
        self.model_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.model_label.setWordWrap(True)
        column.addWidget(self.model_label)
        keys = QLabel(
            "Wheel zoom · drag pan · right-drag window/level · M ruler · T cardiothoracic ratio · I invert · "
            "H heat map · Space reset · ↑/↓ studies · F1 all keys"
        )
        keys.setObjectName("dropHint")
        keys.setAlignment(Qt.AlignmentFlag.AlignCenter)
        keys.setWordWrap(True)
        column.addWidget(keys)
        notice = QLabel(f"{NOTICE}. A research and education tool; every result needs a qualified reader.")
        notice.setObjectName("welcomeNotice")
        notice.setAlignment(Qt.AlignmentFlag.AlignCenter)
        notice.setWordWrap(True)
        column.addWidget(notice)
        row = QHBoxLayout()
        row.addStretch(1)
        holder = QWidget()
        holder.setLayout(column)
        holder.setMaximumWidth(640)
        row.addWidget(holder, 4)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(3)


def _centred(text: str, name: str, wrap: bool = False) -> QLabel:
    """A centred label styled by its object name."""
    label = QLabel(text)
    label.setObjectName(name)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(wrap)
    return label
