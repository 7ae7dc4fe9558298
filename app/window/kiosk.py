"""``--kiosk``: the video full screen with no window chrome, for demo stands and ARM boards.

On screen: the segmented video, an FPS badge (top left) and the legend (top right). Esc,
or pressing and holding anywhere for LONG_PRESS_S (touch screens), quits. A video file
plays in a loop; one that cannot play shows why, full screen. A camera that cannot be
opened shows a "no camera" screen and is tried again every RETRY_S seconds; with
``--fallback VIDEO`` that video loops meanwhile, and the camera takes over as soon as it opens.
"""
from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QLabel, QWidget

from engine.io.sources import camera_available

from ..playback.frame_reader import SourceInfo
from ..panels.legend_widget import LegendWidget
from ..main_window import MainWindow
from ..playback.worker import FrameResult

RETRY_S = 3.0
LONG_PRESS_S = 1.5
OVERLAY_REFRESH_S = 0.5
BADGE_STYLE = "background: rgba(0,0,0,170); color: #f0f0f0; border-radius: 6px; padding: 4px 8px; font-size: 15px;"
LEGEND_STYLE = "QTableWidget { background: rgba(0,0,0,150); color: #f0f0f0; border: none; font-size: 14px; }"


class NoCameraScreen(QLabel):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setStyleSheet("background: #0c0c0e; color: #e8e8e8; font-size: 28px;")

    def set_camera(self, spec: str, retry_s: float) -> None:
        self.setText(f"No camera\n\nCamera {spec} is not connected or is in use.\n"
                     f"Trying again every {retry_s:.0f} s.\n\nEsc or a long press quits.")

    def set_failed(self, message: str) -> None:
        """A video that cannot play: the reason, full screen (no desktop open buttons on a stand)."""
        self.setText(f"Cannot play the video\n\n{message}\n\nEsc or a long press quits.")


class KioskController(QObject):
    """Turns a MainWindow into the kiosk; create it before ``window.show()``."""

    def __init__(self, window: MainWindow, source: str, fallback: str | None = None,
                 retry_s: float = RETRY_S, long_press_s: float = LONG_PRESS_S):
        super().__init__(window)
        self.window, self.source, self.fallback = window, str(source), fallback
        self.is_camera = self.source.isdigit()
        self.retry_s = retry_s
        self.camera_attempts = 0
        self.camera_open = False
        self._overlay_refreshed = 0.0
        window.setWindowFlag(Qt.WindowType.FramelessWindowHint, True)

        self.badge = QLabel("starting…", window.view)
        self.badge.setStyleSheet(BADGE_STYLE)
        self.legend = LegendWidget(window.view)
        self.legend.setStyleSheet(LEGEND_STYLE)
        self.legend.horizontalHeader().setVisible(False)
        self.legend.setFixedWidth(240)
        self.no_camera = NoCameraScreen()
        self.no_camera.set_camera(self.source, retry_s)
        window.stack.addWidget(self.no_camera)

        self.quit_action = QAction("Quit kiosk", window)
        self.quit_action.setShortcut(QKeySequence("Escape"))
        self.quit_action.triggered.connect(window.close)
        window.addAction(self.quit_action)
        self.retry_timer = QTimer(self)
        self.retry_timer.setInterval(int(retry_s * 1000))
        self.retry_timer.timeout.connect(self.retry_camera)
        self.press_timer = QTimer(self)
        self.press_timer.setSingleShot(True)
        self.press_timer.setInterval(int(long_press_s * 1000))
        self.press_timer.timeout.connect(window.close)
        for widget in (window.view, self.no_camera, window.empty_state):
            widget.installEventFilter(self)

        window.worker.source_opened.connect(self._on_source_opened)
        window.worker.source_failed.connect(self._on_source_failed)
        window.frame_shown.connect(self._on_frame_shown)
        QTimer.singleShot(0, self._enter)

    # -- window ------------------------------------------------------------------------------------
    def _enter(self) -> None:
        w = self.window
        # Esc quits here, F does nothing: the window's own full-screen toggles step aside.
        w.menus.leave_fullscreen.setEnabled(False)
        w.menus.fullscreen.setChecked(True)
        w.menus.fullscreen.setEnabled(False)
        # The badge and the legend above replace what the desktop view paints on the picture in
        # full screen (its stats box and small legend): one of each on screen. Not saved: the
        # desktop app keeps its own display settings.
        w.menus.legend_overlay.setChecked(False)
        w.menus.legend_overlay.setEnabled(False)
        w.view.show_stats = False
        w.worker.set_loop(True)
        w.source_panel.set_loop(True)
        self._place_overlays()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.MouseButtonPress, QEvent.Type.TouchBegin):
            self.press_timer.start()
        elif kind in (QEvent.Type.MouseButtonRelease, QEvent.Type.TouchEnd, QEvent.Type.TouchCancel):
            self.press_timer.stop()
        elif kind == QEvent.Type.Resize and watched is self.window.view:
            self._place_overlays()
        return False

    def _place_overlays(self) -> None:
        view = self.window.view
        self.badge.adjustSize()
        self.badge.move(12, 12)
        rows = self.legend.visible_rows()  # rows only grow in the table; the surplus is hidden
        height = min(view.height() - 24, self.legend.rowHeight(0) * rows + 6 if rows else 30)
        self.legend.setFixedHeight(max(30, height))
        self.legend.move(max(12, view.width() - self.legend.width() - 12), 12)
        self.badge.raise_()
        self.legend.raise_()

    def _on_frame_shown(self, result: FrameResult) -> None:
        now = time.monotonic()
        if now - self._overlay_refreshed < OVERLAY_REFRESH_S:
            return
        self._overlay_refreshed = now
        s = result.stats
        ih, iw = s.input_size
        model = f"{s.model}  {iw}x{ih}" if s.model else "no model"
        self.badge.setText(f"{s.e2e_fps:4.1f} fps   {model}")
        if result.legend is not None:
            self.legend.set_classes(result.legend, result.palette_rgb)
        self._place_overlays()

    # -- sources -----------------------------------------------------------------------------------
    def _on_source_opened(self, info: SourceInfo) -> None:
        self.camera_open = info.kind == "camera"
        if self.camera_open or not self.is_camera:
            self.retry_timer.stop()

    def _on_source_failed(self, message: str) -> None:
        if not self.is_camera:
            self.window.banner.hide()  # the message screen says it
            self.no_camera.set_failed(message)
            self.window.stack.setCurrentWidget(self.no_camera)
            return
        self.camera_open = False
        self.window.banner.hide()  # the no-camera screen (or the fallback video) says it
        if self.fallback and self.window.worker.current_source() is None:
            self.window.open_source(self.fallback)
        elif not self.window.view.has_image or self.window.worker.current_source() is None:
            self.window.stack.setCurrentWidget(self.no_camera)
        if not self.retry_timer.isActive():
            self.retry_timer.start()

    def retry_camera(self) -> None:
        """Open the camera again when it may be there (cheap check first: no device, no attempt)."""
        if self.camera_open:
            self.retry_timer.stop()
            return
        self.camera_attempts += 1
        if camera_available(int(self.source)):
            self.window.open_source(self.source)

    @property
    def showing_no_camera(self) -> bool:
        return self.window.stack.currentWidget() is self.no_camera
