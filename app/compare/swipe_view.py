"""Pictures of the compare window: one pane (PaneView) and two panes under a divider (SwipeView).

Both only paint what the worker already scaled; the text they show is prepared by the window.
"""
from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

BACKGROUND = QColor(12, 12, 14)
BANNER = QColor(170, 40, 40, 230)


def fit_rect(image_size: QSize, box: QRect) -> QRect:
    """Where an image of ``image_size`` is drawn inside ``box`` (aspect kept, centred)."""
    if image_size.isEmpty():
        return QRect()
    size = image_size.scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
    return QRect(box.left() + (box.width() - size.width()) // 2, box.top() + (box.height() - size.height()) // 2,
                 size.width(), size.height())


def _mono_font() -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    font.setStyleHint(QFont.StyleHint.Monospace)
    return font


def draw_text_box(painter: QPainter, top_left: QPoint, lines: list[str], right_align_x: int | None = None) -> None:
    """Lines of text in a dark rounded box (at ``top_left``, or ending at ``right_align_x``)."""
    if not lines:
        return
    metrics = painter.fontMetrics()
    pad, line_h = 6, metrics.height()
    width = max(metrics.horizontalAdvance(t) for t in lines) + 2 * pad
    x = top_left.x() if right_align_x is None else right_align_x - width
    box = QRect(x, top_left.y(), width, line_h * len(lines) + 2 * pad)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(0, 0, 0, 175))
    painter.drawRoundedRect(box, 4, 4)
    painter.setPen(QColor(236, 236, 236))
    for i, text in enumerate(lines):
        painter.drawText(box.left() + pad, box.top() + pad + metrics.ascent() + i * line_h, text)


def draw_banner(painter: QPainter, rect: QRect, text: str) -> None:
    """A red strip across the top of ``rect`` carrying a pane's error."""
    metrics = painter.fontMetrics()
    flags = int(Qt.TextFlag.TextWordWrap) | int(Qt.AlignmentFlag.AlignLeft) | int(Qt.AlignmentFlag.AlignVCenter)
    bound = metrics.boundingRect(QRect(0, 0, max(rect.width() - 16, 50), 1000), flags, text)
    strip = QRect(rect.left(), rect.top(), rect.width(), bound.height() + 12)
    painter.fillRect(strip, BANNER)
    painter.setPen(QColor(255, 255, 255))
    painter.drawText(strip.adjusted(8, 0, -8, 0), flags, text)


class PaneView(QWidget):
    """One pane: its overlay, its numbers, and a banner when its model failed."""

    def __init__(self, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(240, 150)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._image: QImage | None = None
        self._lines: list[str] = [title]
        self.error = ""
        self.frame_index = -1
        self.paint_count = 0
        self._font = _mono_font()

    def set_content(self, image: QImage | None, lines: list[str], frame_index: int) -> None:
        if image is not None:
            self._image = image
        self._lines, self.frame_index = lines, frame_index
        self.update()

    def set_error(self, message: str) -> None:
        self.error = message
        self.update()

    @property
    def has_image(self) -> bool:
        return self._image is not None

    def sizeHint(self) -> QSize:
        return QSize(480, 270)

    def image_rect(self) -> QRect:
        return fit_rect(self._image.size(), self.rect()) if self._image is not None else QRect()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: ARG002
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        painter.setFont(self._font)
        if self._image is not None:
            painter.drawImage(QRectF(self.image_rect()), self._image)
            self.paint_count += 1
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        box = self.image_rect() if self._image is not None else self.rect()
        if self.error:
            draw_banner(painter, self.rect(), f"{self.title}: {self.error}")
        else:
            draw_text_box(painter, box.topLeft() + QPoint(8, 8), self._lines)
        painter.end()


class SwipeView(QWidget):
    """Two panes of the same frame on top of each other; a draggable divider shows left of A, right of B."""

    divider_moved = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 180)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setCursor(Qt.CursorShape.SplitHCursor)
        self._left: QImage | None = None
        self._right: QImage | None = None
        self._left_lines: list[str] = []
        self._right_lines: list[str] = []
        self.position = 0.5  # divider, fraction of the picture's width
        self.frame_indices = (-1, -1)
        self._font = _mono_font()

    def set_panes(self, left: QImage | None, left_lines: list[str], right: QImage | None, right_lines: list[str],
                  frame_indices: tuple[int, int]) -> None:
        self._left, self._right = left, right
        self._left_lines, self._right_lines = left_lines, right_lines
        self.frame_indices = frame_indices
        self.update()

    def set_position(self, fraction: float) -> None:
        self.position = min(max(float(fraction), 0.0), 1.0)
        self.update()

    def image_rect(self) -> QRect:
        image = self._left or self._right
        return fit_rect(image.size(), self.rect()) if image is not None else QRect()

    def sizeHint(self) -> QSize:
        return QSize(480, 270)  # like a pane: it may share the grid with them

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: ARG002
        painter = QPainter(self)
        painter.fillRect(self.rect(), BACKGROUND)
        painter.setFont(self._font)
        target = self.image_rect()
        if not target.isEmpty():
            split = target.left() + int(round(self.position * target.width()))
            for image, clip in ((self._left, QRect(target.left(), target.top(), split - target.left(), target.height())),
                                (self._right, QRect(split, target.top(), target.right() - split + 1, target.height()))):
                if image is not None and clip.width() > 0:
                    painter.save()
                    painter.setClipRect(clip)
                    painter.drawImage(QRectF(target), image)
                    painter.restore()
            painter.setPen(QPen(QColor(255, 255, 255), 2))
            painter.drawLine(split, target.top(), split, target.bottom())
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setBrush(QColor(255, 255, 255))
            painter.drawEllipse(QPoint(split, target.center().y()), 7, 7)
            draw_text_box(painter, target.topLeft() + QPoint(8, 8), self._left_lines)
            draw_text_box(painter, QPoint(0, target.top() + 8), self._right_lines, right_align_x=target.right() - 8)
        painter.end()

    def _drag(self, event: QMouseEvent) -> None:
        target = self.image_rect()
        if target.width() > 0:
            self.set_position((event.position().x() - target.left()) / target.width())
            self.divider_moved.emit(self.position)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._drag(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._drag(event)
