"""The main window: wires the worker, the video view and the side panels together.

It holds no model logic and does no per-frame work beyond painting the picture the worker
already rendered; panel text (legend, position) is refreshed a few times a second.
"""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (QApplication, QFileDialog, QGroupBox, QLabel, QMainWindow, QScrollArea, QSplitter,
                               QStackedWidget, QStyle, QVBoxLayout, QWidget)

from engine.errors import StudioError
from engine.registry import ModelEntry, Registry, default_models_dir
from engine.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

from .camera_probe import CameraProbe
from .capture_panel import CapturePanel
from .display_panel import DisplayPanel
from .empty_state import EmptyStateWidget
from .error_banner import MessageBanner
from .frame_reader import SourceInfo
from .legend_widget import LegendWidget
from .model_choice import VARIANT_KEYS, initial_model, variant_sibling
from .model_panel import ModelPanel
from .settings_store import SettingsStore
from .source_panel import SourcePanel
from .theme import apply_theme
from .video_view import QtVideoView
from .worker import FrameResult, InferenceWorker

PANEL_REFRESH_S = 0.25


class MainWindow(QMainWindow):
    frame_shown = Signal(object)  # FrameResult, after it was handed to the view

    def __init__(self, settings: SettingsStore, models_dir: Path | str | None = None, source: str | None = None,
                 model: str | None = None, scale: str | None = None, probe_cameras: bool = True, opener=None):
        super().__init__()
        self.settings = settings
        self.models_dir = Path(models_dir) if models_dir else default_models_dir()
        self.worker = InferenceWorker(self.models_dir, self, opener=opener)
        self.source_info: SourceInfo | None = None
        self.last_result: FrameResult | None = None
        self.last_error = ""
        self.playing = True
        self.threads_stopped: bool | None = None
        self._entries: list[ModelEntry] = []
        self._serving: ModelEntry | None = None
        self._panel_refreshed = 0.0
        self._hover = (-1, -1)
        self._record_started = 0.0
        self._closed = False
        self._build_ui()
        self._build_actions()
        self._connect()
        self._restore(scale)
        self.camera_probe = CameraProbe(self)
        self.camera_probe.cameras_found.connect(self._on_cameras_found)
        # Threads start once the event loop runs, so whoever created the window has connected
        # to its signals before the first source or model error can be emitted.
        start = source if source is not None else settings.last_source
        QTimer.singleShot(0, lambda: self._start(start, model, probe_cameras))

    # -- construction -------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.setWindowTitle("TopFormer Studio")
        self.setAcceptDrops(True)
        self.view = QtVideoView()
        self.empty_state = EmptyStateWidget()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty_state)
        self.stack.addWidget(self.view)
        self.banner = MessageBanner()
        video_area = QWidget()
        video_layout = QVBoxLayout(video_area)
        video_layout.setContentsMargins(6, 6, 6, 6)
        video_layout.addWidget(self.banner)
        video_layout.addWidget(self.stack, 1)

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
        self.splitter.addWidget(video_area)
        self.splitter.addWidget(self.side_scroll)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setCollapsible(0, False)
        self.setCentralWidget(self.splitter)
        self.hover_label = QLabel("")
        self.statusBar().addPermanentWidget(self.hover_label)
        self.record_timer = QTimer(self)
        self.record_timer.setInterval(500)
        self.record_timer.timeout.connect(self._update_record_time)

    def _action(self, menu, text: str, slot, shortcut: str | QKeySequence | None = None,
                checkable: bool = False) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setCheckable(checkable)
        (action.toggled if checkable else action.triggered).connect(slot)
        menu.addAction(action)
        self.addAction(action)  # shortcuts keep working in full screen, with the menu bar hidden
        return action

    def _build_actions(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "Open video or image…", self.open_file_dialog, QKeySequence.StandardKey.Open)
        self._action(file_menu, "Open camera", self._open_selected_camera)
        self._action(file_menu, "Output folder…", self.choose_output_dir)
        file_menu.addSeparator()
        self._action(file_menu, "Quit", self.close, QKeySequence.StandardKey.Quit)

        play_menu = bar.addMenu("&Playback")
        self._action(play_menu, "Play / pause", lambda: self.set_playing(not self.playing), "Space")
        self._action(play_menu, "Step one frame", self.step, ".")
        self.step_right = QAction(self)
        self.step_right.setShortcut(QKeySequence("Right"))
        self.step_right.triggered.connect(self.step)
        self.addAction(self.step_right)

        model_menu = bar.addMenu("&Model")
        for number, key in enumerate(VARIANT_KEYS, start=1):
            self._action(model_menu, f"{key.capitalize()} variant", lambda _c=False, k=key: self.select_variant(k),
                         str(number))
        self._action(model_menu, "Full / half resolution", self.toggle_scale, "H")
        self._action(model_menu, "Reload models", lambda: self.reload_models())

        capture_menu = bar.addMenu("&Capture")
        self._action(capture_menu, "Snapshot", self.snapshot, "S")
        self._action(capture_menu, "Record / stop", lambda: self.set_recording(not self.capture_panel.record_button.isChecked()), "R")

        view_menu = bar.addMenu("&View")
        self.fullscreen_action = self._action(view_menu, "Full screen", self.set_fullscreen, "F", checkable=True)
        self.exit_fullscreen = QAction(self)
        self.exit_fullscreen.setShortcut(QKeySequence("Escape"))
        self.exit_fullscreen.triggered.connect(lambda: self.fullscreen_action.setChecked(False))
        self.addAction(self.exit_fullscreen)
        self._action(view_menu, "Mask only", lambda: self.display_panel.mask_only_check.toggle(), "M")
        self._action(view_menu, "Class boundaries", lambda: self.display_panel.boundaries_check.toggle(), "B")
        self._action(view_menu, "Dark / light theme", lambda: self.display_panel.dark_check.toggle())

        tools_menu = bar.addMenu("&Tools")
        self._action(tools_menu, "Annotate video…", self.open_annotate_dialog)

    def _connect(self) -> None:
        w = self.worker
        w.frame_ready.connect(self._on_frame_ready)
        w.source_opened.connect(self._on_source_opened)
        w.source_failed.connect(self._on_source_failed)
        w.source_ended.connect(self._on_source_ended)
        w.model_changed.connect(self._on_model_changed)
        w.model_failed.connect(self._on_model_failed)
        w.error_occurred.connect(self.show_error)
        w.snapshot_saved.connect(self._on_snapshot_saved)
        w.recording_started.connect(self._on_recording_started)
        w.recording_stopped.connect(self._on_recording_stopped)
        self.view.resized.connect(w.set_view_size)
        self.view.hovered.connect(self._on_hover)
        self.empty_state.open_video_requested.connect(self.open_file_dialog)
        self.empty_state.open_camera_requested.connect(self._open_selected_camera)
        sp = self.source_panel
        sp.open_file_requested.connect(self.open_file_dialog)
        sp.camera_requested.connect(self.open_source)
        sp.refresh_cameras_requested.connect(lambda: self.camera_probe.probe())
        sp.play_toggled.connect(self.set_playing)
        sp.step_requested.connect(self.step)
        sp.seek_requested.connect(self.worker.seek)
        sp.loop_changed.connect(self._on_loop_changed)
        sp.realtime_changed.connect(self._on_realtime_changed)
        mp = self.model_panel
        mp.model_selected.connect(self.select_model)
        mp.variant_selected.connect(self.select_variant)
        mp.scale_selected.connect(self.set_scale)
        mp.reload_requested.connect(lambda: self.reload_models())
        dp = self.display_panel
        dp.display_changed.connect(self._on_display_changed)
        dp.stats_toggled.connect(self._on_stats_toggled)
        dp.theme_changed.connect(self.set_theme)
        cp = self.capture_panel
        cp.snapshot_requested.connect(self.snapshot)
        cp.record_toggled.connect(self.set_recording)
        cp.choose_folder_requested.connect(self.choose_output_dir)

    def _restore(self, scale: str | None) -> None:
        s = self.settings
        if s.geometry is not None:
            self.restoreGeometry(s.geometry)
        else:
            screen = QApplication.primaryScreen()
            free = screen.availableGeometry() if screen is not None else None
            if free is not None and free.width() > 0:
                self.resize(min(1440, int(free.width() * 0.9)), min(900, int(free.height() * 0.9)))
            else:
                self.resize(1440, 900)
        if s.splitter_state is not None:
            self.splitter.restoreState(s.splitter_state)
        else:
            self.splitter.setSizes([max(self.width() - self.side_width, 400), self.side_width])
        self.display_panel.set_values(s.opacity, s.boundaries, s.mask_only, s.show_stats, s.theme)
        self.view.show_stats = s.show_stats
        self.worker.set_display(s.opacity, s.boundaries, s.mask_only)
        self.source_panel.set_loop(s.loop)
        self.source_panel.set_realtime(s.realtime)
        self.worker.set_loop(s.loop)
        self.worker.set_realtime(s.realtime)
        self.capture_panel.set_folder(s.output_dir)
        self.set_scale(scale or s.scale)
        self.source_panel.set_playing(True)

    def _start(self, source: str | None, model: str | None, probe_cameras: bool) -> None:
        if self._closed:
            return
        self.worker.start()
        self.reload_models(requested=model)
        if probe_cameras:
            self.camera_probe.probe()
        if source is not None:
            self.open_source(source)

    # -- sources --------------------------------------------------------------------------------------
    def open_source(self, spec: str | int) -> None:
        """Open a camera index or a file path; errors arrive as source_failed (the old source keeps playing)."""
        self.worker.open_source(str(spec))

    def open_file_dialog(self) -> None:
        patterns = " ".join(f"*{ext}" for ext in sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS))
        path, _ = QFileDialog.getOpenFileName(self, "Open video or image", self.settings.last_open_dir,
                                              f"Videos and images ({patterns});;All files (*)")
        if path:
            self.settings.last_open_dir = str(Path(path).parent)
            self.open_source(path)

    def _open_selected_camera(self) -> None:
        index = self.source_panel.camera_combo.currentData()
        self.open_source(int(index) if index is not None else 0)

    def _on_cameras_found(self, indices: list) -> None:
        # the camera we are streaming from may be busy for the probe: keep it in the list
        if self.source_info is not None and self.source_info.kind == "camera":
            indices = sorted(set(indices) | {int(self.source_info.spec)})
        self.source_panel.set_cameras(list(indices))

    def set_playing(self, playing: bool) -> None:
        self.playing = bool(playing)
        self.source_panel.set_playing(self.playing)
        self.worker.set_paused(not self.playing)

    def step(self) -> None:
        self.set_playing(False)
        self.worker.step()

    def _on_source_opened(self, info: SourceInfo) -> None:
        self.source_info = info
        self.source_panel.set_source(info)
        self.setWindowTitle(f"TopFormer Studio — {info.description}")
        self.settings.last_source = info.spec
        self.stack.setCurrentWidget(self.view)
        self.statusBar().showMessage(f"Opened {info.description}", 4000)
        self.view.clear()
        self.set_playing(True)

    def _on_source_failed(self, message: str) -> None:
        self.show_error(message)
        if self.worker.reader.info is None:
            self.source_info = None
            self.source_panel.set_source(None)
        if not self.view.has_image:
            self.empty_state.set_message(f"{message}\n\nOpen another video file or image, or a camera.")
            self.stack.setCurrentWidget(self.empty_state)

    def _on_source_ended(self) -> None:
        self.source_panel.set_playing(False)
        self.playing = False
        if self.source_info is not None and self.source_info.kind != "image":
            self.statusBar().showMessage("End of video: press Play to start again", 5000)

    def _on_loop_changed(self, loop: bool) -> None:
        self.settings.loop = loop
        self.worker.set_loop(loop)

    def _on_realtime_changed(self, realtime: bool) -> None:
        self.settings.realtime = realtime
        self.worker.set_realtime(realtime)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        files = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if files:
            event.acceptProposedAction()
            self.open_source(files[0])

    # -- models ---------------------------------------------------------------------------------------
    def reload_models(self, requested: str | None = None) -> None:
        """Read the registry again; keep the current model if it is still installed."""
        try:
            self._entries = Registry(self.models_dir).entries()
        except StudioError as exc:
            self._entries = []
            self.show_error(str(exc))
        names = [e.name for e in self._entries]
        current = self._serving.name if self._serving is not None else None
        if requested and requested not in names:
            self.show_error(f"model {requested!r} is not installed in {self.models_dir} "
                            f"(installed: {', '.join(names) or 'none'})")
        choice = current if current in names and not requested else initial_model(self._entries, requested,
                                                                                    self.settings.model)
        self.model_panel.set_entries(self._entries, choice)
        if choice is None:
            self.worker.set_model(None)
            self.statusBar().showMessage("No model installed: video plays without segmentation", 8000)
        elif choice != current:
            self.select_model(choice)

    def select_model(self, name: str) -> None:
        self.model_panel.set_current(name)
        self.model_panel.set_status(f"Loading {name}…")
        self.worker.set_model(name)

    def select_variant(self, variant: str) -> None:
        current = self._serving or self.model_panel.entry(self.model_panel.model_combo.currentData())
        entry = variant_sibling(self._entries, current, variant)
        if entry is None:
            dataset = current.dataset if current is not None else "this dataset"
            self.statusBar().showMessage(f"No {variant} model installed for {dataset}", 5000)
            self.model_panel.set_current(current.name if current else None)
            return
        if current is None or entry.name != current.name:
            self.select_model(entry.name)

    def _on_model_changed(self, entry: ModelEntry | None) -> None:
        self._serving = entry
        if entry is None:
            self.model_panel.set_current(None)
            if self._entries:
                self.model_panel.set_status("No model selected")
            return
        self.model_panel.set_current(entry.name)
        segmenter = self.worker.segmenter
        providers = ", ".join(p.replace("ExecutionProvider", "") for p in (segmenter.providers if segmenter else []))
        self.model_panel.set_status(f"Serving {entry.name} on {providers or 'CPU'}")
        self.settings.model = entry.name

    def _on_model_failed(self, name: str, message: str) -> None:
        self.show_error(message)
        serving = self._serving.name if self._serving is not None else None
        self.model_panel.set_current(serving)
        self.model_panel.set_status(f"{name} failed to load; " +
                                    (f"still serving {serving}" if serving else "no model running"))

    def set_scale(self, scale: str) -> None:
        self.settings.scale = scale
        self.model_panel.set_scale(scale)
        self.worker.set_scale(scale)

    def toggle_scale(self) -> None:
        self.set_scale("half" if self.worker.scale == "full" else "full")

    # -- display ---------------------------------------------------------------------------------------
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

    def set_fullscreen(self, on: bool) -> None:
        self.side_scroll.setVisible(not on)
        self.menuBar().setVisible(not on)
        self.statusBar().setVisible(not on)
        self.showFullScreen() if on else self.showNormal()

    def _on_frame_ready(self) -> None:
        result = self.worker.take_result()
        if result is None or self._closed:
            return
        if result.source is not None and self.source_info is not None and \
                result.source.generation < self.source_info.generation:
            return  # a late frame of the previous source
        self.last_result = result
        if self.stack.currentWidget() is not self.view:
            self.stack.setCurrentWidget(self.view)
        h, w = result.frame_bgr.shape[:2]
        self.view.set_frame(result.image, w, h)
        self.view.set_stats_lines(result.stats.lines())
        now = time.monotonic()
        if now - self._panel_refreshed >= PANEL_REFRESH_S or not self.playing:
            self._panel_refreshed = now
            self.legend.set_classes(result.legend, result.palette_rgb)
            self.source_panel.set_position(result.frame_index)
            self._update_hover_text()
        self.frame_shown.emit(result)

    def _on_hover(self, x: int, y: int) -> None:
        self._hover = (x, y)
        self._update_hover_text()

    def _update_hover_text(self) -> None:
        self.hover_label.setText(self.hover_text())

    def hover_text(self) -> str:
        """The class under the cursor (empty when outside the picture or without a model)."""
        x, y = self._hover
        result = self.last_result
        if x < 0 or result is None or result.labels is None:
            return ""
        labels = result.labels
        if y >= labels.shape[0] or x >= labels.shape[1]:
            return ""
        class_id = int(labels[y, x])
        name = result.class_names[class_id] if class_id < len(result.class_names) else f"class {class_id}"
        return f"({x}, {y}) {name}"

    def show_error(self, message: str) -> None:
        self.last_error = message
        self.banner.show_message(message, error=True)
        self.statusBar().showMessage(message, 10000)

    # -- capture ---------------------------------------------------------------------------------------
    def choose_output_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save captures in", str(self.settings.output_dir))
        if folder:
            self.set_output_dir(folder)

    def set_output_dir(self, folder: Path | str) -> None:
        self.settings.output_dir = folder
        self.capture_panel.set_folder(Path(folder))

    def snapshot(self) -> None:
        if not self.worker.snapshot(self.settings.output_dir):
            self.statusBar().showMessage("Nothing to save yet", 3000)

    def _on_snapshot_saved(self, paths: list) -> None:
        folder = Path(paths[0]).parent if paths else self.settings.output_dir
        self.statusBar().showMessage(f"Saved {len(paths)} images in {folder}", 6000)

    def set_recording(self, on: bool) -> None:
        if on:
            self.worker.start_recording(self.settings.output_dir)
            self.capture_panel.set_recording(True)
        else:
            self.worker.stop_recording()

    def _on_recording_started(self, path: str) -> None:
        self._record_started = time.monotonic()
        self.capture_panel.set_recording(True)
        self.record_timer.start()
        self.statusBar().showMessage(f"Recording to {path}", 4000)

    def _on_recording_stopped(self, path: str, frames: int) -> None:
        self.record_timer.stop()
        self.capture_panel.set_recording(False)
        if path:
            self.statusBar().showMessage(f"Recorded {frames} frames to {path}", 8000)

    def _update_record_time(self) -> None:
        self.capture_panel.set_recording(True, time.monotonic() - self._record_started)

    # -- tools ---------------------------------------------------------------------------------------
    def open_annotate_dialog(self) -> None:
        """Annotate video… lives in app/annotate_dialog.py (another module); imported on first use."""
        try:
            from .annotate_dialog import AnnotateDialog
        except ModuleNotFoundError as exc:
            if exc.name in ("app.annotate_dialog", "engine.annotate"):
                self.show_error("Annotate video… is not available in this version (its module is not installed yet).")
                return
            self.show_error(f"Annotate video… cannot start: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - a broken add-on must not take the window down
            self.show_error(f"Annotate video… cannot start: {exc}")
            return
        info = self.source_info
        video = info.path if info is not None and info.kind == "video" else None
        model = self._serving.name if self._serving is not None else None
        try:
            dialog = AnnotateDialog(self, self.models_dir, video_path=video, model_name=model)
        except Exception as exc:  # noqa: BLE001
            self.show_error(f"Annotate video… cannot start: {exc}")
            return
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        self.annotate_dialog = dialog

    # -- shutdown ------------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closed:
            self._closed = True
            if not self.isFullScreen():
                self.settings.geometry = self.saveGeometry()
            self.settings.splitter_state = self.splitter.saveState()
            self.settings.sync()
            self.record_timer.stop()
            self.threads_stopped = self.worker.stop(timeout=1.5)
        super().closeEvent(event)
