"""The legend: classes present in the current frame, with their colour and % of area, largest first."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

MAX_ROWS = 20


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
        self.setRowCount(len(rows))
        for row, (class_id, name, pct) in enumerate(rows):
            rgb = tuple(int(c) for c in palette_rgb[class_id]) if class_id < len(palette_rgb) else (0, 0, 0)
            name_item = QTableWidgetItem(self._icon(rgb), name)
            name_item.setToolTip(f"class {class_id}: {name}")
            pct_item = QTableWidgetItem(f"{pct:.1f} %")
            pct_item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.setItem(row, 0, name_item)
            self.setItem(row, 1, pct_item)

    def names(self) -> list[str]:
        return [name for _, name, _ in self._shown]

    def _icon(self, rgb: tuple[int, int, int]) -> QIcon:
        if rgb not in self._icons:
            pixmap = QPixmap(14, 14)
            pixmap.fill(QColor(*rgb))
            self._icons[rgb] = QIcon(pixmap)
        return self._icons[rgb]
