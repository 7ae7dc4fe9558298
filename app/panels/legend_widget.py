"""The legend: classes present in the current frame, with their colour and % of area, largest first."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

MAX_ROWS = 20
_RIGHT = (Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter).value


class LegendWidget(QTableWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["class", "area"])
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setShowGrid(False)
        self.setMinimumHeight(110)
        self._shown: list[tuple[int, str, float]] = []
        self._icons: dict[tuple[int, int, int], QIcon] = {}

    def set_classes(self, legend: list[tuple[int, str, float]], palette_rgb: np.ndarray) -> None:
        rows = [(i, name, round(pct, 1)) for i, name, pct in legend[:MAX_ROWS]]
        if rows == self._shown:
            return
        self._shown = rows
        if self.rowCount() < len(rows):  # rows only grow; surplus rows are hidden, not deleted
            self.setRowCount(len(rows))
        for row in range(self.rowCount()):
            self.setRowHidden(row, row >= len(rows))
        # Items are created once per row and then only updated through setData: on a
        # QTableWidgetItem, setToolTip/setTextAlignment (and deleting items) leak a reference to
        # None per call in PySide6 6.11 (about 70 a second here; found by tests/test_soak.py).
        display, decoration, tooltip = (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.DecorationRole,
                                        Qt.ItemDataRole.ToolTipRole)
        for row, (class_id, name, pct) in enumerate(rows):
            rgb = tuple(int(c) for c in palette_rgb[class_id]) if class_id < len(palette_rgb) else (0, 0, 0)
            name_item, pct_item = self.item(row, 0), self.item(row, 1)
            if name_item is None:
                name_item = QTableWidgetItem()
                self.setItem(row, 0, name_item)
            if pct_item is None:
                pct_item = QTableWidgetItem()
                pct_item.setData(Qt.ItemDataRole.TextAlignmentRole, _RIGHT)
                self.setItem(row, 1, pct_item)
            name_item.setData(display, name)
            name_item.setData(decoration, self._icon(rgb))
            name_item.setData(tooltip, f"class {class_id}: {name}")
            pct_item.setData(display, f"{pct:.1f} %")

    def visible_rows(self) -> int:
        return len(self._shown)

    def names(self) -> list[str]:
        return [name for _, name, _ in self._shown]

    def _icon(self, rgb: tuple[int, int, int]) -> QIcon:
        if rgb not in self._icons:
            pixmap = QPixmap(14, 14)
            pixmap.fill(QColor(*rgb))
            self._icons[rgb] = QIcon(pixmap)
        return self._icons[rgb]
