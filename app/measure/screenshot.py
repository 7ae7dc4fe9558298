"""``--screenshot OUT``: render the real window a few seconds into a source, save a PNG, quit.

Run under Xvfb (``xvfb-run -a``) to see exactly what a desktop user sees, or offscreen.
The clock starts at the first segmented frame, so model loading does not eat the delay.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from ..main_window import MainWindow
from .scripted_run import ScriptedRun
from ..playback.worker import FrameResult


class ScreenshotRun(ScriptedRun):
    def __init__(self, window: MainWindow, out: Path, after_s: float = 3.0, has_source: bool = True,
                 timeout_s: float = 120.0, hover: bool = True):
        super().__init__(window, timeout_s, self._take_anyway)
        self.out, self.after_s, self.hover = Path(out), after_s, hover
        self._armed = False
        window.frame_shown.connect(self._on_frame)
        window.worker.source_failed.connect(self._on_source_failed)
        self._code = 0
        if not has_source:
            QTimer.singleShot(int(after_s * 1000), self._take)  # no source: shoot the empty state

    def _on_frame(self, result: FrameResult) -> None:
        if self._armed or (result.labels is None and self.window.model_panel.model_combo.count()):
            return
        self._armed = True
        QTimer.singleShot(int(self.after_s * 1000), self._take)

    def _take(self) -> None:
        if self.exit_code is not None:
            return
        if self.hover and self.window.view.has_image:
            rect = self.window.view.image_rect()
            self.window.hover_at(*self.window.view.frame_pixel(rect.center()))
        QApplication.processEvents()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if not self.window.grab().save(str(self.out)):
            self._fail(f"cannot write {self.out}")
            return
        print(f"saved {self.out}", flush=True)
        self._quit(self._code)

    def _on_source_failed(self, message: str) -> None:
        """Still save the window (it shows the error), but exit 2."""
        print(f"error: source failed: {message}", file=sys.stderr, flush=True)
        self._code = 2
        if not self._armed:
            self._armed = True
            QTimer.singleShot(1000, self._take)

    def _take_anyway(self) -> None:
        print("warning: no segmented frame in time; saving what is shown", file=sys.stderr)
        self._take()
