"""Model controls: installed models (with dataset and accuracy), Tiny/Small/Base and full/half."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QWidget)

from engine.models.registry import ModelEntry

from .model_choice import VARIANT_KEYS, available_variants
from ..dialogs.model_tasks import accuracy_text

NO_MODEL_TEXT = ("No model installed: video plays without segmentation. Download or import one in "
                 "Models > Manage models…")


def short_text(entry: ModelEntry) -> str:
    """What fits in the picker: the name and mIoU; the full text is in the line below it.

    The figure on footage the model never saw where the manifest has one (CamVid's val shares
    a drive with training: 64.2 there against 51.4 on the other drives for the Tiny)."""
    unseen = entry.unseen_drive_miou
    if unseen is not None:
        return f"{entry.name} · unseen {100 * unseen[0]:.1f}"
    acc = entry.accuracy or {}
    return f"{entry.name} · mIoU {100 * acc['miou']:.1f}" if isinstance(acc.get("miou"), float) else entry.name


def entry_tooltip(entry: ModelEntry) -> str:
    lines = [entry.describe(), f"{entry.num_classes} classes"]
    if entry.accuracy:
        acc = entry.accuracy
        parts = [f"{k} {100 * acc[k]:.1f}%" for k in ("miou", "pixel_acc") if isinstance(acc.get(k), float)]
        lines.append(f"accuracy ({acc.get('split', '?')}): " + (", ".join(parts) or "not measured"))
        if entry.unseen_text():
            lines.append(f"on footage it never saw: {entry.unseen_text()}")
    else:
        lines.append("accuracy: not measured")
    if entry.notes:
        lines.append(entry.notes)
    if entry.training and entry.training.get("train_s"):
        t = entry.training
        lines.append(f"trained {t.get('epochs_done')} epochs in {t['train_s'] / 3600:.1f} h")
    lines.append(f"made by: {entry.made_by}")
    return "\n".join(lines)


class ModelPanel(QGroupBox):
    model_selected = Signal(str)
    variant_selected = Signal(str)  # "tiny" | "small" | "base"
    scale_selected = Signal(str)  # "full" | "half" | "best"
    reload_requested = Signal()
    manage_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Model", parent)
        self.model_combo = QComboBox()
        self.model_combo.setMinimumContentsLength(22)
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.activated.connect(self._on_model_activated)
        self.reload_button = QPushButton("Reload")
        self.reload_button.setToolTip("Read the models folder again")
        self.reload_button.clicked.connect(self.reload_requested)
        self.variant_buttons: dict[str, QPushButton] = {}
        self._variant_group = QButtonGroup(self)
        variants = QHBoxLayout()
        for number, key in enumerate(VARIANT_KEYS, start=1):
            button = QPushButton(key.capitalize())
            button.setCheckable(True)
            button.setToolTip(f"TopFormer-{key[0].upper()} for this dataset ({number})")
            button.clicked.connect(lambda _c=False, k=key: self.variant_selected.emit(k))
            self._variant_group.addButton(button)
            self.variant_buttons[key] = button
            variants.addWidget(button)
        self.scale_buttons: dict[str, QPushButton] = {}
        self._scale_group = QButtonGroup(self)
        scales = QHBoxLayout()
        tips = {"full": "Network input at the frame's size (never above the model's best size) (H)",
                "half": "Network input at half the frame's size (H)",
                "best": "Network input at the size the model is most accurate at, larger or smaller than the frame"}
        for key, text in (("full", "Full res"), ("half", "Half res"), ("best", "Best size")):
            button = QPushButton(text)
            button.setCheckable(True)
            button.setToolTip(tips[key])
            button.clicked.connect(lambda _c=False, k=key: self.scale_selected.emit(k))
            self._scale_group.addButton(button)
            self.scale_buttons[key] = button
            scales.addWidget(button)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.info_label = QLabel("")
        self.info_label.setWordWrap(True)
        self.manage_link = QLabel('<a href="manage">Download or import models…</a>')
        self.manage_link.setToolTip("Models > Manage models (Ctrl+M)")
        self.manage_link.linkActivated.connect(lambda _link: self.manage_requested.emit())

        grid = QGridLayout(self)
        grid.addWidget(self.model_combo, 0, 0)
        grid.addWidget(self.reload_button, 0, 1)
        grid.addLayout(variants, 2, 0, 1, 2)
        grid.addLayout(scales, 3, 0, 1, 2)
        grid.addWidget(self.info_label, 1, 0, 1, 2)
        grid.addWidget(self.status_label, 4, 0, 1, 2)
        grid.addWidget(self.manage_link, 5, 0, 1, 2)
        grid.setColumnStretch(0, 1)
        self._entries: list[ModelEntry] = []

    def set_entries(self, entries: list[ModelEntry], current: str | None) -> None:
        self._entries = list(entries)
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for entry in entries:
            self.model_combo.addItem(short_text(entry), entry.name)
            self.model_combo.setItemData(self.model_combo.count() - 1, entry_tooltip(entry),
                                         Qt.ItemDataRole.ToolTipRole)
        self.model_combo.blockSignals(False)
        self.model_combo.setEnabled(bool(entries))
        if not entries:
            self.status_label.setText(NO_MODEL_TEXT)
        self.set_current(current)

    def entry(self, name: str | None) -> ModelEntry | None:
        return next((e for e in self._entries if e.name == name), None)

    def set_current(self, name: str | None) -> None:
        """Show ``name`` as the selected model and enable the variants its dataset has."""
        index = self.model_combo.findData(name) if name else -1
        self.model_combo.blockSignals(True)
        self.model_combo.setCurrentIndex(index)
        self.model_combo.blockSignals(False)
        entry = self.entry(name)
        self.model_combo.setToolTip(entry_tooltip(entry) if entry else "")
        self.info_label.setText(f"{entry.variant}, {entry.dataset}, {entry.num_classes} classes\n{accuracy_text(entry)}"
                                if entry else "")
        have = available_variants(self._entries, entry) if self._entries else set()
        for key, button in self.variant_buttons.items():
            button.setEnabled(key in have)
            button.setChecked(entry is not None and entry.variant == key)

    def current_name(self) -> str | None:
        name = self.model_combo.currentData()
        return str(name) if name else None

    def set_scale(self, scale: str) -> None:
        for key, button in self.scale_buttons.items():
            button.setChecked(key == scale)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def _on_model_activated(self, index: int) -> None:
        name = self.model_combo.itemData(index)
        if name:
            self.model_selected.emit(str(name))
