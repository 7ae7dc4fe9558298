"""Finds the cameras that actually open, on a background thread (probing can take seconds)."""
from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal

from engine.io.sources import list_cameras


class CameraProbe(QObject):
    cameras_found = Signal(list)  # list[int]

    def __init__(self, parent: QObject | None = None, max_index: int = 5):
        super().__init__(parent)
        self.max_index = max_index
        self._thread: threading.Thread | None = None

    def probe(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="studio-camera-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            found = list_cameras(self.max_index)
        except Exception:  # noqa: BLE001 - a misbehaving driver means "no camera"
            found = []
        try:
            self.cameras_found.emit(found)
        except RuntimeError:  # the window closed while probing
            pass

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
