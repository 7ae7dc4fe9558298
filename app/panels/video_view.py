"""QtVideoView: paints the newest frame (already scaled by the worker) and the stats overlay.

The worker renders pictures at this widget's size in device pixels, so painting is a plain
blit; until a picture of the new size arrives after a resize, the old one is stretched.
Mouse positions are mapped back to frame pixels for the hover readout.
"""
from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QImage, QMouseEvent, QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import QSizePolicy, QWidget


class QtVideoView(QWidget):
    hovered = Signal(int, int)  # frame pixel under the cursor, (-1, -1) outside the picture
    resized = Signal(int, int)  # new size in device pixels (the worker renders at this size)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 180)
        self.setMouseTracking(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._image: QImage | None = None
        self._frame_size = QSize()  # source pixels (w, h)
        self._stats_lines: list[str] = []
        self.show_stats = True
        self.show_legend = False  # the legend drawn on the picture (full screen has no side panel)
        self._legend: list[tuple[str, tuple[int, int, int], float]] = []  # name, RGB, % area
        self.paint_count = 0
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(max(8.0, font.pointSizeF() * 0.95))
        font.setStyleHint(QFont.StyleHint.Monospace)
        self._stats_font = font

    def sizeHint(self) -> QSize:
        return QSize(960, 540)

    def set_frame(self, image: QImage, frame_w: int, frame_h: int) -> None:
        self._image = image
        self._frame_size = QSize(frame_w, frame_h)
        self.update()

    def clear(self) -> None:
        self._image = None
        self._frame_size = QSize()
        self.update()

    @property
    def has_image(self) -> bool:
        return self._image is not None

    def set_stats_lines(self, lines: list[str]) -> None:
        self._stats_lines = lines
        if self.show_stats:
            self.update()

    def set_legend(self, legend: list[tuple[int, str, float]], palette_rgb) -> None:
        """Classes present in the frame, largest first (as FrameResult.legend), with their colours."""
        self._legend = [(name, tuple(int(c) for c in palette_rgb[i]) if i < len(palette_rgb) else (0, 0, 0), pct)
                        for i, name, pct in legend[:12]]
        if self.show_legend:
            self.update()

    def legend_names(self) -> list[str]:
        return [name for name, _, _ in self._legend]

    def image_rect(self) -> QRect:
        """Where the picture is drawn, in widget coordinates (aspect ratio kept, centred)."""
        if self._frame_size.isEmpty():
            return QRect()
        size = self._frame_size.scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        return QRect(QPoint((self.width() - size.width()) // 2, (self.height() - size.height()) // 2), size)

    def device_size(self) -> tuple[int, int]:
        ratio = self.devicePixelRatioF()
        return int(self.width() * ratio), int(self.height() * ratio)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: ARG002
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(12, 12, 14))
        if self._image is not None:
            target = self.image_rect()
            painter.drawImage(QRectF(target), self._image)
            self.paint_count += 1
        if self.show_stats and self._stats_lines and self._image is not None:
            self._paint_stats(painter)
        if self.show_legend and self._legend and self._image is not None:
            self._paint_legend(painter)
        painter.end()

    def _paint_legend(self, painter: QPainter) -> None:
        painter.setFont(self._stats_font)
        metrics = painter.fontMetrics()
        pad, line_h = 6, metrics.height() + 2
        lines = [f"{name}  {pct:4.1f} %" for name, _, pct in self._legend]
        width = max(metrics.horizontalAdvance(line) for line in lines) + 3 * pad + line_h
        height = line_h * len(lines) + 2 * pad
        rect = self.image_rect()
        box = QRect(QPoint(rect.left() + 8, rect.bottom() - 8 - height), QSize(width, height))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawRoundedRect(box, 4, 4)
        for i, ((_, rgb, _), line) in enumerate(zip(self._legend, lines)):
            top = box.top() + pad + i * line_h
            painter.fillRect(QRect(box.left() + pad, top + 2, line_h - 4, line_h - 4), QColor(*rgb))
            painter.setPen(QColor(235, 235, 235))
            painter.drawText(box.left() + 2 * pad + line_h, top + metrics.ascent() + 1, line)

    def _paint_stats(self, painter: QPainter) -> None:
        painter.setFont(self._stats_font)
        metrics = painter.fontMetrics()
        pad, line_h = 6, metrics.height()
        width = max(metrics.horizontalAdvance(line) for line in self._stats_lines) + 2 * pad
        box = QRect(self.image_rect().topLeft() + QPoint(8, 8), QSize(width, line_h * len(self._stats_lines) + 2 * pad))
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 170))
        painter.drawRoundedRect(box, 4, 4)
        painter.setPen(QColor(235, 235, 235))
        for i, line in enumerate(self._stats_lines):
            painter.drawText(box.left() + pad, box.top() + pad + metrics.ascent() + i * line_h, line)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.resized.emit(*self.device_size())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self.hovered.emit(*self.frame_pixel(event.position().toPoint()))
        super().mouseMoveEvent(event)

    def leaveEvent(self, event) -> None:
        self.hovered.emit(-1, -1)
        super().leaveEvent(event)

    def frame_pixel(self, pos: QPoint) -> tuple[int, int]:
        rect = self.image_rect()
        if rect.isEmpty() or not rect.contains(pos):
            return -1, -1
        x = (pos.x() - rect.left()) * self._frame_size.width() // max(rect.width(), 1)
        y = (pos.y() - rect.top()) * self._frame_size.height() // max(rect.height(), 1)
        return min(x, self._frame_size.width() - 1), min(y, self._frame_size.height() - 1)
