"""What the video area shows before any source is open: a message and the two ways to start."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget


class EmptyStateWidget(QWidget):
    open_video_requested = Signal()
    open_camera_requested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        title = QLabel("No video source")
        title.setObjectName("EmptyTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message = QLabel("Open a video file or image, drop one here, or start a camera.")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.open_video_button = QPushButton("Open video…")
        self.open_camera_button = QPushButton("Open camera…")
        self.open_video_button.clicked.connect(self.open_video_requested)
        self.open_camera_button.clicked.connect(self.open_camera_requested)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.open_video_button)
        buttons.addWidget(self.open_camera_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(title)
        layout.addWidget(self.message)
        layout.addLayout(buttons)
        layout.addStretch(1)

    def set_camera_available(self, found: bool, tooltip: str) -> None:
        self.open_camera_button.setEnabled(found)
        self.open_camera_button.setToolTip(tooltip)

    def set_message(self, text: str) -> None:
        self.message.setText(text)
