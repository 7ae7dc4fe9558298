"""Display controls: overlay opacity, class boundaries, mask only, stats overlay, theme."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QSlider, QWidget


class DisplayPanel(QGroupBox):
    display_changed = Signal(float, bool, bool)  # opacity, boundaries, mask only
    stats_toggled = Signal(bool)
    theme_changed = Signal(str)  # "dark" | "light"
    palette_changed = Signal(str)  # "distinct" | "dataset"

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Display", parent)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setToolTip("0 = video only, 100 = mask only")
        self.opacity_label = QLabel()
        self.opacity_label.setMinimumWidth(44)
        self.opacity_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.boundaries_check = QCheckBox("Class boundaries")
        self.mask_only_check = QCheckBox("Mask only")
        self.stats_check = QCheckBox("Stats overlay")
        self.dark_check = QCheckBox("Dark theme")
        self.dataset_colours_check = QCheckBox("Dataset's own colours")
        self.dataset_colours_check.setToolTip("Off: road, car and pavement get clearly different colours")
        self.dataset_colours_check.toggled.connect(
            lambda on: self.palette_changed.emit("dataset" if on else "distinct"))
        self.opacity_slider.valueChanged.connect(self._emit)
        self.boundaries_check.toggled.connect(self._emit)
        self.mask_only_check.toggled.connect(self._emit)
        self.stats_check.toggled.connect(self.stats_toggled)
        self.dark_check.toggled.connect(lambda dark: self.theme_changed.emit("dark" if dark else "light"))
        grid = QGridLayout(self)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Opacity"))
        opacity_row.addWidget(self.opacity_slider, 1)
        opacity_row.addWidget(self.opacity_label)
        grid.addLayout(opacity_row, 0, 0, 1, 2)
        grid.addWidget(self.boundaries_check, 1, 0)
        grid.addWidget(self.mask_only_check, 1, 1)
        grid.addWidget(self.stats_check, 2, 0)
        grid.addWidget(self.dark_check, 2, 1)
        grid.addWidget(self.dataset_colours_check, 3, 0, 1, 2)

    def set_values(self, opacity: float, boundaries: bool, mask_only: bool, show_stats: bool, theme: str) -> None:
        for widget in (self.opacity_slider, self.boundaries_check, self.mask_only_check, self.stats_check, self.dark_check):
            widget.blockSignals(True)
        self.opacity_slider.setValue(int(round(opacity * 100)))
        self.boundaries_check.setChecked(boundaries)
        self.mask_only_check.setChecked(mask_only)
        self.stats_check.setChecked(show_stats)
        self.dark_check.setChecked(theme == "dark")
        for widget in (self.opacity_slider, self.boundaries_check, self.mask_only_check, self.stats_check, self.dark_check):
            widget.blockSignals(False)
        self._update_label()

    def set_palette(self, mode: str) -> None:
        self.dataset_colours_check.blockSignals(True)
        self.dataset_colours_check.setChecked(mode == "dataset")
        self.dataset_colours_check.blockSignals(False)

    def toggle_mask_only(self) -> None:
        self.mask_only_check.toggle()

    def toggle_boundaries(self) -> None:
        self.boundaries_check.toggle()

    def toggle_theme(self) -> None:
        self.dark_check.toggle()

    @property
    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def _update_label(self) -> None:
        self.opacity_label.setText(f"{self.opacity_slider.value()} %")
        self.opacity_slider.setEnabled(not self.mask_only_check.isChecked())

    def _emit(self) -> None:
        self._update_label()
        self.display_changed.emit(self.opacity, self.boundaries_check.isChecked(), self.mask_only_check.isChecked())
