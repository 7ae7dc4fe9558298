"""Snapshots and recordings: the capture panel and the worker's capture signals, in one place."""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

from ..panels.capture_panel import CapturePanel
from ..panels.error_banner import BannerStack
from ..settings_store import SettingsStore
from ..playback.worker import InferenceWorker

CAUSE = "capture"


class CaptureControl(QObject):
    status_message = Signal(str, int)  # text, ms

    def __init__(self, worker: InferenceWorker, panel: CapturePanel, settings: SettingsStore, banners: BannerStack,
                 parent: QWidget):
        super().__init__(parent)
        self.worker, self.panel, self.settings, self.banners = worker, panel, settings, banners
        self._started = 0.0
        self.timer = QTimer(self)
        self.timer.setInterval(500)
        self.timer.timeout.connect(lambda: self.panel.set_recording(True, time.monotonic() - self._started))
        worker.snapshot_saved.connect(self._on_snapshot_saved)
        worker.recording_started.connect(self._on_recording_started)
        worker.recording_stopped.connect(self._on_recording_stopped)
        panel.snapshot_requested.connect(self.snapshot)
        panel.record_toggled.connect(self.set_recording)
        panel.choose_folder_requested.connect(self.choose_output_dir)
        panel.set_folder(settings.output_dir)

    def choose_output_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.parent(), "Save captures in", str(self.settings.output_dir))
        if folder:
            self.set_output_dir(folder)

    def set_output_dir(self, folder: Path | str) -> None:
        self.settings.output_dir = folder
        self.panel.set_folder(Path(folder))
        self.banners.clear(CAUSE)

    def snapshot(self) -> None:
        if not self.worker.snapshot(self.settings.output_dir):
            self.status_message.emit("Nothing to save yet", 3000)

    def _on_snapshot_saved(self, paths: list) -> None:
        self.banners.clear(CAUSE)
        folder = Path(paths[0]).parent if paths else self.settings.output_dir
        self.status_message.emit(f"Saved {len(paths)} images in {folder}", 6000)

    def toggle_recording(self) -> None:
        self.set_recording(not self.panel.is_recording())

    def set_recording(self, on: bool) -> None:
        if on:
            self.worker.start_recording(self.settings.output_dir)
            self.panel.set_recording(True)
        else:
            self.worker.stop_recording()

    def _on_recording_started(self, path: str) -> None:
        self.banners.clear(CAUSE)
        self._started = time.monotonic()
        self.panel.set_recording(True)
        self.timer.start()
        self.status_message.emit(f"Recording to {path}", 4000)

    def _on_recording_stopped(self, path: str, frames: int) -> None:
        self.timer.stop()
        self.panel.set_recording(False)
        if path:
            self.status_message.emit(f"Recorded {frames} frames to {path}", 8000)

    def stop(self) -> None:
        self.timer.stop()
