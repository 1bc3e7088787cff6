"""The study browser: one row per study with thumbnail, identifiers (hideable), state and top finding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QPoint,
    QRect,
    QSize,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtGui import QAccessible, QColor, QFont, QPainter, QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QSizePolicy,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from cxrviewer.gui import assets
from cxrviewer.gui.image_view import gray_qimage
from cxrviewer.gui.records import State, StudyRecord, finding_text, scrub, state_text

KEY_ROLE = Qt.ItemDataRole.UserRole + 1
RECORD_ROLE = Qt.ItemDataRole.UserRole + 2
ABNORMALITY_ROLE = Qt.ItemDataRole.UserRole + 3
ORDER_ROLE = Qt.ItemDataRole.UserRole + 4
PATIENT_ROLE = Qt.ItemDataRole.UserRole + 5
DATE_ROLE = Qt.ItemDataRole.UserRole + 6

STATE_COLOURS = {
    State.QUEUED: QColor(110, 116, 126),
    State.ANALYSING: QColor(52, 130, 214),
    State.DONE: QColor(70, 160, 110),
    State.REJECTED: QColor(214, 140, 40),
    State.ERROR: QColor(214, 70, 70),
    State.NOT_ANALYSED: QColor(130, 110, 160),
}

MOST_ABNORMAL = "Most abnormal"  # worklist order: most abnormal first
SORT_MODES = ("Order opened", MOST_ABNORMAL, "Patient", "Study date")
SORT_COMBO_CHROME = 52  # px beside the text: style padding (8 + 8) and the drop-down arrow


class StudyListModel(QAbstractListModel):
    """Rows of StudyRecord; texts respect the "hide identifiers" mode."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.records: list[StudyRecord] = []
        self.hide_identifiers = False
        self._thumbs: dict[str, QPixmap] = {}
        self._rows: dict[str, int] = {}  # study key -> row

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.records)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self.records):
            return None
        rec = self.records[index.row()]
        hide = self.hide_identifiers
        if role == Qt.ItemDataRole.DisplayRole:
            finding, _ = finding_text(rec, hide)
            parts = [rec.title(hide), rec.subtitle(hide), rec.date_text(hide), state_text(rec), finding]
            return " — ".join(p for p in parts if p)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltip(rec)
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbs.get(rec.key)
        if role == KEY_ROLE:
            return rec.key
        if role == RECORD_ROLE:
            return rec
        if role == ABNORMALITY_ROLE:
            return rec.abnormality()
        if role == ORDER_ROLE:
            return rec.number
        if role == PATIENT_ROLE:
            return rec.title(hide).lower()
        if role == DATE_ROLE:
            return rec.study_date
        return None

    def tooltip(self, rec: StudyRecord) -> str:
        hide = self.hide_identifiers
        lines = [rec.title(hide)]
        if rec.description:
            lines.append(rec.description)
        if not hide:
            lines.append(rec.source_name)
        for img in rec.images:
            if img.message:
                lines.append(scrub(img.message, rec, hide))
        return "\n".join(line for line in lines if line)

    # --- edits --------------------------------------------------------------------------------------------

    def add(self, records: list[StudyRecord]) -> None:
        if not records:
            return
        first = len(self.records)
        self.beginInsertRows(QModelIndex(), first, first + len(records) - 1)
        self.records.extend(records)
        self._rows.update({r.key: first + i for i, r in enumerate(records)})
        self.endInsertRows()

    def remove(self, key: str) -> None:
        row = self.row_of(key)
        if row is None:
            return
        self.beginRemoveRows(QModelIndex(), row, row)
        del self.records[row]
        self._rows = {r.key: i for i, r in enumerate(self.records)}
        self._thumbs.pop(key, None)
        self.endRemoveRows()

    def clear(self) -> None:
        self.beginResetModel()
        self.records = []
        self._rows = {}
        self._thumbs = {}
        self.endResetModel()

    def row_of(self, key: str) -> int | None:
        return self._rows.get(key)

    def record(self, key: str) -> StudyRecord | None:
        row = self.row_of(key)
        return None if row is None else self.records[row]

    def changed(self, key: str) -> None:
        row = self.row_of(key)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)

    def set_thumbnail(self, key: str, thumb: np.ndarray | None, replace: bool = False) -> None:
        """The row's thumbnail (kept once set unless `replace`)."""
        if thumb is not None and (replace or key not in self._thumbs):
            self._thumbs[key] = QPixmap.fromImage(gray_qimage(thumb))
            self.changed(key)

    def thumbnail(self, key: str) -> QPixmap | None:
        return self._thumbs.get(key)

    def set_hide_identifiers(self, hide: bool) -> None:
        self.hide_identifiers = hide
        if self.records:
            self.dataChanged.emit(self.index(0), self.index(len(self.records) - 1))


