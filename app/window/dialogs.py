"""Opens the window's secondary windows (Models, Annotate video, shortcuts, About), one of each.

All are non-modal: the video keeps playing behind them. The window passes what they need
(folders, the serving model) explicitly, so no dialog reaches into the window.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QWidget

from ..dialogs.help_dialogs import AboutDialog, ShortcutsDialog, about_text
from ..settings_store import SettingsStore


class Dialogs(QObject):
    def __init__(self, window: QWidget, models_dir: Path, settings: SettingsStore,
                 on_models_changed: Callable[[], None], on_use_model: Callable[[str], None]):
        super().__init__(window)
        self.window, self.models_dir, self.settings = window, models_dir, settings
        self._on_models_changed, self._on_use_model = on_models_changed, on_use_model
        self.models_dialog = None
        self.annotate_dialog = None

    def models(self, tab: str = "installed", checkpoint: str | None = None):
        """The Models dialog (one at a time) on ``tab``; ``checkpoint`` fills the import tab's path."""
        from ..dialogs.models_dialog import ModelsDialog

        if self.models_dialog is None:
            dialog = ModelsDialog(self.window, self.models_dir, self.settings)
            dialog.models_changed.connect(lambda _name: self._on_models_changed())
            dialog.use_requested.connect(self._on_use_model)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.destroyed.connect(lambda *_: setattr(self, "models_dialog", None))
            self.models_dialog = dialog
        self.models_dialog.show_tab(tab)
        if checkpoint is not None:
            self.models_dialog.import_path.setText(checkpoint)
        self.models_dialog.show()
        self.models_dialog.raise_()
        return self.models_dialog

    def annotate(self, video: str | None, model: str | None):
        from ..dialogs.annotate_dialog import AnnotateDialog

        dialog = AnnotateDialog(self.window, self.models_dir, video_path=video, model_name=model,
                                out_root=self.settings.annotate_dir)
        dialog.out_root_chosen.connect(lambda folder: setattr(self.settings, "annotate_dir", folder))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.annotate_dialog = dialog
        return dialog

    def shortcuts(self, rows: list[tuple[str, str]]) -> ShortcutsDialog:
        dialog = ShortcutsDialog(self.window, rows)
        dialog.show()
        return dialog

    def about(self, model: str | None, providers: list[str]) -> AboutDialog:
        dialog = AboutDialog(self.window, about_text(model, providers))
        dialog.show()
        return dialog

    def close_all(self) -> None:
        if self.models_dialog is not None:
            self.models_dialog.close()
