"""Display settings (opacity, boundaries, mask only, stats, theme, colours): panel -> settings -> worker/view."""
from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QApplication

from ..panels.display_panel import DisplayPanel
from ..settings_store import SettingsStore
from ..theme import apply_theme
from ..panels.video_view import QtVideoView
from ..playback.worker import InferenceWorker


class DisplayControl(QObject):
    def __init__(self, worker: InferenceWorker, view: QtVideoView, panel: DisplayPanel, settings: SettingsStore,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.worker, self.view, self.panel, self.settings = worker, view, panel, settings
        panel.display_changed.connect(self._on_display_changed)
        panel.stats_toggled.connect(self._on_stats_toggled)
        panel.theme_changed.connect(self.set_theme)
        panel.palette_changed.connect(self.set_palette)
        s = settings
        panel.set_values(s.opacity, s.boundaries, s.mask_only, s.show_stats, s.theme)
        panel.set_palette(s.palette)
        view.show_stats = s.show_stats
        worker.set_display(s.opacity, s.boundaries, s.mask_only)
        worker.set_palette(s.palette)

    def _on_display_changed(self, opacity: float, boundaries: bool, mask_only: bool) -> None:
        self.settings.opacity, self.settings.boundaries, self.settings.mask_only = opacity, boundaries, mask_only
        self.worker.set_display(opacity, boundaries, mask_only)

    def _on_stats_toggled(self, show: bool) -> None:
        self.settings.show_stats = show
        self.view.show_stats = show
        self.view.update()

    def set_theme(self, theme: str) -> None:
        self.settings.theme = theme
        apply_theme(QApplication.instance(), theme)

    def set_palette(self, mode: str) -> None:
        """"distinct" (road, car and pavement clearly apart) or "dataset" (the official colours)."""
        self.settings.palette = mode
        self.panel.set_palette(mode)
        self.worker.set_palette(mode)
