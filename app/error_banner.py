"""A non-modal message strip above the video: errors never block the app behind a dialog."""
from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QLabel, QWidget


class MessageBanner(QLabel):
    """Red for errors, blue for information; click to dismiss, hides itself after a while."""

    def __init__(self, parent: QWidget | None = None, hide_after_ms: int = 20000):
        super().__init__(parent)
        self.setWordWrap(True)
        self.setObjectName("ErrorBanner")
        self.setToolTip("Click to dismiss")
        self.hide()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(hide_after_ms)
        self._timer.timeout.connect(self.hide)

    def show_message(self, text: str, error: bool = True) -> None:
        name = "ErrorBanner" if error else "InfoBanner"
        if self.objectName() != name:
            self.setObjectName(name)
            self.style().unpolish(self)
            self.style().polish(self)
        self.setText(text)
        self.show()
        self._timer.start()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: ARG002
        self.hide()
