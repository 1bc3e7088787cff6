"""Every command of the main window as data: actions, menus, the toolbar and the study context menu.

An `ActionSpec` names an action (id, text, shortcuts, icon, the window method it calls and when it is
enabled); `ActionTable` turns the specs into `QAction`s in one place, lays out menus and the toolbar from
the tables below and enables actions from a dict of conditions the window computes (`update_enabled`).
To add a command: one `ActionSpec` line, its id in a menu or toolbar tuple, and the window method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QToolBar, QWidget

from cxrviewer.gui import assets
from cxrviewer.gui.image_view import CanvasTool

Shortcut = str | QKeySequence.StandardKey

# Conditions an action can depend on (the window computes them in `MainWindow.conditions`).
IMAGE = "image"  # an image is on the canvas
STUDY = "study"  # a study is displayed
STUDIES = "studies"  # the worklist is not empty
MODEL = "model"  # a model is loaded
REJECTED = "rejected"  # the displayed image was rejected by the input check
DICOM_STUDY = "dicom study"  # the displayed study is DICOM (SR / Secondary Capture possible)
PACS_REMOTE = "pacs remote"  # a study is displayed and a remote PACS is configured
MAX_PRESETS = 9


def preset_condition(index: int) -> str:
    """Condition "window preset `index` (0-based) exists for the displayed image"."""
    return f"preset {index}"


@dataclass(frozen=True)
class ActionSpec:
    id: str
    text: str
    handler: str  # a window attribute path: "intake.open_demo", "canvas.fit"
    shortcuts: tuple[Shortcut, ...] = ()
    icon: str | None = None
    tip: str = ""
    args: tuple[Any, ...] = ()
    checkable: bool = False
    checked: bool = False
    enabled_when: tuple[str, ...] = ()  # every condition must hold; () = always enabled
    in_help: bool = True  # listed by Help ▸ Keyboard shortcuts
    group: str = ""  # checkable actions with the same group are exclusive (one checked at a time)


@dataclass(frozen=True)
class Submenu:
    title: str
    items: tuple[MenuItem, ...]
    icon: str | None = None
    name: str = ""  # how the window finds it (`ActionTable.menus[name]`)


#: A menu entry: an action id, a submenu or SEP.
MenuItem = str | Submenu | None
SEP = None
EXPORT_FORMATS = (
    ("png", "Annotated PNG…", (STUDY,)),
    ("pdf", "PDF report…", (STUDY,)),
    ("json", "JSON (cxrviewer-predict format)…", (STUDY,)),
    ("sr", "DICOM Structured Report…", (STUDY, DICOM_STUDY)),
    ("sc", "DICOM Secondary Capture…", (STUDY, DICOM_STUDY)),
)

A = ActionSpec
ACTIONS: tuple[ActionSpec, ...] = (
    A("open_files", "Open files…", "intake.open_files_dialog", (QKeySequence.StandardKey.Open,), "open-file"),
    A("open_folder", "Open folder…", "intake.open_folder_dialog", ("Ctrl+Shift+O",), "open-folder"),
    A("demo", "Open demo study", "intake.open_demo"),
    A("remove", "Remove study from list", "remove_current_study", ("Ctrl+W",), enabled_when=(STUDY,)),
    A("clear", "Clear list", "clear_studies", enabled_when=(STUDIES,)),
    A("quit", "Quit", "close", (QKeySequence.StandardKey.Quit,)),
    A("fit", "Fit to window", "canvas.fit", ("=",), "fit", enabled_when=(IMAGE,)),
    A("actual", "Actual pixels (1:1)", "canvas.actual_size", ("Ctrl+1", "0"), "actual-size", enabled_when=(IMAGE,)),
    A("zoom_in", "Zoom in", "canvas.zoom_by", ("+", "Ctrl++"), "zoom-in", args=(1.25,), enabled_when=(IMAGE,)),
    A("zoom_out", "Zoom out", "canvas.zoom_by", ("-", "Ctrl+-"), "zoom-out", args=(0.8,), enabled_when=(IMAGE,)),
    A("rotate", "Rotate 90° clockwise", "canvas.rotate_by", ("R",), "rotate", args=(90,), enabled_when=(IMAGE,)),
    A("rotate_left", "Rotate 90° counter-clockwise", "canvas.rotate_by", ("L",), args=(-90,),
      enabled_when=(IMAGE,)),
    A("invert", "Invert", "canvas.toggle_invert", ("I",), "invert", enabled_when=(IMAGE,)),
    A("reset", "Reset view", "canvas.reset_view", ("Space",), "reset",
      tip="Reset zoom, window/level, rotation and inversion", enabled_when=(IMAGE,)),
    A("flip", "Flip horizontally", "canvas.flip_horizontal", ("F",), "flip", enabled_when=(IMAGE,)),
    A("tool_pan", "Pan and zoom", "set_canvas_tool", ("P",), args=(CanvasTool.PAN,), checkable=True, checked=True,
      group="tool", tip="Left drag pans the film (Esc returns here from a measuring tool)"),
    A("tool_ruler", "Measure distance", "set_canvas_tool", ("M",), "ruler", args=(CanvasTool.RULER,),
      checkable=True, group="tool", enabled_when=(IMAGE,),
      tip="Left drag measures a distance (mm from the pixel spacing; detector mm are not calibrated)"),
    A("tool_ctr", "Cardiothoracic ratio", "set_canvas_tool", ("T",), "ctr", args=(CanvasTool.CTR,),
      checkable=True, group="tool", enabled_when=(IMAGE,),
      tip="Draw the heart's widest diameter, then the thorax's inner diameter"),
    A("clear_measurements", "Clear measurements", "canvas.clear_measurements", enabled_when=(IMAGE,)),
    A("magnifier", "Magnifier", "canvas.set_magnifier", ("G",), "magnifier", checkable=True, enabled_when=(IMAGE,),
      tip="A loupe under the cursor"),
    A("heatmap", "Heat map", "display.set_heatmap_visible", ("H",), "heatmap",
      tip="Show the selected finding's heat map", checkable=True, checked=True),
    A("lungs", "Lung outline", "display.set_lung_outline_visible", ("O",),
      tip="Outline the lung fields found on the film (a classical localiser; may miss on unusual films)",
      checkable=True),
    A("hide_ids", "Hide identifiers", "set_hide_identifiers", ("Ctrl+Shift+H",), "hide-ids",
      tip="Hide patient names, IDs and dates everywhere", checkable=True),
    A("next", "Next study", "browser.step", ("Down", "J"), args=(1,)),
    A("prev", "Previous study", "browser.step", ("Up", "K"), args=(-1,)),
    A("next_image", "Next image in study", "display.step_image", ("PgDown",), args=(1,)),
    A("prev_image", "Previous image in study", "display.step_image", ("PgUp",), args=(-1,)),
    A("info", "Study information…", "show_study_info", ("Ctrl+I",), "info", enabled_when=(STUDY,)),
    A("anyway", "Analyse anyway", "analyse_anyway", icon="analyse",
      tip="Run the model on an image the input check rejected", enabled_when=(REJECTED,)),
    A("reanalyse", "Re-analyse study", "reanalyse_current", enabled_when=(STUDY,)),
    A("cancel", "Cancel queued analyses", "cancel_queued"),
    A("model_card", "Model card…", "show_model_card", ("Ctrl+M",), "model", enabled_when=(MODEL,)),
    A("feedback", "Reader feedback on this film…", "site.record_feedback", enabled_when=(STUDY, MODEL),
      tip="Agree or disagree with each finding; the verdicts fit this site's operating points (Model card)"),
    A("pacs_prefs", "PACS connection…", "show_pacs_preferences",
      tip="Receive studies from a PACS and send results back (off by default)"),
    A("pacs_send", "Send results to PACS", "send_current_to_pacs",
      tip="Store the DICOM SR and Secondary Capture of this study on the PACS",
      enabled_when=(PACS_REMOTE, DICOM_STUDY)),
    A("about", "About cxrviewer…", "show_about"),
    A("keys", "Keyboard shortcuts…", "show_shortcuts", ("F1",)),
    *(A(f"export_{fmt}", text, "export_dialog", args=(frozenset({fmt}),), enabled_when=when)
      for fmt, text, when in EXPORT_FORMATS),
    A("export_all", "Export all formats…", "export_dialog", ("Ctrl+E",), "export", args=(None,),
      enabled_when=(STUDY,)),
    *(A(f"preset_{i + 1}", f"Window preset {i + 1}", "apply_preset", (str(i + 1),), args=(i,),
        enabled_when=(IMAGE, preset_condition(i)), in_help=False) for i in range(MAX_PRESETS)),
)

EXPORT_MENU = Submenu("Export", (*(f"export_{fmt}" for fmt, _, _ in EXPORT_FORMATS), SEP, "export_all"), "export",
                      name="export")
MENUS: tuple[Submenu, ...] = (
    Submenu("&File", ("open_files", "open_folder", "demo", SEP, EXPORT_MENU, "pacs_send", SEP, "pacs_prefs", SEP,
                      "remove", "clear", SEP, "quit")),
    Submenu("&View", ("fit", "actual", "zoom_in", "zoom_out", SEP, "rotate", "rotate_left", "flip", "invert", "reset",
                      SEP,
                      Submenu("Window/level presets", (), name="presets"), SEP, "heatmap", "lungs", "hide_ids", SEP,
                      "next", "prev", "next_image", "prev_image", SEP, "info")),
    Submenu("&Tools", ("tool_pan", "tool_ruler", "tool_ctr", SEP, "clear_measurements", SEP, "magnifier")),
    Submenu("&Analysis", ("anyway", "reanalyse", "cancel", SEP, "feedback", "model_card")),
    Submenu("&Help", ("keys", "model_card", SEP, "about")),
)
#: Toolbar items: action ids, SEP, or "widget:<name>" for a widget the window passes in.
TOOLBAR: tuple[str | None, ...] = (
    "open_files", "open_folder", SEP, "fit", "actual", "zoom_in", "zoom_out", "rotate", "flip", "invert", "reset",
    SEP, "widget:wl_label", "widget:presets", SEP, "tool_ruler", "tool_ctr", "magnifier", SEP, "heatmap", "hide_ids",
    SEP, "info", "model_card", "export_all",
)
#: The study list's right-click menu; the window drops items that do not apply (see `study_context_menu`).
CONTEXT_MENU: tuple[MenuItem, ...] = ("info", "reanalyse", "anyway", SEP, EXPORT_MENU, "pacs_send", SEP, "remove")


#: Mouse gestures listed after the keys by Help ▸ Keyboard shortcuts.
MOUSE_HELP = (
    ("Zoom at the cursor", "mouse wheel"),
    ("Pan", "middle drag, or left drag with the pan tool"),
    ("Window/level", "right drag: ←/→ width, ↑/↓ level"),
    ("Fit", "double click"),
)


def _resolve(owner: Any, path: str) -> Callable[..., Any]:
    target = owner
    for part in path.split("."):
        target = getattr(target, part)
    return target


def key_text(action: QAction) -> str:
    return ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts())


class ActionTable:
    """The QActions of `specs`, owned by `window` (their shortcuts work wherever the focus is inside it)."""

    def __init__(self, window: QWidget, specs: Sequence[ActionSpec] = ACTIONS) -> None:
        self.window = window
        self.specs = {spec.id: spec for spec in specs}
        self.actions: dict[str, QAction] = {}
        self.menus: dict[str, QMenu] = {}
        self.groups: dict[str, QActionGroup] = {}
        for spec in specs:
            self.actions[spec.id] = self._make(spec)

    def __getitem__(self, action_id: str) -> QAction:
        return self.actions[action_id]

    def _make(self, spec: ActionSpec) -> QAction:
        action = QAction(spec.text, self.window)
        if spec.icon:
            action.setIcon(assets.icon(spec.icon))
        if spec.shortcuts:
            action.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        keys = key_text(action)
        action.setToolTip(f"{spec.tip or spec.text.rstrip('…')}" + (f" ({keys})" if keys else ""))
        handler = _resolve(self.window, spec.handler)
        args = spec.args
        if spec.checkable:
            action.setCheckable(True)
            action.setChecked(spec.checked)
            if spec.group:
                if spec.group not in self.groups:
                    self.groups[spec.group] = QActionGroup(self.window)
                self.groups[spec.group].addAction(action)
            action.toggled.connect(lambda checked: handler(*args, checked))
        else:
            action.triggered.connect(lambda checked=False: handler(*args))
        self.window.addAction(action)
        return action

    # --- layout -------------------------------------------------------------------------------------------

    def fill_menu(self, menu: QMenu, items: Iterable[MenuItem], keep: Callable[[str], bool] = lambda _id: True) -> None:
        for item in items:
            if item is SEP:
                menu.addSeparator()
            elif isinstance(item, Submenu):
                sub = menu.addMenu(assets.icon(item.icon), item.title) if item.icon else menu.addMenu(item.title)
                if item.name:
                    self.menus[item.name] = sub
                self.fill_menu(sub, item.items, keep)
            elif keep(item):
                menu.addAction(self.actions[item])

    def build_menu_bar(self, bar: QMenuBar, menus: Sequence[Submenu] = MENUS) -> None:
        for spec in menus:
            self.fill_menu(bar.addMenu(spec.title), spec.items)

    def build_toolbar(self, widgets: Mapping[str, QWidget], items: Sequence[str | None] = TOOLBAR) -> QToolBar:
        tb = QToolBar("Tools")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        for item in items:
            if item is SEP:
                tb.addSeparator()
            elif item.startswith("widget:"):
                tb.addWidget(widgets[item.removeprefix("widget:")])
            else:
                tb.addAction(self.actions[item])
        for child in tb.findChildren(QWidget):
            child.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        return tb

    # --- state --------------------------------------------------------------------------------------------

    def update_enabled(self, conditions: Mapping[str, bool]) -> None:
        for action_id, spec in self.specs.items():
            if spec.enabled_when:
                self.actions[action_id].setEnabled(all(conditions.get(c, False) for c in spec.enabled_when))

    def shortcut_rows(self) -> list[tuple[str, str]]:
        """(what, keys) of every action with a shortcut, in table order, for the shortcut help."""
        rows = []
        for action_id, spec in self.specs.items():
            action = self.actions[action_id]
            if spec.in_help and action.shortcuts():
                rows.append((action.text().rstrip("…"), key_text(action)))
        return rows
