"""The main window: study browser | image canvas | findings panel, menus, shortcuts and the status bar."""

from __future__ import annotations

import importlib.util
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from cxrviewer.gui import assets, backend
from cxrviewer.gui.dialogs import AboutDialog, ModelCardDialog, StudyInfoDialog
from cxrviewer.gui.findings_panel import FindingsPanel
from cxrviewer.gui.image_view import ImageCanvas
from cxrviewer.gui.records import ImageRecord, State, StudyRecord, percent
from cxrviewer.gui.settings import AppSettings
from cxrviewer.gui.study_browser import SORT_MODES, StudyBrowser, scrub
from cxrviewer.gui.workers import Pipeline
from cxrviewer.model import colormap

log = logging.getLogger(__name__)

NOTICE = "Not for diagnostic use"
IMAGE_CACHE_SIZE = 6
#: Scanned studies put into the worklist per event-loop turn (about 10 ms on 2 slow cores).
SCAN_CHUNK = 100
EXPORT_FORMATS = (
    ("png", "Annotated PNG…"),
    ("pdf", "PDF report…"),
    ("json", "JSON (cxrviewer-predict format)…"),
    ("sr", "DICOM Structured Report…"),
    ("sc", "DICOM Secondary Capture…"),
)


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
        title = QLabel("cxrviewer")
        title.setObjectName("welcomeTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        column.addWidget(title)
        subtitle = QLabel("A second reader for chest radiographs — the film, the model's findings and where it looked.")
        subtitle.setObjectName("welcomeSubtitle")
        subtitle.setAlignment(Qt.AlignmentFlag.AlignCenter)
        subtitle.setWordWrap(True)
        column.addWidget(subtitle)
        column.addSpacing(12)
        zone = QFrame()
        zone.setObjectName("dropZone")
        zone.setMinimumHeight(190)
        zone_layout = QVBoxLayout(zone)
        zone_layout.setContentsMargins(28, 22, 28, 22)
        drop = QLabel("Drop DICOM, PNG or JPEG files or folders here")
        drop.setObjectName("dropText")
        drop.setAlignment(Qt.AlignmentFlag.AlignCenter)
        zone_layout.addWidget(drop)
        hint = QLabel("Folders are searched recursively and grouped by study; files are analysed one by one.")
        hint.setObjectName("dropHint")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setWordWrap(True)
        zone_layout.addWidget(hint)
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
            "Wheel zoom · drag pan · right-drag window/level · I invert · H heat map · Space reset · ↑/↓ studies"
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


class MainWindow(QMainWindow):
    """cxrviewer's main window. All slots run in the GUI thread; work goes through `Pipeline`."""

    study_updated = Signal(str)  # study key: its state or results changed
    image_finished = Signal(str)  # image key: analysed, rejected, failed or left unanalysed
    displayed_changed = Signal(str)  # image key now on the canvas ("" for none)
    findings_shown = Signal(str)  # image key whose findings (and heat map) are now displayed

    def __init__(
        self,
        settings: AppSettings | None = None,
        model_source: backend.ModelSource | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.settings = settings or AppSettings()
        self.pipeline = Pipeline(model_source or backend.model_source(None), self)
        self.setWindowIcon(assets.icon("app"))
        self.setAcceptDrops(True)
        self.resize(1400, 880)
        self.setMinimumSize(760, 520)

        self.studies: dict[str, StudyRecord] = {}
        self._image_index: dict[str, tuple[StudyRecord, ImageRecord]] = {}
        self._cache: OrderedDict[str, backend.Decoded] = OrderedDict()
        self._overlays: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()  # (image key, label) -> BGRA
        self._displayed_study = ""
        self._displayed_image = ""
        self._selected_label: str | None = None
        self._next_number = 1
        self._model_error = ""
        self._shown_once = False
        self._closing = False
        self._info_dialog: StudyInfoDialog | None = None
        self.pacs: Any = None  # cxrviewer.gui.pacs.PacsService, created only when PACS is configured
        self._sent_to_pacs: set[str] = set()
        self._pending_select = False
        self._scan_generation = 0

        self._build_widgets()
        self._build_actions()
        self._build_menus_and_toolbar()
        self._build_status_bar()
        self._connect()
        self._restore_settings()
        self._update_title()
        self._update_enabled()

    # --- build ---

    def _build_widgets(self) -> None:
        self.browser = StudyBrowser()
        self.canvas = ImageCanvas()
        self.canvas.setAcceptDrops(False)
        self.canvas.viewport().setAcceptDrops(False)
        self.findings = FindingsPanel()
        self.welcome = WelcomePage()

        viewer = QWidget()
        viewer_layout = QVBoxLayout(viewer)
        viewer_layout.setContentsMargins(0, 0, 0, 0)
        viewer_layout.setSpacing(0)
        bar = QWidget()
        bar.setObjectName("viewerBar")
        bar_layout = QHBoxLayout(bar)
        bar_layout.setContentsMargins(8, 3, 8, 3)
        self.image_combo = QComboBox()
        self.image_combo.setObjectName("imageCombo")
        self.image_combo.setToolTip("Images of this study (Page Up / Page Down)")
        self.image_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.image_combo.setMinimumWidth(200)
        bar_layout.addWidget(self.image_combo)
        bar_layout.addStretch(1)
        self.viewer_bar = bar
        bar.hide()
        viewer_layout.addWidget(bar)
        viewer_layout.addWidget(self.canvas, 1)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(viewer)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self.browser)
        self.splitter.addWidget(self.stack)
        self.splitter.addWidget(self.findings)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        self.splitter.setSizes([350, 740, 330])
        self.splitter.setChildrenCollapsible(False)
        self.browser.setMinimumWidth(300)
        self.setCentralWidget(self.splitter)

    def _action(
        self,
        text: str,
        slot: Any,
        shortcut: str | QKeySequence | list | None = None,
        icon: str | None = None,
        tip: str = "",
        checkable: bool = False,
    ) -> QAction:
        action = QAction(text, self)
        if icon:
            action.setIcon(assets.icon(icon))
        if shortcut is not None:
            if isinstance(shortcut, list):
                action.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts())
        action.setToolTip(f"{tip or text.rstrip('…')}" + (f" ({keys})" if keys else ""))
        action.setCheckable(checkable)
        if checkable:
            action.toggled.connect(slot)
        else:
            action.triggered.connect(lambda checked=False: slot())
        self.addAction(action)  # shortcuts work whatever has focus inside the window
        return action

    def _build_actions(self) -> None:
        a = self._action
        self.act_open_files = a("Open files…", self.open_files_dialog, QKeySequence.StandardKey.Open, "open-file")
        self.act_open_folder = a("Open folder…", self.open_folder_dialog, "Ctrl+Shift+O", "open-folder")
        self.act_demo = a("Open demo study", self.open_demo, None, None)
        self.act_remove = a("Remove study from list", self.remove_current_study, "Ctrl+W")
        self.act_clear = a("Clear list", self.clear_studies)
        self.act_quit = a("Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_fit = a("Fit to window", self.canvas.fit, "=", "fit")
        self.act_actual = a("Actual pixels (1:1)", self.canvas.actual_size, ["Ctrl+1", "0"], "actual-size")
        self.act_zoom_in = a("Zoom in", lambda: self.canvas.zoom_by(1.25), ["+", "Ctrl++"], "zoom-in")
        self.act_zoom_out = a("Zoom out", lambda: self.canvas.zoom_by(0.8), ["-", "Ctrl+-"], "zoom-out")
        self.act_rotate = a("Rotate 90° clockwise", lambda: self.canvas.rotate_by(90), "R", "rotate")
        self.act_rotate_left = a("Rotate 90° counter-clockwise", lambda: self.canvas.rotate_by(-90), "L")
        self.act_invert = a("Invert", self.canvas.toggle_invert, "I", "invert")
        self.act_reset = a(
            "Reset view",
            self.reset_view,
            "Space",
            "reset",
            tip="Reset zoom, window/level, rotation and inversion",
        )
        self.act_heatmap = a(
            "Heat map",
            self.set_heatmap_visible,
            "H",
            "heatmap",
            checkable=True,
            tip="Show the selected finding's heat map",
        )
        self.act_heatmap.setChecked(True)
        self.act_hide_ids = a(
            "Hide identifiers",
            self.set_hide_identifiers,
            "Ctrl+Shift+H",
            "hide-ids",
            checkable=True,
            tip="Hide patient names, IDs and dates everywhere",
        )
        self.act_next = a("Next study", lambda: self.browser.step(1), ["Down", "J"])
        self.act_prev = a("Previous study", lambda: self.browser.step(-1), ["Up", "K"])
        self.act_next_image = a("Next image in study", lambda: self.step_image(1), "PgDown")
        self.act_prev_image = a("Previous image in study", lambda: self.step_image(-1), "PgUp")
        self.act_info = a("Study information…", self.show_study_info, "Ctrl+I", "info")
        self.act_anyway = a(
            "Analyse anyway",
            self.analyse_anyway,
            None,
            "analyse",
            tip="Run the model on an image the input check rejected",
        )
        self.act_reanalyse = a("Re-analyse study", self.reanalyse_current)
        self.act_cancel = a("Cancel queued analyses", self.cancel_queued)
        self.act_model_card = a("Model card…", self.show_model_card, "Ctrl+M", "model")
        self.act_pacs_prefs = a(
            "PACS connection…",
            self.show_pacs_preferences,
            tip="Receive studies from a PACS and send results back (off by default)",
        )
        self.act_pacs_send = a(
            "Send results to PACS",
            self.send_current_to_pacs,
            tip="Store the DICOM SR and Secondary Capture of this study on the PACS",
        )
        self.act_pacs_send.setEnabled(False)
        self.act_about = a("About cxrviewer…", self.show_about)
        self.act_keys = a("Keyboard shortcuts…", self.show_shortcuts, "F1")
        self.preset_actions = [
            a(f"Window preset {i}", lambda i=i: self.apply_preset(i - 1), str(i)) for i in range(1, 10)
        ]
        self.export_actions: dict[str, QAction] = {}
        for fmt, text in EXPORT_FORMATS:
            self.export_actions[fmt] = a(text, lambda fmt=fmt: self.export_dialog({fmt}))
        self.export_actions["all"] = a("Export all formats…", lambda: self.export_dialog(None), "Ctrl+E", "export")
        self.act_model_card.setEnabled(False)
        self.act_anyway.setEnabled(False)
        self.image_actions = [
            self.act_fit,
            self.act_actual,
            self.act_zoom_in,
            self.act_zoom_out,
            self.act_rotate,
            self.act_rotate_left,
            self.act_invert,
            self.act_reset,
            *self.preset_actions,
        ]
        self.study_actions = [self.act_remove, self.act_info, self.act_reanalyse, *self.export_actions.values()]

    def _build_menus_and_toolbar(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        for act in (self.act_open_files, self.act_open_folder, self.act_demo):
            file_menu.addAction(act)
        file_menu.addSeparator()
        self.export_menu = file_menu.addMenu(assets.icon("export"), "Export")
        for fmt, _ in EXPORT_FORMATS:
            self.export_menu.addAction(self.export_actions[fmt])
        self.export_menu.addSeparator()
        self.export_menu.addAction(self.export_actions["all"])
        file_menu.addAction(self.act_pacs_send)
        file_menu.addSeparator()
        file_menu.addAction(self.act_pacs_prefs)
        file_menu.addSeparator()
        file_menu.addAction(self.act_remove)
        file_menu.addAction(self.act_clear)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)

        view = menu.addMenu("&View")
        for act in (
            self.act_fit,
            self.act_actual,
            self.act_zoom_in,
            self.act_zoom_out,
            None,
            self.act_rotate,
            self.act_rotate_left,
            self.act_invert,
            self.act_reset,
            None,
        ):
            view.addAction(act) if act else view.addSeparator()
        self.preset_menu = view.addMenu("Window/level presets")
        view.addSeparator()
        for act in (
            self.act_heatmap,
            self.act_hide_ids,
            None,
            self.act_next,
            self.act_prev,
            self.act_next_image,
            self.act_prev_image,
            None,
            self.act_info,
        ):
            view.addAction(act) if act else view.addSeparator()

        analysis = menu.addMenu("&Analysis")
        for act in (self.act_anyway, self.act_reanalyse, self.act_cancel, None, self.act_model_card):
            analysis.addAction(act) if act else analysis.addSeparator()

        help_menu = menu.addMenu("&Help")
        for act in (self.act_keys, self.act_model_card, None, self.act_about):
            help_menu.addAction(act) if act else help_menu.addSeparator()

        tb = QToolBar("Tools")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        for act in (
            self.act_open_files,
            self.act_open_folder,
            None,
            self.act_fit,
            self.act_actual,
            self.act_zoom_in,
            self.act_zoom_out,
            self.act_rotate,
            self.act_invert,
            self.act_reset,
            None,
        ):
            tb.addAction(act) if act else tb.addSeparator()
        wl = QLabel(" W/L ")
        wl.setToolTip("Window/level presets (1-9); right-drag on the image adjusts them freely")
        tb.addWidget(wl)
        self.preset_combo = QComboBox()
        self.preset_combo.setObjectName("presetCombo")
        self.preset_combo.setMinimumWidth(170)
        self.preset_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.preset_combo.setToolTip("Window/level presets (keys 1-9)")
        tb.addWidget(self.preset_combo)
        tb.addSeparator()
        for act in (
            self.act_heatmap,
            self.act_hide_ids,
            None,
            self.act_info,
            self.act_model_card,
            self.export_actions["all"],
        ):
            tb.addAction(act) if act else tb.addSeparator()
        for button in tb.findChildren(QWidget):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.addToolBar(tb)
        self.toolbar = tb
        self._presets: list[tuple[str, float, float] | None] = []

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.pixel_label = QLabel("")
        self.pixel_label.setObjectName("pixelLabel")
        self.pixel_label.setMinimumWidth(190)
        self.view_label = QLabel("")
        self.view_label.setObjectName("viewLabel")
        self.progress = QProgressBar()
        self.progress.setObjectName("queueProgress")
        self.progress.setFormat("Analysing %v / %m")
        self.progress.hide()
        self.pacs_status = QLabel("")
        self.pacs_status.setObjectName("pacsStatus")
        self.pacs_status.hide()
        self.model_status = QLabel("Model: loading…")
        self.model_status.setObjectName("modelStatus")
        self.notice = QLabel(NOTICE)
        self.notice.setObjectName("notice")
        self.notice.setToolTip(
            "cxrviewer is a research and education tool. Its findings are a second opinion "
            "for a qualified reader, never a diagnosis."
        )
        for w in (self.pixel_label, self.view_label, self.progress, self.pacs_status, self.model_status, self.notice):
            sb.addPermanentWidget(w)

    def _connect(self) -> None:
        p = self.pipeline
        p.scanned.connect(self._on_scanned)
        p.started.connect(self._on_started)
        p.loaded.connect(self._on_loaded)
        p.overlay_ready.connect(self._store_overlay)
        p.analysed.connect(self._on_analysed)
        p.failed.connect(self._on_failed)
        p.unanalysed.connect(self._on_unanalysed)
        p.model_ready.connect(self._on_model_ready)
        p.model_failed.connect(self._on_model_failed)
        p.progress.connect(self._on_progress)
        p.cancelled.connect(self._on_cancelled)
        p.idle.connect(self._on_idle)
        self.browser.current_changed.connect(self.show_study)
        self.browser.context_menu_requested.connect(self._study_context_menu)
        self.browser.hide_identifiers_toggled.connect(self._on_hide_toggled_in_browser)
        self.canvas.cursor_info.connect(self._on_cursor)
        self.canvas.view_changed.connect(self._on_view_changed)
        self.canvas.view_changed.connect(self._update_enabled)
        self.findings.finding_selected.connect(self.show_finding)
        self.findings.analyse_anyway.connect(self.analyse_anyway)
        self.findings.model_card_requested.connect(self.show_model_card)
        self.findings.heatmap_toggled.connect(self.act_heatmap.setChecked)
        self.findings.opacity_changed.connect(self._on_opacity)
        self.image_combo.currentIndexChanged.connect(self._on_image_combo)
        self.preset_combo.activated.connect(self.apply_preset)
        self.welcome.open_files.clicked.connect(self.open_files_dialog)
        self.welcome.open_folder.clicked.connect(self.open_folder_dialog)
        self.welcome.demo.clicked.connect(self.open_demo)

    def _restore_settings(self) -> None:
        geometry, state = self.settings.geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.splitter.restoreState(state)
        opacity = self.settings.opacity
        self.canvas.set_overlay_opacity(opacity)
        self.findings.set_opacity(opacity)
        if self.settings.sort_mode in SORT_MODES:
            self.browser.set_sort_mode(self.settings.sort_mode)
        self.browser.sort_combo.currentTextChanged.connect(self._on_sort_mode)
        if self.settings.hide_identifiers:
            self.set_hide_identifiers(True)

    def save_settings(self) -> None:
        self.settings.save_geometry(self.saveGeometry(), self.splitter.saveState())
        self.settings.opacity = self.canvas.overlay_opacity
        self.settings.hide_identifiers = self.hide_identifiers
        self.settings.sync()

    # --- events ---

    def showEvent(self, event: Any) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            QTimer.singleShot(0, self.pipeline.load_model)  # lazily, once the window is on screen
            QTimer.singleShot(0, self._start_pacs_if_configured)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self._closing:
            self._closing = True
            self.save_settings()
            self.hide()
            if self.pacs is not None:
                self.pacs.shutdown()
            self.pipeline.shutdown()
        event.accept()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)
        else:
            event.ignore()

    # --- opening ---

    def open_paths(self, paths: list[Path | str]) -> int:
        """Scan files/folders in the background; rows appear when the scan returns."""
        paths = [Path(p) for p in paths]
        if not paths:
            return -1
        self.settings.last_folder = paths[0]
        self.statusBar().showMessage(f"Scanning {len(paths)} item(s)…")
        self._pending_select = not self._displayed_study
        return self.pipeline.scan(paths)

    def open_files_dialog(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(
            self,
            "Open images",
            self.settings.last_folder,
            "Images (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)",
        )
        if files:
            self.open_paths([Path(f) for f in files])

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder", self.settings.last_folder)
        if folder:
            self.open_paths([Path(folder)])

    def open_demo(self) -> None:
        folder = assets.demo_folder()
        if not folder.is_dir():
            self.statusBar().showMessage("The demo study is missing from this installation.", 8000)
            return
        self.open_paths([folder])

    def _new_study(self, **fields: Any) -> StudyRecord:
        record = StudyRecord(number=self._next_number, **fields)
        self._next_number += 1
        return record

    def _on_scanned(self, token: int, outcome: backend.ScanOutcome) -> None:
        if self._closing:
            return
        errors = len(outcome.errors)
        if not outcome.studies and not errors:
            self.statusBar().showMessage("No images found in what was opened.", 8000)
        else:
            images = sum(len(self._unlisted_images(s)) for s in outcome.studies)
            parts = [
                f"{len(outcome.studies)} stud{'y' if len(outcome.studies) == 1 else 'ies'} "
                f"({images} image{'s' if images != 1 else ''} queued)"
            ]
            if errors:
                parts.append(f"{errors} file{'s' if errors != 1 else ''} could not be opened — see the list")
            self.statusBar().showMessage("Opened " + "; ".join(parts), 10000)
        work: list[tuple[Any, Any]] = [(s, None) for s in outcome.studies] + [(None, e) for e in outcome.errors]
        self._add_scanned(work, self._scan_generation)

    def _add_scanned(self, work: list[tuple[Any, Any]], generation: int) -> None:
        """Put scanned studies (or scan errors) into the worklist, SCAN_CHUNK per event-loop turn: a drop of
        hundreds of files must not freeze the window while its rows are made."""
        if self._closing or generation != self._scan_generation:
            return
        chunk, rest = work[:SCAN_CHUNK], work[SCAN_CHUNK:]
        added: list[StudyRecord] = []
        for scanned, error in chunk:
            record = self._add_study(scanned) if scanned is not None else self._add_error(*error)
            if record is not None:
                added.append(record)
        self.browser.model.add(added)
        if added and (self._pending_select or not self._displayed_study):
            self._pending_select = False
            first_ok = next((r for r in added if r.state != State.ERROR), added[0])
            self.browser.set_current(first_ok.key)
        for record in added:
            self.study_updated.emit(record.key)
        if rest:
            QTimer.singleShot(0, lambda: self._add_scanned(rest, generation))

    def _add_study(self, scanned: Any) -> StudyRecord | None:
        """Queue the new images of one scanned study; returns its record when the study is new."""
        record = self.studies.get(scanned.key)
        fresh = record is None
        if record is None:
            record = self._new_study(**scanned.describing_fields())
        for img in self._unlisted_images(scanned):
            key = f"{record.key}|{img.path}"
            image = ImageRecord(key=key, path=img.path, label=img.label)
            record.images.append(image)
            self._image_index[key] = (record, image)
            self.pipeline.enqueue(key, img.path)
        if not fresh:
            self.browser.model.changed(record.key)
            return None
        self.studies[record.key] = record
        return record

    def _unlisted_images(self, scanned: Any) -> list[Any]:
        """The images of a scanned study that its worklist row does not hold yet (all of a new study's)."""
        record = self.studies.get(scanned.key)
        known = {img.path for img in record.images} if record is not None else set()
        return [img for img in scanned.images if img.path not in known]

    def _add_error(self, path: Path, message: str) -> StudyRecord | None:
        """A row for a file that could not be opened (once per path)."""
        key = f"error:{path}"
        if key in self.studies:
            return None
        record = self._new_study(key=key, source_name=path.name or str(path))
        image = ImageRecord(key=key, path=path, state=State.ERROR, message=message)
        record.images.append(image)
        self.studies[key] = record
        self._image_index[key] = (record, image)
        return record

    # --- pipeline ---

    def _lookup(self, key: str) -> tuple[StudyRecord, ImageRecord] | None:
        return self._image_index.get(key)

    def _on_started(self, key: str) -> None:
        found = self._lookup(key)
        if found is None:
            return
        study, image = found
        image.state = State.ANALYSING
        self.browser.model.changed(study.key)
        if key == self._displayed_image:
            self._refresh_findings()

    def _on_loaded(self, key: str, decoded: backend.Decoded) -> None:
        found = self._lookup(key)
        if found is None or self._closing:
            return
        study, image = found
        self._cache[key] = decoded
        self._cache.move_to_end(key)
        while len(self._cache) > IMAGE_CACHE_SIZE:
            oldest = next(iter(self._cache))
            if oldest == self._displayed_image:
                self._cache.move_to_end(oldest)
                if len(self._cache) <= IMAGE_CACHE_SIZE + 1:
                    break
                continue
            self._cache.pop(oldest)
        image.width, image.height = decoded.image.width, decoded.image.height
        if image.thumbnail is None:
            image.thumbnail = decoded.thumbnail
            if study.images and study.images[0] is image:
                self.browser.model.set_thumbnail(study.key, decoded.thumbnail)
        if not study.view:
            study.view = decoded.image.meta.view_position
        if key == self._displayed_image:
            self._put_on_canvas(study, image, decoded)
        decoded.rgb32 = None  # only the displayed image needs its screen-ready copy

    def _store_overlay(self, key: str, label: str, bgra: np.ndarray) -> np.ndarray:
        self._overlays[(key, label)] = bgra
        self._overlays.move_to_end((key, label))
        while len(self._overlays) > 4 * IMAGE_CACHE_SIZE:
            self._overlays.popitem(last=False)
        return bgra

    def _on_analysed(self, key: str, prediction: Any) -> None:
        found = self._lookup(key)
        if found is None or self._closing:
            return
        study, image = found
        image.prediction = prediction
        if prediction.gate.status == "rejected":
            image.state = State.REJECTED
            image.message = "; ".join(prediction.gate.reasons) or "rejected by the input check"
        else:
            image.state = State.DONE
            image.message = ""
        self.browser.model.changed(study.key)
        if key == self._displayed_image:
            self._refresh_findings(auto_select=True)
            self._update_title()
        self.study_updated.emit(study.key)
        self.image_finished.emit(key)
        self._maybe_auto_send(study)

    def _on_failed(self, key: str, message: str) -> None:
        found = self._lookup(key)
        if found is None or self._closing:
            return
        study, image = found
        image.state = State.ERROR
        image.message = message
        image.prediction = None
        self.browser.model.changed(study.key)
        self.statusBar().showMessage(scrub(message, study, self.hide_identifiers), 10000)
        if key == self._displayed_image:
            self.canvas.clear()
            self.canvas.show_message(f"This file could not be opened.\n{scrub(message, study, self.hide_identifiers)}")
            self._refresh_findings()
        self.study_updated.emit(study.key)
        self.image_finished.emit(key)

    def _on_unanalysed(self, key: str, message: str) -> None:
        found = self._lookup(key)
        if found is None or self._closing:
            return
        study, image = found
        image.state = State.NOT_ANALYSED
        image.message = f"not analysed: no model ({message})"
        self.browser.model.changed(study.key)
        if key == self._displayed_image:
            self._refresh_findings()
        self.study_updated.emit(study.key)
        self.image_finished.emit(key)

    def _on_model_ready(self, engine: Any) -> None:
        self._model_error = ""
        self.findings.set_model(engine.name)
        self.model_status.setText(f"Model: {engine.name}")
        self.model_status.setToolTip(
            f"{engine.name}: {len(engine.labels)} findings. Help ▸ Model card for its validation results."
        )
        self.welcome.model_label.setText(f"Model: {engine.name} — {len(engine.labels)} findings, ready.")
        self.act_model_card.setEnabled(True)
        if self._displayed_image:
            self._refresh_findings()

    def _on_model_failed(self, message: str) -> None:
        self._model_error = message
        text = f"No model available: {message}"
        self.findings.set_model(None, f"{text}. {backend.NO_MODEL_HINT}")
        self.model_status.setText("No model")
        self.model_status.setToolTip(text)
        self.welcome.model_label.setText(f"{text}\nImages can still be viewed. {backend.NO_MODEL_HINT}")
        self.statusBar().showMessage(text, 15000)
        self.act_model_card.setEnabled(False)
        if self._displayed_image:
            self._refresh_findings()

    def _on_progress(self, done: int, total: int) -> None:
        if total > 1:
            self.progress.setMaximum(total)
            self.progress.setValue(done)
            self.progress.show()
        else:
            self.progress.hide()

    def _on_idle(self) -> None:
        self.progress.hide()

    # --- display ---

    @property
    def engine(self) -> Any:
        return self.pipeline.engine

    @property
    def hide_identifiers(self) -> bool:
        return self.browser.hide_identifiers

    def current_study(self) -> StudyRecord | None:
        return self.studies.get(self._displayed_study)

    def current_image(self) -> ImageRecord | None:
        found = self._lookup(self._displayed_image)
        return found[1] if found else None

    def show_study(self, key: str) -> None:
        """Display a study (its most abnormal image first when analysed, else its first image)."""
        study = self.studies.get(key)
        if study is None:
            self._displayed_study = self._displayed_image = ""
            self.canvas.clear()
            self.findings.clear("Open a study to see the model's findings.")
            self.stack.setCurrentIndex(0 if not self.studies else 1)
            self._update_title()
            return
        self.stack.setCurrentIndex(1)
        self._displayed_study = key
        self._update_enabled()
        top = study.top_finding()
        image = top[1] if top is not None else study.images[0]
        self._fill_image_combo(study, image)
        self.show_image(image.key)
        self._status_for_study(study)

    def _fill_image_combo(self, study: StudyRecord, current: ImageRecord) -> None:
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        for i, img in enumerate(study.images, 1):
            label = img.label or ("" if self.hide_identifiers else img.path.name)
            self.image_combo.addItem(f"Image {i} of {len(study.images)}" + (f" · {label}" if label else ""), img.key)
        self.image_combo.setCurrentIndex(study.images.index(current))
        self.image_combo.blockSignals(False)
        self.viewer_bar.setVisible(len(study.images) > 1)

    def _on_image_combo(self, index: int) -> None:
        key = self.image_combo.itemData(index)
        if key:
            self.show_image(key)

    def step_image(self, delta: int) -> None:
        if self.image_combo.count() > 1:
            self.image_combo.setCurrentIndex(
                max(0, min(self.image_combo.count() - 1, self.image_combo.currentIndex() + delta))
            )

    def show_image(self, key: str) -> None:
        found = self._lookup(key)
        if found is None:
            return
        study, image = found
        previous = self._displayed_image
        self._displayed_image = key
        self._selected_label = None
        if previous and previous != key:
            self.pipeline.prioritise(key)  # drops stale display-only work of the previous image
        decoded = self._cache.get(key)
        if decoded is not None:
            self._cache.move_to_end(key)
            self._put_on_canvas(study, image, decoded)
        else:
            self.canvas.clear()
            if image.state == State.ERROR:
                self.canvas.show_message(
                    f"This file could not be opened.\n{scrub(image.message, study, self.hide_identifiers)}"
                )
            else:
                self.canvas.show_message("Loading…")
                if not self.pipeline.prioritise(key) and not self.pipeline.is_pending(key):
                    self.pipeline.enqueue(key, image.path, analyse=False, front=True)
        self._refresh_findings(auto_select=True)
        self._update_title()
        self.displayed_changed.emit(key)

    def _put_on_canvas(self, study: StudyRecord, image: ImageRecord, decoded: backend.Decoded) -> None:
        self.canvas.set_image(decoded.image, decoded.display, decoded.window, rgb32=decoded.rgb32)
        decoded.rgb32 = None  # handed over: the cache keeps only the 8-bit display
        self._fill_presets(decoded)
        self._update_annotations()
        if image.prediction is not None:
            self._refresh_findings(auto_select=True)

    def _refresh_findings(self, auto_select: bool = False) -> None:
        """Fill the findings panel for the displayed image from its state."""
        found = self._lookup(self._displayed_image)
        self.act_anyway.setEnabled(False)
        if found is None:
            self.findings.clear("Open a study to see the model's findings.")
            return
        study, image = found
        hide = self.hide_identifiers
        prediction = image.prediction
        if image.state == State.ERROR:
            self.findings.clear(f"This file could not be opened: {scrub(image.message, study, hide)}")
        elif image.state == State.NOT_ANALYSED and image.message == "analysis cancelled":
            self.findings.clear("Not analysed: the analysis was cancelled. Analysis ▸ Re-analyse study runs it.")
        elif image.state == State.NOT_ANALYSED:
            self.findings.clear(f"Not analysed — no model is available.\n{self._model_error}\n{backend.NO_MODEL_HINT}")
        elif image.state == State.ANALYSING:
            self.findings.clear("Analysing…" if self.pipeline.model_loaded else "Loading the model…")
        elif image.state == State.QUEUED or prediction is None:
            self.findings.clear("Queued for analysis…")
        elif image.state == State.REJECTED:
            self.findings.show_rejection(list(prediction.gate.reasons) or ["rejected by the input check"])
            self.act_anyway.setEnabled(True)
        else:
            auroc = self._auroc_by_label()
            not_covered = list(getattr(self.engine, "not_covered", []) or [])
            self.findings.show_prediction(prediction, not_covered, auroc)
        if prediction is None or image.state != State.DONE:
            self.canvas.clear_overlay()
            self.canvas.set_analysed_region(None)
            return
        self._show_analysed_region(prediction)
        label = self._selected_label
        if label is None and auto_select:
            top = image.top_finding()
            label = top.label if top is not None and top.positive else None
        if label is not None:
            self.show_finding(label)
        else:
            self.canvas.clear_overlay()
        self.findings_shown.emit(image.key)

    def _auroc_by_label(self) -> dict[str, float]:
        card = getattr(self.engine, "card", None) or {}
        out = {}
        for label, entry in backend.validation_table(card).items():
            value = backend.metric(entry, "auroc", "AUROC", "auc")
            if isinstance(value, int | float):
                out[label] = float(value)
        return out

    def _show_analysed_region(self, prediction: Any) -> None:
        box = prediction.letterbox
        if not (box.pad_x or box.pad_y) or not self.canvas.has_image():
            self.canvas.set_analysed_region(None)
            return
        x0, y0, cw, ch = box.content
        left, top = (x0 - box.pad_x) / box.scale, (y0 - box.pad_y) / box.scale
        rect = (left, top, cw / box.scale, ch / box.scale)
        self.canvas.set_analysed_region(rect, f"analysed region · letterboxed to {box.size}×{box.size} px")

    def show_finding(self, label: str) -> None:
        """Show a finding's heat map, or say why there is none."""
        image = self.current_image()
        if image is None or image.prediction is None:
            return
        prediction = image.prediction
        finding = prediction.finding(label) if hasattr(prediction, "finding") else None
        if finding is None:
            return
        self._selected_label = label
        self.findings.set_selected(label)
        overlay = self._overlays.get((image.key, label))
        if overlay is None:
            heat = backend.heat_map(prediction, label, colormap.OVERLAY_SIDE)
            overlay = None if heat is None else self._store_overlay(image.key, label, colormap.overlay_bgra(heat))
        if overlay is None:
            self.canvas.clear_overlay()
            self.canvas.show_message(
                f"{label}: {percent(finding.probability)}, below its operating point "
                f"({percent(finding.threshold)}) — no map is drawn for findings below their cutoff."
            )
        else:
            self.canvas.set_overlay(overlay, label, finding.cam_peak)
            self.canvas.set_overlay_visible(self.act_heatmap.isChecked())
        self.statusBar().showMessage(
            f"{label}: probability {finding.probability:.3f}, operating point {finding.threshold:.3f}"
            + (" — above it" if finding.positive else " — below it"),
            8000,
        )

    def set_heatmap_visible(self, visible: bool) -> None:
        if self.act_heatmap.isChecked() != visible:
            self.act_heatmap.setChecked(visible)
            return
        self.findings.heatmap_check.blockSignals(True)
        self.findings.heatmap_check.setChecked(visible)
        self.findings.heatmap_check.blockSignals(False)
        self.canvas.set_overlay_visible(visible)

    def _on_opacity(self, opacity: float) -> None:
        self.canvas.set_overlay_opacity(opacity)
        self.settings.opacity = opacity

    def reset_view(self) -> None:
        self.canvas.reset_view()
        self.preset_combo.setCurrentIndex(0)

    # --- window presets -----------------------------------------------------------------------------------

    def _fill_presets(self, decoded: backend.Decoded) -> None:
        image = decoded.image
        presets: list[tuple[str, float, float] | None] = [None]  # the file's own VOI
        labels = [f"File default (W {decoded.window.width:.0f} L {decoded.window.center:.0f})"]
        for i, wp in enumerate(image.meta.window_presets or []):
            name = wp.name or f"Header {i + 1}"
            presets.append((name, float(wp.center), float(wp.width)))
            labels.append(f"{name} (W {wp.width:.0f} L {wp.center:.0f})")
        lo, hi = decoded.value_range
        c, w = decoded.window.center, decoded.window.width
        for name, center, width in (
            ("Full range", (lo + hi) / 2, max(hi - lo, 1.0)),
            ("High contrast", c, w * 0.6),
            ("Soft", c, w * 1.6),
        ):
            presets.append((name, center, width))
            labels.append(f"{name} (W {width:.0f} L {center:.0f})")
        self._presets = presets[:9]
        self.preset_combo.blockSignals(True)
        self.preset_combo.clear()
        self.preset_menu.clear()
        for i, text in enumerate(labels[:9]):
            name, _, values = text.partition(" (")
            self.preset_combo.addItem(f"{i + 1} · {name}")
            self.preset_combo.setItemData(i, f"{name}: {values.rstrip(')')}", Qt.ItemDataRole.ToolTipRole)
            act = self.preset_menu.addAction(f"{i + 1}  {text}")
            act.triggered.connect(lambda checked=False, i=i: self.apply_preset(i))
        self.preset_combo.blockSignals(False)

    def apply_preset(self, index: int) -> None:
        if not self.canvas.has_image() or not 0 <= index < len(self._presets):
            return
        preset = self._presets[index]
        if preset is None:
            self.canvas.reset_window()
        else:
            name, center, width = preset
            self.canvas.set_window(center, width, name)
        self.preset_combo.setCurrentIndex(index)

    # --- identifiers ---

    def set_hide_identifiers(self, hide: bool) -> None:
        if self.act_hide_ids.isChecked() != hide:
            self.act_hide_ids.setChecked(hide)  # re-enters through toggled
            return
        self.browser.set_hide_identifiers(hide)
        self._apply_identifier_mode()

    def _on_hide_toggled_in_browser(self, hide: bool) -> None:
        if self.act_hide_ids.isChecked() != hide:
            self.act_hide_ids.setChecked(hide)
        self._apply_identifier_mode()

    def _apply_identifier_mode(self) -> None:
        hide = self.hide_identifiers
        self.settings.hide_identifiers = hide
        self._update_title()
        self._update_annotations()
        study = self.current_study()
        if study is not None:
            self._status_for_study(study)
        else:
            self.statusBar().clearMessage()
        if self.canvas.message():
            image = self.current_image()
            if image is not None and image.state == State.ERROR and study is not None:
                self.canvas.show_message(f"This file could not be opened.\n{scrub(image.message, study, hide)}")
        if study is not None and self.current_image() is not None:
            self._fill_image_combo(study, self.current_image())
        if self._displayed_image:
            self._refresh_findings()
        if self._info_dialog is not None and self._info_dialog.isVisible():
            self._info_dialog.close()
            self.show_study_info()

    def _update_title(self) -> None:
        study = self.current_study()
        if study is None:
            self.setWindowTitle(f"cxrviewer — {NOTICE.lower()}")
            return
        hide = self.hide_identifiers
        parts = [study.title(hide)]
        date = study.date_text(hide)
        if date:
            parts.append(date)
        self.setWindowTitle(f"{' · '.join(parts)} — cxrviewer")

    def _update_annotations(self) -> None:
        study, image = self.current_study(), self.current_image()
        if study is None or image is None or not self.canvas.has_image():
            return
        hide = self.hide_identifiers
        meta = self.canvas.image.meta
        left = [study.title(hide)]
        if not hide and study.patient_id:
            left.append(f"ID {study.patient_id}")
        if study.date_text(hide):
            left.append(study.date_text(hide))
        if study.description:
            left.append(study.description)
        right = [
            " ".join(x for x in (meta.modality, meta.view_position) if x) or meta.source_format.upper(),
            f"{self.canvas.image.width} × {self.canvas.image.height}",
        ]
        if meta.pixel_spacing:
            right.append(f"{meta.pixel_spacing[1]:.3f} mm/px")
        right += list(meta.notes)
        self.canvas.set_annotations(left, right)

    def _status_for_study(self, study: StudyRecord) -> None:
        hide = self.hide_identifiers
        top = study.top_finding()
        text = f"{study.title(hide)}: {study.state.value}"
        if top is not None and top[0].positive:
            text += f" — top finding {top[0].label} {percent(top[0].probability)}"
        elif study.message:
            text += f" — {scrub(study.message, study, hide)}"
        self.statusBar().showMessage(text, 8000)

    # --- status bar ---

    def _on_cursor(self, info: Any) -> None:
        if info is None:
            self.pixel_label.setText("")
            return
        x, y, value = info
        text = f"x {x}  y {y}"
        if value is not None:
            text += f"   value {value:g}"
        self.pixel_label.setText(text)

    def _update_enabled(self) -> None:
        has_image = self.canvas.has_image()
        for action in self.image_actions:
            action.setEnabled(has_image)
        self.preset_combo.setEnabled(has_image)
        has_study = self.current_study() is not None
        for action in self.study_actions:
            action.setEnabled(has_study)
        self.act_clear.setEnabled(bool(self.studies))
        remote = self.pacs is not None and self.pacs.settings.config.remote is not None
        self.act_pacs_send.setEnabled(has_study and remote)

    def _on_view_changed(self) -> None:
        window = self.canvas.window
        parts = []
        if window is not None:
            parts.append(f"W {window.width:.0f} / L {window.center:.0f}")
        if self.canvas.has_image():
            parts.append(f"{self.canvas.zoom:.0%}")
        self.view_label.setText("   ".join(parts))

    # --- actions ---

    def analyse_anyway(self) -> None:
        study, image = self.current_study(), self.current_image()
        if study is None or image is None or image.state != State.REJECTED:
            return
        self._requeue(study, image, force=True)

    def reanalyse_current(self) -> None:
        study = self.current_study()
        if study is None:
            return
        for image in study.images:
            if image.state not in (State.QUEUED, State.ANALYSING):
                self._requeue(study, image, force=image.forced)

    def _requeue(self, study: StudyRecord, image: ImageRecord, force: bool) -> None:
        image.forced = force
        for cached_key in [k for k in self._overlays if k[0] == image.key]:
            del self._overlays[cached_key]
        image.state = State.QUEUED
        image.message = ""
        image.prediction = None
        cached = self._cache.get(image.key)
        self.pipeline.enqueue(image.key, image.path, force=force, image=cached.image if cached else None, front=True)
        self.browser.model.changed(study.key)
        if image.key == self._displayed_image:
            self._selected_label = None
            self._refresh_findings()

    def cancel_queued(self) -> None:
        self.pipeline.cancel_all(analyses_only=True)
        self.statusBar().showMessage("Queued analyses cancelled.", 5000)

    def _on_cancelled(self, key: str) -> None:
        found = self._lookup(key)
        if found is None or self._closing or self.pipeline.is_pending(key):
            return
        study, image = found
        if image.state in (State.QUEUED, State.ANALYSING):
            image.state = State.NOT_ANALYSED
            image.message = "analysis cancelled"
            self.browser.model.changed(study.key)
            if key == self._displayed_image:
                self._refresh_findings()
            self.study_updated.emit(study.key)

    def remove_current_study(self) -> None:
        key = self._displayed_study
        if key:
            self.remove_study(key)

    def remove_study(self, key: str) -> None:
        study = self.studies.pop(key, None)
        if study is None:
            return
        for image in study.images:
            self.pipeline.cancel(image.key)
            self._image_index.pop(image.key, None)
            self._cache.pop(image.key, None)
        self.browser.model.remove(key)
        if key == self._displayed_study:
            self.show_study(self.browser.current_key())

    def clear_studies(self) -> None:
        self._scan_generation += 1  # rows of a drop still being added are not wanted any more
        for key in list(self.studies):
            self.remove_study(key)
        self.show_study("")

    # --- dialogs ------------------------------------------------------------------------------------------

    def show_model_card(self) -> ModelCardDialog | None:
        if self.engine is None:
            QMessageBox.information(
                self, "Model card", f"No model is loaded.\n{self._model_error}\n{backend.NO_MODEL_HINT}"
            )
            return None
        dialog = ModelCardDialog(self.engine, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def show_about(self) -> AboutDialog:
        dialog = AboutDialog(getattr(self.engine, "card", None), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def show_study_info(self) -> StudyInfoDialog | None:
        study, image = self.current_study(), self.current_image()
        if study is None or image is None:
            return None
        decoded = self._cache.get(image.key)
        dialog = StudyInfoDialog(study, decoded.image if decoded else None, self.hide_identifiers, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(lambda *_: setattr(self, "_info_dialog", None))
        self._info_dialog = dialog
        dialog.open()
        return dialog

    def show_shortcuts(self) -> None:
        lines = [
            (
                a.text().rstrip("…"),
                ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in a.shortcuts()),
            )
            for a in self.actions()
            if a.shortcuts() and not a.text().startswith("Window preset")
        ]
        lines.append(("Window/level presets", "1 – 9"))
        lines += [
            ("Zoom at the cursor", "mouse wheel"),
            ("Pan", "left or middle drag"),
            ("Window/level", "right drag: ←/→ width, ↑/↓ level"),
            ("Fit", "double click"),
        ]
        rows = "".join(f"<tr><td>{t}</td><td style='padding-left:18px'><b>{k}</b></td></tr>" for t, k in lines)
        box = QMessageBox(self)
        box.setWindowTitle("Keyboard shortcuts")
        box.setText(f"<table>{rows}</table>")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _study_context_menu(self, key: str, pos: QPoint) -> None:
        study = self.studies.get(key)
        if study is None:
            return
        menu = QMenu(self)
        menu.addAction(self.act_info)
        menu.addAction(self.act_reanalyse)
        if any(img.state == State.REJECTED for img in study.images):
            menu.addAction(self.act_anyway)
        menu.addSeparator()
        export = menu.addMenu("Export")
        for fmt, _ in EXPORT_FORMATS:
            export.addAction(self.export_actions[fmt])
        export.addSeparator()
        export.addAction(self.export_actions["all"])
        if self.pacs is not None:
            menu.addAction(self.act_pacs_send)
        menu.addSeparator()
        copy = menu.addAction("Copy file path")
        copy.setEnabled(not self.hide_identifiers)
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(str(study.images[0].path)))
        menu.addAction(self.act_remove)
        menu.popup(pos)

    # --- PACS (cxrviewer.gui.pacs; loaded only when the user configured it) ---

    @staticmethod
    def _pacs_module() -> Any:
        if importlib.util.find_spec("cxrviewer.gui.pacs") is None:
            return None
        import cxrviewer.gui.pacs as pacs

        return pacs

    def _pacs_configured(self) -> bool:
        q = self.settings.q
        enabled = str(q.value("pacs/enabled", "false")).strip().lower() in {"1", "true", "yes", "on"}
        return enabled or bool(str(q.value("pacs/remote_host", "") or "").strip())

    def _start_pacs_if_configured(self) -> None:
        if not self._closing and self._pacs_configured():
            self._ensure_pacs()

    def _ensure_pacs(self) -> Any:
        """The PACS service, created on first use with the stored settings (None if unavailable)."""
        if self.pacs is not None:
            return self.pacs
        module = self._pacs_module()
        if module is None:
            return None
        service = module.PacsService(self)
        service.received.connect(self._on_pacs_received)
        service.refused.connect(lambda text: self.statusBar().showMessage(f"PACS: refused {text}", 10000))
        service.state_changed.connect(self._on_pacs_state)
        service.send_finished.connect(self._on_pacs_sent)
        service.send_failed.connect(lambda text: self.statusBar().showMessage(f"PACS: {text}", 15000))
        self.pacs = service
        service.apply(module.load_pacs_settings(self.settings.q))
        self._update_enabled()
        return service

    def show_pacs_preferences(self) -> Any:
        module = self._pacs_module()
        if module is None:
            self.statusBar().showMessage("PACS support is not installed.", 8000)
            return None
        dialog = module.PacsPreferencesDialog(module.load_pacs_settings(self.settings.q), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._apply_pacs_settings(dialog.result_settings()))
        dialog.open()
        return dialog

    def _apply_pacs_settings(self, new: Any) -> None:
        module = self._pacs_module()
        module.save_pacs_settings(self.settings.q, new)
        service = self._ensure_pacs()
        if service is not None:
            service.apply(new)
        self._update_enabled()

    def _on_pacs_received(self, path: str) -> None:
        if not self._closing:
            self.open_paths([Path(path)])

    def _on_pacs_state(self, text: str) -> None:
        self.pacs_status.setText(f"PACS: {text}")
        self.pacs_status.setVisible(True)

    def _on_pacs_sent(self, report: Any) -> None:
        summary = getattr(report, "summary", None)
        text = summary() if callable(summary) else str(summary or "results sent")
        self.statusBar().showMessage(f"PACS: {text}", 15000)

    def send_current_to_pacs(self) -> bool:
        study = self.current_study()
        return study is not None and self._send_to_pacs(study)

    def _send_to_pacs(self, study: StudyRecord) -> bool:
        service = self._ensure_pacs()
        done = [img for img in study.images if img.prediction is not None and img.state == State.DONE]
        if service is None or not done:
            self.statusBar().showMessage("PACS: nothing to send (no analysed image in this study).", 8000)
            return False
        images = []
        for rec in done:
            decoded = self._cache.get(rec.key)
            try:
                images.append(decoded.image if decoded is not None else backend.load(rec.path))
            except backend.model_errors() as exc:
                self.statusBar().showMessage(f"PACS: {scrub(str(exc), study, self.hide_identifiers)}", 10000)
                return False
        card = getattr(self.engine, "card", None) or {}
        service.send_study(images, [rec.prediction for rec in done], card)
        self._sent_to_pacs.add(study.key)
        self.statusBar().showMessage("PACS: sending the results…", 8000)
        return True

    def _maybe_auto_send(self, study: StudyRecord) -> None:
        service = self.pacs
        if (
            service is None
            or not service.auto_send
            or study.key in self._sent_to_pacs
            or any(img.state in (State.QUEUED, State.ANALYSING) for img in study.images)
        ):
            return
        self._send_to_pacs(study)

    # --- exports ------------------------------------------------------------------------------------------

    def exports_available(self) -> bool:
        return importlib.util.find_spec("cxrviewer.report.export") is not None

    def export_dialog(self, formats: set[str] | None) -> None:
        study = self.current_study()
        if study is None:
            self.statusBar().showMessage("Select a study to export.", 5000)
            return
        anonymise = self.hide_identifiers
        title = "Export to folder" + (" (anonymised: identifiers are hidden)" if anonymise else "")
        folder = QFileDialog.getExistingDirectory(self, title, self.settings.last_folder)
        if not folder:
            return
        self.export_current(Path(folder), formats, anonymise)

    def export_current(
        self,
        folder: Path,
        formats: set[str] | None = None,
        anonymise: bool | None = None,
    ) -> list[Path]:
        """Export the displayed study with the exports module; messages go to the status bar."""
        study = self.current_study()
        if study is None:
            return []
        if not self.exports_available():
            self.statusBar().showMessage("Exports are not available in this installation.", 8000)
            return []
        from cxrviewer.report import export as exporter

        anonymise = self.hide_identifiers if anonymise is None else anonymise
        images, predictions, windows, displays = [], [], [], []
        for rec in study.images:
            if rec.state == State.ERROR:
                continue
            decoded = self._cache.get(rec.key)
            try:
                image = decoded.image if decoded is not None else backend.load(rec.path)
            except backend.model_errors() as exc:
                self.statusBar().showMessage(f"Export skipped an image: {scrub(str(exc), study, anonymise)}", 8000)
                continue
            images.append(image)
            predictions.append(rec.prediction)
            shown = rec.key == self._displayed_image
            windows.append(self._window_preset() if shown else None)
            displays.append(self.canvas.display_array() if shown else None)
        if not images:
            self.statusBar().showMessage("Nothing to export: no image of this study could be opened.", 8000)
            return []
        chosen = set(formats) if formats else set(exporter.FORMATS)
        if formats is None:
            chosen = set(exporter.applicable_formats(images, chosen))
        card = getattr(self.engine, "card", None) or {}
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            written = exporter.export_study(
                images,
                predictions,
                card,
                folder,
                chosen,
                anonymise,
                windows,
                self._selected_label,
                invert=self.canvas.inverted,
                displays=displays,
                alpha=self.canvas.overlay_opacity,
            )
        except Exception as exc:  # ExportError (plain message) or anything unexpected
            QApplication.restoreOverrideCursor()
            message = str(exc) if type(exc).__name__ == "ExportError" else f"export failed ({type(exc).__name__})"
            if type(exc).__name__ != "ExportError":
                log.exception("export failed")
            QMessageBox.warning(self, "Export", scrub(message, study, anonymise))
            return []
        QApplication.restoreOverrideCursor()
        self.settings.last_folder = folder
        self.statusBar().showMessage(f"Exported {len(written)} file(s) to {folder}", 10000)
        return written

    def _window_preset(self) -> Any:
        window = self.canvas.user_window
        if window is None:  # the file's own VOI
            return None
        from cxrviewer.imaging.image import WindowPreset

        return WindowPreset(window.center, window.width, window.name)

    def _on_sort_mode(self, mode: str) -> None:
        self.settings.sort_mode = mode
