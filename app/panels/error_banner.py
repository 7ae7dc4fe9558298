"""Non-modal message strips above the video: errors never block the app behind a dialog.

Each message belongs to a *cause* (``source``, ``model``, ``capture``...). A message stays
until its cause is gone (the owner calls ``clear(cause)``, e.g. when a new source opens or a
model starts serving) or the user dismisses it; several causes can show messages at once,
so a second error never hides the first.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

MAX_BANNERS = 4
SOURCE_CAUSES = ("source", "frame", "scene")  # messages about the open source: a new source clears them


def cause_of(message: str) -> str:
    """Which cause a worker error belongs to (so its banner goes when the cause goes)."""
    if message.startswith(("snapshot failed", "recording failed")):
        return "capture"
    if message.startswith("model "):
        return "model"
    return "frame"


class Banner(QFrame):
    """One strip: the text, an optional link (e.g. "Open Models…") and a close button."""

    dismissed = Signal()
    link_activated = Signal(str)

    def __init__(self, cause: str, text: str, error: bool, link: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self.cause, self.error = cause, error
        self.setObjectName("ErrorBanner" if error else "InfoBanner")
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.link = QLabel(f'<a href="{link}" style="color: #ffffff;">{link}</a>' if link else "")
        self.link.setVisible(bool(link))
        self.link.linkActivated.connect(self.link_activated)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setToolTip("Dismiss")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(self.dismissed)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 4, 4)
        row.addWidget(self.label, 1)
        row.addWidget(self.link)
        row.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)

    def text(self) -> str:
        return self.label.text()


class BannerStack(QWidget):
    """The column of banners; empty (hidden) when there is nothing to say."""

    link_activated = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(3)
        self._banners: list[Banner] = []
        self.last_error = ""  # the newest error text, even when dismissed (for tests and the status bar)
        self.hide()

    def show_message(self, text: str, cause: str = "general", error: bool = True, link: str = "") -> None:
        """Add a message for ``cause``; the same text for the same cause is shown once."""
        if error:
            self.last_error = text
        if any(b.cause == cause and b.text() == text for b in self._banners):
            return
        banner = Banner(cause, text, error, link)
        banner.dismissed.connect(lambda b=banner: self._remove(b))
        banner.link_activated.connect(self.link_activated)
        self._banners.append(banner)
        self._layout.addWidget(banner)
        while len(self._banners) > MAX_BANNERS:
            self._remove(self._banners[0])
        self.show()

    def clear(self, *causes: str) -> None:
        """The cause is gone: remove its messages (all messages when no cause is named)."""
        for banner in [b for b in self._banners if not causes or b.cause in causes]:
            self._remove(banner)

    def messages(self, cause: str | None = None) -> list[str]:
        return [b.text() for b in self._banners if cause is None or b.cause == cause]

    def banners(self) -> list[Banner]:
        return list(self._banners)

    def text(self) -> str:
        """All messages, one per line (newest last)."""
        return "\n".join(self.messages())

    def _remove(self, banner: Banner) -> None:
        if banner in self._banners:
            self._banners.remove(banner)
            self._layout.removeWidget(banner)
            banner.hide()
            banner.deleteLater()
        self.setVisible(bool(self._banners))