class StudySortProxy(QSortFilterProxyModel):
    """Sorts by the chosen mode; ties keep the order of arrival."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.mode = SORT_MODES[0]
        self.setDynamicSortFilter(True)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.invalidate()
        self.sort(0, Qt.SortOrder.AscendingOrder)

    def lessThan(
        self,
        left: QModelIndex | QPersistentModelIndex,  # noqa: N802
        right: QModelIndex | QPersistentModelIndex,
    ) -> bool:
        lo, ro = left.data(ORDER_ROLE), right.data(ORDER_ROLE)
        if self.mode == MOST_ABNORMAL:
            la, ra = left.data(ABNORMALITY_ROLE), right.data(ABNORMALITY_ROLE)
            if la != ra:
                return la > ra
        elif self.mode == "Patient":
            lp, rp = left.data(PATIENT_ROLE), right.data(PATIENT_ROLE)
            if lp != rp:
                return lp < rp
        elif self.mode == "Study date":
            ld, rd = left.data(DATE_ROLE) or "", right.data(DATE_ROLE) or ""
            if ld != rd:
                return ld > rd  # newest first
        return lo < ro


class StudyDelegate(QStyledItemDelegate):
    """Paints a worklist card: thumbnail, title, date, details, state chip and top finding."""

    HEIGHT = 78
    THUMB = 64

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        return QSize(260, self.HEIGHT)

    def paint(
        self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        rec: StudyRecord = index.data(RECORD_ROLE)
        model = index.model()
        source = model.sourceModel() if isinstance(model, QSortFilterProxyModel) else model
        hide = bool(getattr(source, "hide_identifiers", False))
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hover = bool(option.state & QStyle.StateFlag.State_MouseOver)
        p.fillRect(r, QColor(44, 62, 84) if selected else QColor(30, 34, 41) if hover else QColor(24, 27, 33))
        p.setPen(QColor(38, 42, 50))
        p.drawLine(r.bottomLeft(), r.bottomRight())
        # thumbnail
        tr = QRect(r.left() + 7, r.top() + (r.height() - self.THUMB) // 2, self.THUMB, self.THUMB)
        p.fillRect(tr, QColor(0, 0, 0))
        thumb = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(thumb, QPixmap) and not thumb.isNull():
            scaled = thumb.scaled(
                tr.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
            p.drawPixmap(
                tr.left() + (tr.width() - scaled.width()) // 2,
                tr.top() + (tr.height() - scaled.height()) // 2,
                scaled,
            )
        elif rec.state == State.ERROR:  # a red "!" where the film would be
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(120, 40, 40))
            p.drawEllipse(tr.center(), 14, 14)
            mark = QFont(option.font)
            mark.setBold(True)
            mark.setPointSizeF(mark.pointSizeF() + 4)
            p.setFont(mark)
            p.setPen(QColor(255, 220, 220))
            p.drawText(tr, Qt.AlignmentFlag.AlignCenter, "!")
        else:
            p.setPen(QColor(90, 96, 106))
            p.drawText(tr, Qt.AlignmentFlag.AlignCenter, "…")
        state_colour = STATE_COLOURS[rec.state]
        p.fillRect(QRect(r.left(), r.top(), 3, r.height()), state_colour)
        # text block
        x = tr.right() + 10
        width = r.right() - x - 8
        font = QFont(option.font)
        bold = QFont(font)
        bold.setBold(True)
        small = QFont(font)
        small.setPointSizeF(max(7.5, font.pointSizeF() - 1))
        p.setFont(bold)
        fm = p.fontMetrics()
        line_h = fm.height()
        y = r.top() + 7
        date = rec.date_text(hide)
        p.setFont(small)
        date_w = p.fontMetrics().horizontalAdvance(date) + 6 if date else 0
        p.setPen(QColor(150, 156, 166))
        if date:
            p.drawText(
                QRect(x, y, width, line_h), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, date
            )
        p.setFont(bold)
        p.setPen(QColor(232, 235, 240))
        p.drawText(
            QRect(x, y, width - date_w, line_h),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            fm.elidedText(rec.title(hide), Qt.TextElideMode.ElideRight, width - date_w),
        )
        y += line_h + 1
        p.setFont(small)
        sfm = p.fontMetrics()
        p.setPen(QColor(150, 156, 166))
        p.drawText(
            QRect(x, y, width, sfm.height()),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            sfm.elidedText(rec.subtitle(hide), Qt.TextElideMode.ElideRight, width),
        )
        y += sfm.height() + 4
        # state chip + finding
        chip = state_text(rec)
        chip_w = sfm.horizontalAdvance(chip) + 12
        chip_rect = QRect(x, y, chip_w, sfm.height() + 2)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(state_colour)
        p.drawRoundedRect(chip_rect, 4, 4)
        p.setPen(QColor(255, 255, 255))
        p.drawText(chip_rect, Qt.AlignmentFlag.AlignCenter, chip)
        text, emphasised = finding_text(rec, hide)
        if text:
            f = QFont(small)
            f.setBold(emphasised)
            p.setFont(f)
            colour = (
                QColor(255, 150, 80)
                if emphasised
                else (QColor(235, 120, 120) if rec.state == State.ERROR else QColor(170, 176, 186))
            )
            p.setPen(colour)
            tx = chip_rect.right() + 7
            p.drawText(
                QRect(tx, y, r.right() - tx - 8, sfm.height() + 2),
                Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                p.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, r.right() - tx - 8),
            )
        p.restore()


class StudyListView(QListView):
    """The worklist's view: a changed card repaints that card only.

    In the running viewer (Qt 6.11) the list view answered every `dataChanged` of one row, even of a row scrolled out
    of view, by painting all ten visible cards: about 5 ms of Python on the GUI thread each time, four times per
    analysed film, taken from the analyses (issue 20). Sorting and filtering still follow the change: the proxy
    model sees it before the view does; with accessibility active Qt's own handling runs (it tells the screen
    reader)."""

    def dataChanged(self, top_left: QModelIndex | QPersistentModelIndex,  # noqa: N802 (Qt API)
                    bottom_right: QModelIndex | QPersistentModelIndex, roles: Sequence[int] = ()) -> None:
        if top_left == bottom_right and top_left.isValid() and not QAccessible.isActive():
            self.update(top_left)  # what Qt does for one row besides its full repaint (no editors here)
            return
        super().dataChanged(top_left, bottom_right, list(roles))


class StudyBrowser(QWidget):
    """Worklist of opened studies with sorting and the one-click "hide identifiers" switch."""

    current_changed = Signal(str)  # study key ("" when none)
    context_menu_requested = Signal(str, QPoint)  # study key, global position
    hide_identifiers_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("studyBrowser")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        bar = self._bar = QWidget()
        bar.setObjectName("browserBar")
        bar_layout = QHBoxLayout(bar)
        bar_layout.setContentsMargins(10, 6, 6, 6)
        self.count_label = QLabel("Studies")
        self.count_label.setObjectName("panelTitle")
        bar_layout.addWidget(self.count_label)
        bar_layout.addStretch(1)
        self.sort_combo = QComboBox()
        self.sort_combo.setObjectName("sortCombo")
        self.sort_combo.addItems(SORT_MODES)
        self.sort_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        fm = self.sort_combo.fontMetrics()  # room for the longest mode, its padding and the arrow: no "Most abnorma"
        self.sort_combo.setMinimumWidth(max(fm.horizontalAdvance(m) for m in SORT_MODES) + SORT_COMBO_CHROME)
        self.sort_combo.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.sort_combo.setToolTip("Sort the worklist")
        self.sort_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        bar_layout.addWidget(self.sort_combo)
        self.hide_button = QToolButton()
        self.hide_button.setObjectName("hideIdentifiers")
        self.hide_button.setText("Hide IDs")
        self.hide_button.setIcon(assets.icon("hide-ids"))
        self.hide_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.hide_button.setCheckable(True)
        self.hide_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.hide_button.setToolTip("Hide patient names, IDs and dates everywhere (Ctrl+Shift+H)")
        self.hide_button.toggled.connect(self._on_hide)
        bar_layout.addWidget(self.hide_button)
        layout.addWidget(bar)

        self.model = StudyListModel(self)
        self.proxy = StudySortProxy(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.sort(0, Qt.SortOrder.AscendingOrder)
        self.view = StudyListView()
        self.view.setObjectName("studyList")
        self.view.setModel(self.proxy)
        self.view.setItemDelegate(StudyDelegate(self.view))
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setUniformItemSizes(True)
        self.view.setMouseTracking(True)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._on_context_menu)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        layout.addWidget(self.view, 1)
        self.placeholder = QLabel("No studies yet.\n\nDrop files or folders anywhere on the window, "
                                  "or use File ▸ Open.")
        self.placeholder.setObjectName("browserPlaceholder")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        layout.addWidget(self.placeholder, 1)
        self.view.hide()
        self.sort_combo.currentTextChanged.connect(self.proxy.set_mode)
        self.model.rowsInserted.connect(self._update_count)
        self.model.rowsRemoved.connect(self._update_count)
        self.model.modelReset.connect(self._update_count)

    # --- queries ------------------------------------------------------------------------------------------

    @property
    def hide_identifiers(self) -> bool:
        return self.model.hide_identifiers

    def keys_in_order(self) -> list[str]:
        return [self.proxy.index(i, 0).data(KEY_ROLE) for i in range(self.proxy.rowCount())]

    def current_key(self) -> str:
        idx = self.view.currentIndex()
        return idx.data(KEY_ROLE) if idx.isValid() else ""

    def row_texts(self) -> list[str]:
        """Display and tooltip texts of every row, in display order (what a user can read)."""
        out = []
        for i in range(self.proxy.rowCount()):
            idx = self.proxy.index(i, 0)
            out.append(f"{idx.data(Qt.ItemDataRole.DisplayRole)}\n{idx.data(Qt.ItemDataRole.ToolTipRole)}")
        return out

    # --- edits --------------------------------------------------------------------------------------------

    def set_current(self, key: str) -> None:
        row = self.model.row_of(key)
        if row is None:
            return
        idx = self.proxy.mapFromSource(self.model.index(row))
        self.view.setCurrentIndex(idx)
        self.view.scrollTo(idx)

    def step(self, delta: int) -> None:
        """Select the next (+1) or previous (-1) study in display order."""
        count = self.proxy.rowCount()
        if not count:
            return
        idx = self.view.currentIndex()
        row = idx.row() + delta if idx.isValid() else 0
        row = max(0, min(count - 1, row))
        self.view.setCurrentIndex(self.proxy.index(row, 0))

    def set_hide_identifiers(self, hide: bool) -> None:
        if self.hide_button.isChecked() != hide:
            self.hide_button.setChecked(hide)  # emits toggled -> _on_hide
        else:
            self._on_hide(hide)

    def set_sort_mode(self, mode: str) -> None:
        if mode not in SORT_MODES:
            raise ValueError(f"unknown sort mode {mode!r}; choose from {', '.join(SORT_MODES)}")
        self.sort_combo.setCurrentText(mode)

    # --- slots --------------------------------------------------------------------------------------------

    def _on_hide(self, hide: bool) -> None:
        if self.model.hide_identifiers == hide:
            return
        self.model.set_hide_identifiers(hide)
        self.proxy.invalidate()
        self.hide_identifiers_toggled.emit(hide)

    def _on_current(self, current: QModelIndex, previous: QModelIndex) -> None:
        self.current_changed.emit(current.data(KEY_ROLE) if current.isValid() else "")

    def _keep_bar_whole(self) -> None:
        """The pane never gets narrower than its title bar needs: a longer "Studies (n)" widens it, instead of
        the sort box sliding under the Hide IDs button."""
        needed = self._bar.minimumSizeHint().width()
        if self.minimumWidth() < needed:
            self.setMinimumWidth(needed)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt API)
        super().showEvent(event)
        self._keep_bar_whole()  # the style sheet's fonts are known now

    def _on_context_menu(self, pos: QPoint) -> None:
        idx = self.view.indexAt(pos)
        if idx.isValid():
            self.view.setCurrentIndex(idx)
            self.context_menu_requested.emit(idx.data(KEY_ROLE), self.view.viewport().mapToGlobal(pos))

    def _update_count(self, *args: Any) -> None:
        n = self.model.rowCount()
        self.count_label.setText(f"Studies ({n})" if n else "Studies")
        self._keep_bar_whole()
        self.view.setVisible(n > 0)
        self.placeholder.setVisible(n == 0)
