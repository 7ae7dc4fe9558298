"""Capture controls: output folder, snapshot, record (with elapsed time)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QPushButton, QWidget


class CapturePanel(QGroupBox):
    snapshot_requested = Signal()
    record_toggled = Signal(bool)
    choose_folder_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Capture", parent)
        self.folder_label = QLabel()
        self.folder_label.setWordWrap(True)
        self.folder_button = QPushButton("Folder…")
        self.folder_button.clicked.connect(self.choose_folder_requested)
        self.snapshot_button = QPushButton("Snapshot")
        self.snapshot_button.setToolTip("Overlay, class map and original frame as PNG (S)")
        self.snapshot_button.clicked.connect(self.snapshot_requested)
        self.record_button = QPushButton("Record")
        self.record_button.setCheckable(True)
        self.record_button.setToolTip("Record the overlay to MP4 (R)")
        self.record_button.toggled.connect(self.record_toggled)
        grid = QGridLayout(self)
        grid.addWidget(self.folder_label, 0, 0)
        grid.addWidget(self.folder_button, 0, 1)
        grid.addWidget(self.snapshot_button, 1, 0)
        grid.addWidget(self.record_button, 1, 1)
        grid.setColumnStretch(0, 1)

    def set_folder(self, folder: Path) -> None:
        text = str(folder)
        self.folder_label.setText(text if len(text) <= 40 else "…" + text[-39:])
        self.folder_label.setToolTip(text)

    def set_recording(self, recording: bool, seconds: float = 0.0) -> None:
        self.record_button.blockSignals(True)
        self.record_button.setChecked(recording)
        self.record_button.blockSignals(False)
        self.record_button.setText(f"● Rec {int(seconds // 60)}:{int(seconds % 60):02d}" if recording else "Record")

    def is_recording(self) -> bool:
        return self.record_button.isChecked()
