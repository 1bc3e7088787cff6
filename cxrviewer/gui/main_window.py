"""The main window: study browser | image canvas | findings panel, and what happens between them.

Where things live: the commands, menus and toolbar are tables in `actions`; the studies and their state
machine in `worklist` (no Qt); the decoded-image and heat-map caches in `caches`; opening files and the
pipeline's results in `intake`; what the canvas and findings panel show in `display`; the W/L preset box
in `wl_presets`; the status bar in `status_bar`; exports in `exports`; PACS in `pacs_link` (window side)
and `pacs` (settings, dialog, the node controller); the start screen in `welcome`. This module builds
the window, wires the parts together, enables actions and opens the dialogs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from PySide6.QtCore import QPoint, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent, QGuiApplication, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from cxrviewer.gui import assets, backend
from cxrviewer.gui.actions import (
    CONTEXT_MENU,
    DICOM_STUDY,
    IMAGE,
    MAX_PRESETS,
    MODEL,
    MOUSE_HELP,
    PACS_REMOTE,
    REJECTED,
    STUDIES,
    STUDY,
    ActionTable,
    preset_condition,
)
from cxrviewer.gui.caches import ImageCache, OverlayCache
from cxrviewer.gui.dialogs import AboutDialog, ModelCardDialog, StudyInfoDialog, shortcuts_box
from cxrviewer.gui.exports import StudyExporter, exports_available
from cxrviewer.gui.film_display import FilmDisplay, FilmWidgets
from cxrviewer.gui.findings_panel import FindingsPanel
from cxrviewer.gui.image_view import CanvasTool, ImageCanvas
from cxrviewer.gui.intake import Intake, IntakeWidgets
from cxrviewer.gui.pacs_link import PacsLink
from cxrviewer.gui.records import ImageRecord, State, StudyRecord
from cxrviewer.gui.settings import AppSettings
from cxrviewer.gui.site_calibration import SiteCalibration
from cxrviewer.gui.status_bar import StatusBar
from cxrviewer.gui.study_browser import SORT_MODES, StudyBrowser
from cxrviewer.gui.viewer_state import ViewerState
from cxrviewer.gui.welcome import WelcomePage
from cxrviewer.gui.wl_presets import PresetBox
from cxrviewer.gui.workers import Pipeline
from cxrviewer.gui.worklist import Entry, Worklist

if TYPE_CHECKING:
    from cxrviewer.gui.pacs import PacsController, PacsPreferencesDialog
    from cxrviewer.model.card import ModelCard
    from cxrviewer.model.inference import Engine

log = logging.getLogger(__name__)

D = TypeVar("D", bound=QDialog)


def _first_size() -> QSize:
    """1400 x 880, or less on a smaller screen (the findings panel must not start off screen)."""
    screen = QGuiApplication.primaryScreen()
    if screen is None:
        return QSize(1400, 880)
    room = screen.availableGeometry().size()
    return QSize(min(1400, max(760, room.width() - 40)), min(880, max(520, room.height() - 60)))


class MainWindow(QMainWindow):
    """cxrviewer's main window. All slots run in the GUI thread; work goes through `Pipeline`."""

    study_updated = Signal(str)  # study key: its state or results changed
    image_finished = Signal(str)  # image key: analysed, rejected, failed or left unanalysed
    displayed_changed = Signal(str)  # image key now on the canvas ("" for none)
    findings_shown = Signal(str)  # image key whose findings (and heat map) are now displayed

    def __init__(self, settings: AppSettings | None = None, model_source: backend.ModelSource | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.settings = settings or AppSettings()
        self.pipeline = Pipeline(model_source or backend.model_source(None), self)
        self.setWindowIcon(assets.icon("app"))
        self.setAcceptDrops(True)
        self.resize(_first_size())
        self.setMinimumSize(760, 520)

        self.state = ViewerState()  # what is shown, hidden identifiers, the model's status; no Qt (`viewer_state`)
        self.worklist = Worklist()
        self.images = ImageCache()
        self.overlays = OverlayCache()
        self.info_dialog: StudyInfoDialog | None = None
        self._shown_once = False
        self._closing = False

        self._build_widgets()
        self.status = StatusBar(self.statusBar())
        self.display = self._film_display()  # the displayed study and image (before the actions, which call it)
        self.intake = self._intake()  # opening files, pipeline results (before the actions, which call it)
        self.site = SiteCalibration(self.findings, self.display, self.worklist, self.overlays,  # site operating
                                    lambda: self.pipeline.engine, self.browser.model.changed, self)  # points, feedback
        self.exporter = StudyExporter(self.state, self.worklist, self.images, self.canvas, self.settings,
                                      engine=lambda: self.pipeline.engine, status=self.statusBar(), parent=self)
        self.table = ActionTable(self)
        self.table.build_menu_bar(self.menuBar())
        self.presets = PresetBox(self.canvas, self.table.menus["presets"], self)
        wl = QLabel(" W/L ")
        wl.setToolTip(self.presets.combo.toolTip())
        self.toolbar = self.table.build_toolbar({"wl_label": wl, "presets": self.presets.combo})
        self.addToolBar(self.toolbar)
        self.pacs_link = PacsLink(self.state, self.images, self.settings, lambda: self.pipeline.engine, self.status,
                                  self, open_paths=self.open_paths, refresh_actions=self.update_enabled,
                                  closing=lambda: self._closing)
        self._connect()
        self._restore_settings()
        self.display.update_title()
        self.update_enabled()

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
        self.viewer_bar = QWidget()
        self.viewer_bar.setObjectName("viewerBar")
        bar_layout = QHBoxLayout(self.viewer_bar)
        bar_layout.setContentsMargins(8, 3, 8, 3)
        self.image_combo = QComboBox()
        self.image_combo.setObjectName("imageCombo")
        self.image_combo.setToolTip("Images of this study (Page Up / Page Down)")
        self.image_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.image_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.image_combo.setMinimumWidth(200)
        bar_layout.addWidget(self.image_combo)
        bar_layout.addStretch(1)
        self.viewer_bar.hide()
        viewer_layout.addWidget(self.viewer_bar)
        viewer_layout.addWidget(self.canvas, 1)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(viewer)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        for i, (widget, stretch) in enumerate(((self.browser, 0), (self.stack, 1), (self.findings, 0))):
            self.splitter.addWidget(widget)
            self.splitter.setStretchFactor(i, stretch)
        self.splitter.setSizes([350, 740, 330])
        self.splitter.setChildrenCollapsible(False)
        self.browser.setMinimumWidth(max(300, self.browser.minimumSizeHint().width()))
        self.setCentralWidget(self.splitter)

    def _film_display(self) -> FilmDisplay:
        widgets = FilmWidgets(self.canvas, self.findings, self.image_combo, self.viewer_bar, self.stack,
                              self.statusBar())
        return FilmDisplay(self.state, self.worklist, self.images, self.overlays, self.pipeline,
                           lambda: self.pipeline.engine, widgets, set_title=self.setWindowTitle,
                           refresh_actions=self.update_enabled, fill_presets=lambda d: self.presets.fill(d),
                           heatmap=lambda: self.table["heatmap"], displayed_changed=self.displayed_changed.emit,
                           findings_shown=self.findings_shown.emit, refresh_info=self._refresh_study_info)

    def _intake(self) -> Intake:
        widgets = IntakeWidgets(self.browser, self.canvas, self.findings, self.welcome, self.status, self)
        return Intake(self.state, self.worklist, self.pipeline, self.images, self.settings, self.display, widgets,
                      refresh_actions=self.update_enabled, study_updated=self.study_updated.emit,
                      image_finished=self.image_finished.emit,
                      auto_send=lambda study: self.pacs_link.maybe_auto_send(study),  # built after the actions
                      closing=lambda: self._closing)

    def _when_listed(self, change: Callable[..., Entry | None], then: Callable[..., None]) -> Callable[..., None]:
        """A pipeline slot: apply `change` to the worklist, then `then(entry, *args)` — only for listed
        images and while the window is open (results of removed studies are dropped here, once)."""

        def slot(key: str, *args: Any) -> None:
            if not self._closing:
                entry = change(key, *args)
                if entry is not None:
                    then(entry, *args)

        return slot

    def _connect(self) -> None:
        p, w = self.pipeline, self.worklist
        i, d = self.intake, self.display
        p.scanned.connect(i.on_scanned)
        p.started.connect(self._when_listed(w.started, i.after_change))
        p.loaded.connect(self._when_listed(lambda key, decoded: w.entry(key), i.on_loaded))
        p.overlay_ready.connect(self.overlays.put)
        p.outlined.connect(d.on_outline)
        p.analysed.connect(self._when_listed(w.analysed, i.after_result))
        p.failed.connect(self._when_listed(w.failed, i.after_failure))
        p.unanalysed.connect(self._when_listed(w.unanalysed, i.after_result))
        p.cancelled.connect(self._when_listed(i.cancel_if_not_pending, i.after_cancel))
        p.model_ready.connect(i.on_model_ready)
        p.model_ready.connect(self.site.on_model_ready)  # before any analysis starts (the pipeline pumps after)
        p.model_failed.connect(i.on_model_failed)
        p.progress.connect(self.status.show_progress)
        p.idle.connect(self.status.progress.hide)
        self.browser.current_changed.connect(d.show_study)
        self.browser.context_menu_requested.connect(self.study_context_menu)
        self.browser.hide_identifiers_toggled.connect(self.set_hide_identifiers)
        self.state.subscribe(self._on_state_changed)
        self.canvas.cursor_info.connect(self.status.show_cursor)
        self.canvas.view_changed.connect(self.update_enabled)
        self.canvas.tool_changed.connect(self._on_tool_changed)
        self.canvas.measurementChanged.connect(self._on_measurement)
        self.findings.finding_selected.connect(d.show_finding)
        self.findings.analyse_anyway.connect(self.analyse_anyway)
        self.findings.model_card_requested.connect(self.show_model_card)
        self.findings.heatmap_toggled.connect(self.table["heatmap"].setChecked)
        self.findings.opacity_changed.connect(self._on_opacity)
        self.image_combo.currentIndexChanged.connect(d.on_image_combo)
        self.welcome.open_files.clicked.connect(i.open_files_dialog)
        self.welcome.open_folder.clicked.connect(i.open_folder_dialog)
        self.welcome.demo.clicked.connect(i.open_demo)

    def _restore_settings(self) -> None:
        geometry, state = self.settings.geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.splitter.restoreState(state)
        self.canvas.set_overlay_opacity(self.settings.opacity)
        self.findings.set_opacity(self.settings.opacity)
        if self.settings.sort_mode in SORT_MODES:
            self.browser.set_sort_mode(self.settings.sort_mode)
        self.browser.sort_combo.currentTextChanged.connect(lambda mode: setattr(self.settings, "sort_mode", mode))
        self.set_hide_identifiers(self.settings.hide_identifiers)

    def save_settings(self) -> None:
        self.settings.save_geometry(self.saveGeometry(), self.splitter.saveState())
        self.settings.opacity = self.canvas.overlay_opacity
        self.settings.hide_identifiers = self.state.hide_identifiers
        self.settings.sync()

    def _on_state_changed(self, changed: frozenset[str]) -> None:
        """The Qt side follows the `ViewerState`: the hide-identifiers action, the browser's button, the stored
        setting and every displayed text follow its flag, whoever set it."""
        if "hide_identifiers" in changed:
            hide = self.state.hide_identifiers
            self.table["hide_ids"].setChecked(hide)  # re-entries find the state already set: no loop
            self.browser.set_hide_identifiers(hide)
            self.settings.hide_identifiers = hide
            self.display.apply_identifier_mode()

    # --- events ---

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            # lazily, once the window is on screen and the film being opened is shown
            QTimer.singleShot(0, lambda: self.pipeline.load_model(when_free=True))
            QTimer.singleShot(0, self.pacs_link.start_if_configured)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self._closing:
            self._closing = True
            self.save_settings()
            self.hide()
            self.pacs_link.shutdown()
            self.pipeline.shutdown()
        event.accept()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)
        else:
            event.ignore()

    # --- state shared with the helpers ---

    @property
    def studies(self) -> dict[str, StudyRecord]:
        return self.worklist.studies

    @property
    def pacs(self) -> PacsController | None:
        """The `pacs.PacsController` once PACS is configured (None before)."""
        return self.pacs_link.controller

    @property
    def closing(self) -> bool:
        """The window is closing: results still arriving are dropped."""
        return self._closing

    @property
    def engine(self) -> Engine | None:
        return self.pipeline.engine

    @property
    def model_error(self) -> str:
        """Why no model is available ("" while it loads or once it is ready)."""
        return self.state.model.message

    def model_card(self) -> ModelCard | None:
        """The loaded model's card (None without a model)."""
        return getattr(self.engine, "card", None)

    @property
    def hide_identifiers(self) -> bool:
        return self.state.hide_identifiers

    @property
    def displayed_study(self) -> str:
        return self.display.displayed_study

    @property
    def displayed_image(self) -> str:
        return self.display.displayed_image

    @property
    def selected_label(self) -> str | None:
        return self.display.selected_label

    def current_study(self) -> StudyRecord | None:
        return self.display.current_study()

    def current_image(self) -> ImageRecord | None:
        return self.display.current_image()

    def message(self, text: str, ms: int = 8000) -> None:
        self.display.message(text, ms)

    def open_paths(self, paths: Sequence[Path | str], remember: bool = True, show: bool = True) -> int:
        return self.intake.open_paths(paths, remember, show)

    def open_demo(self) -> None:
        self.intake.open_demo()

    def show_study(self, key: str) -> None:
        self.display.show_study(key)

    def set_hide_identifiers(self, hide: bool) -> None:
        """Hide or show identifiers everywhere: sets the state's flag, which everything else follows."""
        self.state.update(hide_identifiers=bool(hide))

    def apply_preset(self, index: int) -> None:
        self.presets.apply(index)

    def _on_opacity(self, opacity: float) -> None:
        self.canvas.set_overlay_opacity(opacity)
        self.settings.opacity = opacity

    def set_canvas_tool(self, tool: CanvasTool, checked: bool = True) -> None:
        """Tools ▸ pan / ruler / cardiothoracic ratio (exclusive actions: only the checked one acts)."""
        if checked:
            self.canvas.set_tool(tool)
            hint = self.canvas.tool_hint()
            if hint:
                self.message(hint, 10000)

    def _on_measurement(self, text: str) -> None:
        if text:
            self.message(text, 15000)

    def _on_tool_changed(self, tool: CanvasTool) -> None:
        action = self.table[f"tool_{tool.value}"]
        if not action.isChecked():
            action.setChecked(True)  # Esc on the canvas returns to pan

    def conditions(self) -> dict[str, bool]:
        """What the actions' `enabled_when` conditions refer to (see `actions`)."""
        study, image = self.current_study(), self.current_image()
        has_image = self.canvas.has_image()
        out = {
            IMAGE: has_image,
            STUDY: study is not None,
            STUDIES: bool(self.studies),
            MODEL: self.engine is not None,
            REJECTED: image is not None and image.state == State.REJECTED,
            DICOM_STUDY: study is not None and study.dicom,
            PACS_REMOTE: study is not None and self.pacs_link.has_remote(),
        }
        for i in range(MAX_PRESETS):
            out[preset_condition(i)] = has_image and i < len(self.presets.presets)
        return out

    def update_enabled(self) -> None:
        self.table.update_enabled(self.conditions())
        self.presets.combo.setEnabled(self.canvas.has_image())

    # --- actions ---

    def analyse_anyway(self) -> None:
        study, image = self.current_study(), self.current_image()
        if study is not None and image is not None and image.state == State.REJECTED:
            self._requeue(study, image, force=True)

    def reanalyse_current(self) -> None:
        study = self.current_study()
        if study is None:
            return
        for image in study.images:
            if image.state not in (State.QUEUED, State.ANALYSING):
                self._requeue(study, image, force=image.forced)

    def _requeue(self, study: StudyRecord, image: ImageRecord, force: bool) -> None:
        self.overlays.drop_image(image.key)
        self.worklist.requeue(image.key, force)
        cached = self.images.peek(image.key)
        self.pipeline.enqueue(image.key, image.path, force=force, image=cached.image if cached else None, front=True)
        self.browser.model.changed(study.key)
        if image.key == self.displayed_image:
            self.display.selected_label = None
            self.display.refresh_findings()

    def cancel_queued(self) -> None:
        self.pipeline.cancel_all(analyses_only=True)
        self.message("Queued analyses cancelled.", 5000)

    def remove_current_study(self) -> None:
        if self.displayed_study:
            self.remove_study(self.displayed_study)

    def remove_study(self, key: str) -> None:
        study = self.worklist.remove(key)
        if study is None:
            return
        for image in study.images:
            self.pipeline.cancel(image.key)
            self.images.pop(image.key)
        self.browser.model.remove(key)
        if key == self.displayed_study:
            self.display.show_study(self.browser.current_key())

    def clear_studies(self) -> None:
        self.intake.forget_scans()
        for key in list(self.studies):
            self.remove_study(key)
        self.display.show_study("")

    # --- exports and PACS (see `exports`, `pacs_link`) ---

    def exports_available(self) -> bool:
        return exports_available()

    def export_dialog(self, formats: set[str] | frozenset[str] | None) -> None:
        self.exporter.dialog(formats)

    def export_current(self, folder: Path, formats: set[str] | None = None,
                       anonymise: bool | None = None) -> list[Path]:
        """Export the displayed study; messages go to the status bar."""
        return self.exporter.export(folder, formats, anonymise)

    def show_pacs_preferences(self) -> PacsPreferencesDialog:
        return self.pacs_link.show_preferences()

    def send_current_to_pacs(self) -> bool:
        study = self.current_study()
        return study is not None and self.pacs_link.send(study)

    # --- dialogs ---

    def _open_dialog(self, dialog: D) -> D:
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def show_model_card(self) -> ModelCardDialog | None:
        if self.engine is None:
            QMessageBox.information(
                self, "Model card",
                f"No model is loaded.\n{self.model_error}\n{backend.no_model_hint(self.model_error)}"
            )
            return None
        return self._open_dialog(self.site.card_dialog())

    def show_about(self) -> AboutDialog:
        return self._open_dialog(AboutDialog(self.model_card(), self))

    def show_study_info(self) -> StudyInfoDialog | None:
        study, image = self.current_study(), self.current_image()
        if study is None or image is None:
            return None
        decoded = self.images.peek(image.key)
        dialog = StudyInfoDialog(study, decoded.image if decoded else None, self.state.hide_identifiers,
                                  self)
        dialog.destroyed.connect(lambda *_: setattr(self, "info_dialog", None))
        self.info_dialog = dialog
        return self._open_dialog(dialog)

    def _refresh_study_info(self) -> None:
        """Reopen the study-info dialog when it is shown (its texts follow the hidden identifiers)."""
        if self.info_dialog is not None and self.info_dialog.isVisible():
            self.info_dialog.close()
            self.show_study_info()

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """What Help ▸ Keyboard shortcuts lists: the actions' keys, the displayed image's presets, the mouse."""
        presets = self.presets.help_rows() or [("Window/level presets", "1, 2, … (listed once an image is open)")]
        return self.table.shortcut_rows() + presets + list(MOUSE_HELP)

    def show_shortcuts(self) -> QMessageBox:
        return self._open_dialog(shortcuts_box(self.shortcut_rows(), self))

    def study_context_menu(self, key: str, pos: QPoint) -> QMenu | None:
        study = self.worklist.study(key)
        if study is None:
            return None
        applies = {
            "anyway": any(img.state == State.REJECTED for img in study.images),
            "pacs_send": self.pacs is not None,
        }
        menu = QMenu(self)
        self.table.fill_menu(menu, CONTEXT_MENU, keep=lambda action_id: applies.get(action_id, True))
        copy = QMenu.addAction(menu, "Copy file path")
        menu.insertAction(self.table["remove"], copy)
        copy.setEnabled(not self.state.hide_identifiers)
        path = str((self.current_image() or study.images[0]).path)
        copy.triggered.connect(lambda: QGuiApplication.clipboard().setText(path))
        menu.popup(pos)
        return menu
