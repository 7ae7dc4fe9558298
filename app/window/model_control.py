"""Which model serves frames: the registry list, switching, and what the user sees when it fails.

The window's model panel, Models menu and banners all follow this one object, so the
current model is shown the same everywhere. A model that is missing or fails to load puts a
banner up and the previous model keeps serving; the banner goes when a model loads.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine.errors import StudioError
from engine.models.registry import ModelEntry, Registry

from ..panels.error_banner import BannerStack
from .menus import Menus
from ..panels.model_choice import initial_model, variant_sibling
from ..panels.model_panel import ModelPanel
from ..settings_store import SettingsStore
from ..playback.worker import InferenceWorker

CAUSE = "model"


class ModelControl(QObject):
    serving_changed = Signal(object)  # ModelEntry now serving (or None)
    status_message = Signal(str, int)  # text, ms: for the status bar

    def __init__(self, worker: InferenceWorker, models_dir: Path, settings: SettingsStore, panel: ModelPanel,
                 menus: Menus, banners: BannerStack, parent: QObject | None = None):
        super().__init__(parent)
        self.worker, self.models_dir, self.settings = worker, Path(models_dir), settings
        self.panel, self.menus, self.banners = panel, menus, banners
        self.entries: list[ModelEntry] = []
        self.serving: ModelEntry | None = None
        worker.model_changed.connect(self._on_model_changed)
        worker.model_failed.connect(self._on_model_failed)

    def reload(self, requested: str | None = None) -> None:
        """Read the registry again; keep the current model if it is still installed."""
        self.banners.clear("registry")
        try:
            self.entries = Registry(self.models_dir).entries()
        except StudioError as exc:
            self.entries = []
            self.banners.show_message(str(exc), "registry")
        names = [e.name for e in self.entries]
        current = self.serving.name if self.serving is not None else None
        if requested and requested not in names:
            self.banners.show_message(f"model {requested!r} is not installed in {self.models_dir} "
                                      f"(installed: {', '.join(names) or 'none'})", CAUSE)
        choice = current if current in names and not requested else initial_model(self.entries, requested,
                                                                                  self.settings.model)
        self.panel.set_entries(self.entries, choice)
        self.menus.set_models(self.entries, choice)
        if choice is None:
            self.worker.set_model(None)
            self.status_message.emit("No model installed: video plays without segmentation", 8000)
        elif choice != current:
            self.select(choice)

    def select(self, name: str) -> None:
        if name not in {e.name for e in self.entries}:
            self.banners.show_message(f"model {name!r} is not installed in {self.models_dir}; "
                                      f"still serving {self.serving.name if self.serving else 'no model'}", CAUSE)
            self._show_current()
            return
        self.panel.set_current(name)
        self.menus.set_current_model(name)
        self.panel.set_status(f"Loading {name}…")
        self.worker.set_model(name)

    def select_variant(self, variant: str) -> None:
        current = self.serving or self.panel.entry(self.panel.current_name())
        entry = variant_sibling(self.entries, current, variant)
        if entry is None:
            dataset = current.dataset if current is not None else "this dataset"
            self.status_message.emit(f"No {variant} model installed for {dataset}", 5000)
            self._show_current()
            return
        if current is None or entry.name != current.name:
            self.select(entry.name)

    def _show_current(self) -> None:
        name = self.serving.name if self.serving is not None else None
        self.panel.set_current(name)
        self.menus.set_current_model(name)

    def _on_model_changed(self, entry: ModelEntry | None) -> None:
        self.serving = entry
        self._show_current()
        self.serving_changed.emit(entry)
        if entry is None:
            if self.entries:
                self.panel.set_status("No model selected")
            return
        self.banners.clear(CAUSE)  # the cause (a model that would not load) is gone
        providers = ", ".join(p.replace("ExecutionProvider", "") for p in self.worker.serving_providers())
        self.panel.set_status(f"Serving {entry.name} on {providers or 'CPU'}")
        self.settings.model = entry.name

    def _on_model_failed(self, name: str, message: str) -> None:
        self.banners.show_message(message, CAUSE)
        self.status_message.emit(message, 10000)
        self._show_current()
        serving = self.serving.name if self.serving is not None else None
        self.panel.set_status(f"{name} failed to load; " +
                              (f"still serving {serving}" if serving else "no model running"))
