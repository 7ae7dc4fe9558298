"""Base of the scripted, self-ending window runs (``--benchmark-frames``, ``--screenshot``)."""
from __future__ import annotations

import sys
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from .main_window import MainWindow


class ScriptedRun(QObject):
    """Owns the exit code and a watchdog, so a scripted run always ends, with 0 or 2."""

    def __init__(self, window: MainWindow, timeout_s: float, on_timeout: Callable[[], None]):
        super().__init__(window)
        self.window = window
        self.exit_code: int | None = None
        self._watchdog = QTimer(self)
        self._watchdog.setSingleShot(True)
        self._watchdog.timeout.connect(on_timeout)
        self._watchdog.start(int(timeout_s * 1000))

    def _fail(self, message: str) -> None:
        if self.exit_code is None:
            print(f"error: {message}", file=sys.stderr, flush=True)
            self._quit(2)

    def _quit(self, code: int) -> None:
        self.exit_code = code
        self._watchdog.stop()
        self.window.close()
        QApplication.instance().exit(code)
