"""The menu bar and every keyboard shortcut, built from the window's public methods.

Actions are also added to the window itself, so shortcuts keep working in full screen with
the menu bar hidden. The current model and scale carry check marks; the shortcut list in
Help is read from these actions, so it can never disagree with what the keys do.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

from engine.models.registry import ModelEntry

from ..compare.compare_window import open_compare
from ..panels.model_choice import VARIANT_KEYS
from ..panels.source_panel import camera_tooltip

if TYPE_CHECKING:
    from ..main_window import MainWindow


class Menus(QObject):
    def __init__(self, window: "MainWindow"):
        super().__init__(window)
        self.window = window
        self.shortcut_actions: list[QAction] = []
        bar = window.menuBar()
        w = window

        file_menu = bar.addMenu("&File")
        self._add(file_menu, "Open video or image…", w.open_file_dialog, QKeySequence.StandardKey.Open)
        self.open_camera = self._add(file_menu, "Open camera", w.open_selected_camera)
        self._add(file_menu, "Output folder…", w.choose_output_dir)
        file_menu.addSeparator()
        self._add(file_menu, "Quit", w.close, QKeySequence.StandardKey.Quit)

        play_menu = bar.addMenu("&Playback")
        self._add(play_menu, "Play / pause", w.toggle_playing, "Space")
        self._add(play_menu, "Step one frame", w.step, ".")
        self._hidden("Step one frame", w.step, "Right")

        self.models_menu = bar.addMenu("&Models")
        self._model_group = QActionGroup(self)
        self._model_group.setExclusive(True)
        self._model_actions: dict[str, QAction] = {}
        self._models_end = self.models_menu.addSeparator()
        for number, key in enumerate(VARIANT_KEYS, start=1):
            self._add(self.models_menu, f"{key.capitalize()} variant", lambda _c=False, k=key: w.select_variant(k),
                      str(number))
        self.models_menu.addSeparator()
        scale_group = QActionGroup(self)
        self.scale_actions: dict[str, QAction] = {}
        for key, text in (("full", "Full resolution"), ("half", "Half resolution"), ("best", "Model's best input size")):
            action = self._add(self.models_menu, text, lambda _c=False, k=key: w.set_scale(k))
            action.setCheckable(True)
            scale_group.addAction(action)
            self.scale_actions[key] = action
        self._hidden("Full / half resolution", w.toggle_scale, "H")
        self.models_menu.addSeparator()
        self._add(self.models_menu, "Manage models…", w.open_models_dialog, "Ctrl+M")
        self._add(self.models_menu, "Download…", lambda: w.open_models_dialog("download"))
        self._add(self.models_menu, "Import checkpoint…", lambda: w.open_models_dialog("import"))
        self._add(self.models_menu, "Reload models", w.reload_models)

        capture_menu = bar.addMenu("&Capture")
        self._add(capture_menu, "Snapshot", w.snapshot, "S")
        self._add(capture_menu, "Record / stop", w.toggle_recording, "R")

        view_menu = bar.addMenu("&View")
        self.fullscreen = self._add(view_menu, "Full screen", None, "F", checkable=True)
        self.fullscreen.toggled.connect(w.set_fullscreen)
        self.leave_fullscreen = self._hidden("Leave full screen", lambda: self.fullscreen.setChecked(False), "Escape")
        self.legend_overlay = self._add(view_menu, "Legend on the video", None, "L", checkable=True)
        self.legend_overlay.toggled.connect(w.set_legend_overlay)
        self._add(view_menu, "Mask only", w.display_panel.toggle_mask_only, "M")
        self._add(view_menu, "Class boundaries", w.display_panel.toggle_boundaries, "B")
        self._add(view_menu, "Dark / light theme", w.display_panel.toggle_theme)
        self._add(view_menu, "Compare models…", lambda: open_compare(w, w.source_info, w.models_dir, pause=w))

        tools_menu = bar.addMenu("&Tools")
        self._add(tools_menu, "Annotate video…", w.open_annotate_dialog)

        help_menu = bar.addMenu("&Help")
        self._add(help_menu, "Keyboard shortcuts", w.show_shortcuts, QKeySequence.StandardKey.HelpContents)
        self._add(help_menu, "About TopFormer Studio", w.show_about)

    def _add(self, menu: QMenu, text: str, slot, shortcut=None, checkable: bool = False) -> QAction:
        action = QAction(text, self.window)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            self.shortcut_actions.append(action)
        action.setCheckable(checkable)
        if slot is not None:
            action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        self.window.addAction(action)  # shortcuts keep working in full screen, with the menu bar hidden
        return action

    def _hidden(self, text: str, slot, shortcut: str) -> QAction:
        """A shortcut with no menu entry (a second key for the same command)."""
        action = QAction(text, self.window)
        action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda _checked=False: slot())
        self.window.addAction(action)
        self.shortcut_actions.append(action)
        return action

    # -- state in ------------------------------------------------------------------------------------
    def set_models(self, entries: list[ModelEntry], current: str | None) -> None:
        """One checkable entry per installed model, at the top of the Models menu."""
        for action in self._model_actions.values():
            self._model_group.removeAction(action)
            self.models_menu.removeAction(action)
            action.deleteLater()
        self._model_actions = {}
        for entry in entries:
            action = QAction(entry.describe(), self.window)
            action.setCheckable(True)
            action.triggered.connect(lambda _c=False, n=entry.name: self.window.select_model(n))
            self._model_group.addAction(action)
            self.models_menu.insertAction(self._models_end, action)
            self._model_actions[entry.name] = action
        self.set_current_model(current)

    def set_current_model(self, name: str | None) -> None:
        for model, action in self._model_actions.items():
            action.setChecked(model == name)

    def checked_model(self) -> str | None:
        return next((n for n, a in self._model_actions.items() if a.isChecked()), None)

    def set_scale(self, scale: str) -> None:
        for key, action in self.scale_actions.items():
            action.setChecked(key == scale)

    def set_cameras_available(self, found: bool) -> None:
        self.open_camera.setEnabled(found)
        self.open_camera.setToolTip(camera_tooltip(found))
        self.open_camera.setStatusTip(camera_tooltip(found))

    def shortcuts(self) -> list[tuple[str, str]]:
        """(keys, what they do) for Help > Keyboard shortcuts."""
        rows = []
        for action in self.shortcut_actions:
            keys = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if keys:
                rows.append((keys, action.text().replace("&", "").rstrip("…")))
        return rows
