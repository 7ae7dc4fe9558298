"""The main window's widgets and their arrangement (no behaviour here).

Video area (banners above the picture or the empty state) on the left, the side panels in a
scroll area on the right. The side panel scrolls instead of squeezing, so the window still
works at 800x600: the splitter gives the video what is left.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGroupBox, QLabel, QScrollArea, QSplitter, QStackedWidget, QStyle, QVBoxLayout, QWidget

from ..panels.capture_panel import CapturePanel
from ..panels.display_panel import DisplayPanel
from ..panels.empty_state import EmptyStateWidget
from ..panels.error_banner import BannerStack
from ..panels.legend_widget import LegendWidget
from ..panels.model_panel import ModelPanel
from ..panels.source_panel import SourcePanel
from ..panels.video_view import QtVideoView


VIDEO_MARGINS = (6, 6, 6, 6)  # around the video in a window; none in full screen (MainWindow.set_fullscreen)


class WindowLayout:
    def __init__(self):
        self.view = QtVideoView()
        self.empty_state = EmptyStateWidget()
        self.stack = QStackedWidget()
        self.stack.setObjectName("video_stack")  # full screen removes its border by this name
        self.stack.addWidget(self.empty_state)
        self.stack.addWidget(self.view)
        self.banner = BannerStack()
        video_area = QWidget()
        self.video_layout = QVBoxLayout(video_area)
        self.video_layout.setContentsMargins(*VIDEO_MARGINS)
        self.video_layout.addWidget(self.banner)
        self.video_layout.addWidget(self.stack, 1)

        self.source_panel = SourcePanel()
        self.model_panel = ModelPanel()
        self.display_panel = DisplayPanel()
        self.legend = LegendWidget()
        self.capture_panel = CapturePanel()
        legend_box = QGroupBox("Classes in this frame")
        QVBoxLayout(legend_box).addWidget(self.legend)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(4, 4, 4, 4)
        for panel in (self.source_panel, self.model_panel, self.display_panel, self.capture_panel):
            side_layout.addWidget(panel)
        side_layout.addWidget(legend_box, 1)
        self.side_scroll = QScrollArea()
        self.side_scroll.setWidget(side)
        self.side_scroll.setWidgetResizable(True)
        self.side_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # never clip the panel horizontally: as wide as its content plus a vertical scroll bar
        extent = self.side_scroll.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        self.side_width = side.minimumSizeHint().width() + extent + 2 * self.side_scroll.frameWidth() + 4
        self.side_scroll.setMinimumWidth(self.side_width)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("main_splitter")
        self.splitter.addWidget(video_area)
        self.splitter.addWidget(self.side_scroll)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setCollapsible(0, False)
        self.hover_label = QLabel("")
