"""The main window: wires the worker, the video view and the side panels together.

It holds no model logic and does no per-frame work beyond painting the picture the worker
already rendered; panel text (legend, position) is refreshed a few times a second. Model
switching lives in model_control.py, captures in capture_control.py, menus in menus.py.
"""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QMainWindow

from engine.models.registry import ModelEntry, default_models_dir
from engine.io.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

from .playback.camera_probe import CameraProbe
from .panels.error_banner import SOURCE_CAUSES, cause_of
from .window.capture_control import CaptureControl
from .playback.frame_reader import SourceInfo
from .window.dialogs import Dialogs
from .window.display_control import DisplayControl
from .window.menus import Menus
from .window.model_control import ModelControl
from .playback.scene_fit import SceneFitMonitor
from .settings_store import SettingsStore
from .panels.source_panel import camera_tooltip
from .measure.stats import LatencyMeter
from .window.window_layout import VIDEO_MARGINS, WindowLayout
from .playback.worker import FrameResult, InferenceWorker

PANEL_REFRESH_S = 0.25
USE_LINK = "Use "  # the scene hint's link to an installed model: "Use ade20k-tiny"


class MainWindow(QMainWindow):
    frame_shown = Signal(object)  # FrameResult, after it was handed to the view
    notice_shown = Signal(str)  # a scene-fit hint was put up

    def __init__(self, settings: SettingsStore, models_dir: Path | str | None = None, source: str | None = None,
                 model: str | None = None, scale: str | None = None, probe_cameras: bool = True, opener=None):
        super().__init__()
        self.settings = settings
        self.models_dir = Path(models_dir) if models_dir else default_models_dir()
        self.worker = InferenceWorker(self.models_dir, self, opener=opener)
        self.source_info: SourceInfo | None = None
        self.last_result: FrameResult | None = None
        self.playing = True
        self.scale = "full"
        self.threads_stopped: bool | None = None
        self.notices: list[str] = []  # scene-fit hints shown in this session (the benchmark JSON lists them)
        self.scene_fit = SceneFitMonitor()
        self.latency = LatencyMeter()
        self._panel_refreshed = 0.0
        self._hover = (-1, -1)
        self._legend_before_fullscreen = False
        self._closed = False
        ui = WindowLayout()
        self.view, self.empty_state, self.stack, self.banner = ui.view, ui.empty_state, ui.stack, ui.banner
        self.source_panel, self.model_panel, self.display_panel = ui.source_panel, ui.model_panel, ui.display_panel
        self.legend, self.capture_panel, self.side_scroll = ui.legend, ui.capture_panel, ui.side_scroll
        self.splitter, self.side_width, self.hover_label = ui.splitter, ui.side_width, ui.hover_label
        self.video_layout = ui.video_layout
        self.setWindowTitle("TopFormer Studio")
        self.setAcceptDrops(True)
        self.setCentralWidget(self.splitter)
        self.statusBar().addPermanentWidget(self.hover_label)
        self.menus = Menus(self)
        self.fullscreen_action = self.menus.fullscreen
        self.models = ModelControl(self.worker, self.models_dir, settings, self.model_panel, self.menus, self.banner, self)
        self.capture = CaptureControl(self.worker, self.capture_panel, settings, self.banner, self)
        self.display = DisplayControl(self.worker, self.view, self.display_panel, settings, self)
        self.dialogs = Dialogs(self, self.models_dir, settings, self.reload_models, self.select_model)
        self._connect()
        self._restore(scale)
        self.camera_probe = CameraProbe(self)
        self.camera_probe.cameras_found.connect(self._on_cameras_found)
        # Threads start once the event loop runs, so whoever created the window has connected
        # to its signals before the first source or model error can be emitted.
        start = source if source is not None else settings.last_source
        QTimer.singleShot(0, lambda: self._start(start, model, probe_cameras))

    # -- construction -------------------------------------------------------------------------------
    def _connect(self) -> None:
        w = self.worker
        w.frame_ready.connect(self._on_frame_ready)
        w.source_opened.connect(self._on_source_opened)
        w.source_failed.connect(self._on_source_failed)
        w.source_ended.connect(self._on_source_ended)
        w.error_occurred.connect(lambda message: self.show_error(message, cause_of(message)))
        self.models.serving_changed.connect(self._on_serving_changed)
        self.models.status_message.connect(self.statusBar().showMessage)
        self.capture.status_message.connect(self.statusBar().showMessage)
        self.banner.link_activated.connect(self._on_banner_link)
        self.view.resized.connect(w.set_view_size)
        self.view.hovered.connect(self.hover_at)
        self.empty_state.open_video_requested.connect(self.open_file_dialog)
        self.empty_state.open_camera_requested.connect(self.open_selected_camera)
        sp = self.source_panel
        sp.open_file_requested.connect(self.open_file_dialog)
        sp.camera_requested.connect(self.open_source)
        sp.refresh_cameras_requested.connect(lambda: self.camera_probe.probe())
        sp.play_toggled.connect(self.set_playing)
        sp.step_requested.connect(self.step)
        sp.seek_requested.connect(w.seek)
        sp.loop_changed.connect(self._on_loop_changed)
        sp.realtime_changed.connect(self._on_realtime_changed)
        mp = self.model_panel
        mp.model_selected.connect(self.select_model)
        mp.variant_selected.connect(self.select_variant)
        mp.scale_selected.connect(self.set_scale)
        mp.reload_requested.connect(self.reload_models)
        mp.manage_requested.connect(self.open_models_dialog)

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
        self.source_panel.set_loop(s.loop)
        self.source_panel.set_realtime(s.realtime)
        self.worker.set_loop(s.loop)
        self.worker.set_realtime(s.realtime)
        self.set_scale(scale or s.scale)
        self.source_panel.set_playing(True)

    def _start(self, source: str | None, model: str | None, probe_cameras: bool) -> None:
        if self._closed:
            return
        self.worker.start()
        self.models.reload(requested=model)
        if probe_cameras:
            self.camera_probe.probe()
        if source is not None:
            self.open_source(source)

    # -- sources --------------------------------------------------------------------------------------
    def open_source(self, spec: str | int) -> None:
        """Open a camera index or a file path; errors arrive as source_failed (the old source keeps playing)."""
        self.worker.open_source(str(spec))

    def close_source(self) -> None:
        """Stop reading the current source (e.g. a camera handed to the compare view)."""
        self.worker.close_source()

    def take_back_source(self, spec: str) -> None:
        """Reopen and play a source handed to another window, unless this window is closing."""
        if self.isVisible():
            self.open_source(spec)
            self.set_playing(True)

    def open_file_dialog(self) -> None:
        patterns = " ".join(f"*{ext}" for ext in sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS))
        path, _ = QFileDialog.getOpenFileName(self, "Open video or image", self.settings.last_open_dir,
                                              f"Videos and images ({patterns});;All files (*)")
        if path:
            self.settings.last_open_dir = str(Path(path).parent)
            self.open_source(path)

    def open_selected_camera(self) -> None:
        self.open_source(self.source_panel.selected_camera())

    def _on_cameras_found(self, indices: list) -> None:
        # the camera we are streaming from may be busy for the probe: keep it in the list
        if self.source_info is not None and self.source_info.kind == "camera":
            indices = sorted(set(indices) | {int(self.source_info.spec)})
        self.source_panel.set_cameras(list(indices))
        self.menus.set_cameras_available(bool(indices))
        self.empty_state.set_camera_available(bool(indices), camera_tooltip(bool(indices)))

    def set_playing(self, playing: bool) -> None:
        self.playing = bool(playing)
        self.source_panel.set_playing(self.playing)
        self.worker.set_paused(not self.playing)

    def toggle_playing(self) -> None:
        self.set_playing(not self.playing)

    def step(self) -> None:
        self.set_playing(False)
        self.worker.step()

    def _on_source_opened(self, info: SourceInfo) -> None:
        self.source_info = info
        self.banner.clear(*SOURCE_CAUSES)  # a new source: the old source's errors and hints are gone
        self.scene_fit.reset(self.models.serving, self.models.entries)
        self.latency.reset()
        self.source_panel.set_source(info)
        self.setWindowTitle(f"TopFormer Studio — {info.description}")
        self.settings.last_source = info.spec
        self.stack.setCurrentWidget(self.view)
        self.statusBar().showMessage(f"Opened {info.description}", 4000)
        self.view.clear()
        self.set_playing(True)

    def _on_source_failed(self, message: str) -> None:
        self.show_error(message, "source")
        if self.worker.current_source() is None:
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
            checkpoint = files[0].lower().endswith(".pth")  # to the Models dialog's import tab, path filled in
            self.dialogs.models("import", checkpoint=files[0]) if checkpoint else self.open_source(files[0])

    # -- models (model_control.py does the work) --------------------------------------------------------
    def reload_models(self, requested: str | None = None) -> None:
        self.models.reload(requested)

    def select_model(self, name: str) -> None:
        self.models.select(name)

    def select_variant(self, variant: str) -> None:
        self.models.select_variant(variant)

    @property
    def serving(self) -> ModelEntry | None:
        return self.models.serving

    def _on_serving_changed(self, entry: ModelEntry | None) -> None:
        self.scene_fit.reset(entry, self.models.entries)
        self.latency.reset()  # frames shown before the model was ready took no inference

    def set_scale(self, scale: str) -> None:
        self.scale = scale
        self.settings.scale = scale
        self.model_panel.set_scale(scale)
        self.menus.set_scale(scale)
        self.worker.set_scale(scale)

    def toggle_scale(self) -> None:
        self.set_scale("half" if self.scale == "full" else "full")

    def open_models_dialog(self, tab: str = "installed") -> None:
        self.dialogs.models(tab)

    # -- display ---------------------------------------------------------------------------------------
    def set_palette(self, mode: str) -> None:
        self.display.set_palette(mode)

    def set_fullscreen(self, on: bool) -> None:
        """Full screen shows only the video, with the legend drawn on it (L hides it)."""
        self.side_scroll.setVisible(not on)
        self.menuBar().setVisible(not on)
        self.statusBar().setVisible(not on)
        self.video_layout.setContentsMargins(*((0, 0, 0, 0) if on else VIDEO_MARGINS))  # edge to edge,
        for frame in (self.stack, self.splitter):  # without the theme's 1 px borders either
            frame.setStyleSheet(f"#{frame.objectName()} {{ border: 0px; }}" if on else "")
        if on:
            self._legend_before_fullscreen = self.menus.legend_overlay.isChecked()
        self.menus.legend_overlay.setChecked(True if on else self._legend_before_fullscreen)
        self.showFullScreen() if on else self.showNormal()

    def set_fullscreen_on_start(self) -> None:
        self.fullscreen_action.setChecked(True)

    def set_legend_overlay(self, on: bool) -> None:
        self.view.show_legend = bool(on)
        self.view.update()

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
        now = time.monotonic()
        if result.is_new and result.read_at:
            self.latency.add((now - result.read_at) * 1000.0)
        self.view.set_stats_lines(result.stats.lines(self.latency.median()))
        if result.is_new and result.labels is not None:
            self._check_scene_fit(now, result.confidence, {name: pct / 100 for _, name, pct in result.legend})
        if now - self._panel_refreshed >= PANEL_REFRESH_S or not self.playing:
            self._panel_refreshed = now
            self.legend.set_classes(result.legend, result.palette_rgb)
            self.view.set_legend(result.legend, result.palette_rgb)
            self.source_panel.set_position(result.frame_index)
            self._update_hover_text()
        self.frame_shown.emit(result)

    def _check_scene_fit(self, now: float, confidence: float | None, shares: dict[str, float]) -> None:
        text = self.scene_fit.feed(now, confidence, shares)
        if text:
            self.show_notice(text)

    def show_notice(self, text: str) -> None:
        """A non-blocking hint (blue banner with a link: use the installed ADE20K model, or the Models
        dialog to download one), recorded in ``notices``."""
        self.notices.append(text)
        switch_to = self.scene_fit.switch_to
        self.banner.show_message(text, "scene", error=False, link=f"{USE_LINK}{switch_to}" if switch_to else "Open Models…")
        self.notice_shown.emit(text)

    def _on_banner_link(self, link: str) -> None:
        if link.startswith(USE_LINK):  # the scene hint has done its job
            self.banner.clear("scene")
            self.select_model(link.removeprefix(USE_LINK))
        else:
            self.open_models_dialog("download")

    def hover_at(self, x: int, y: int) -> None:
        """The frame pixel under the pointer ((-1, -1): outside the picture)."""
        self._hover = (x, y)
        self._update_hover_text()

    def _update_hover_text(self) -> None:
        self.hover_label.setText(self.hover_text())

    def hover_text(self) -> str:
        """The class under the cursor (empty when outside the picture or without a model)."""
        return self.last_result.class_at(*self._hover) if self.last_result is not None else ""

    def show_error(self, message: str, cause: str = "general") -> None:
        self.banner.show_message(message, cause)
        self.statusBar().showMessage(message, 10000)

    @property
    def last_error(self) -> str:
        return self.banner.last_error

    # -- capture (capture_control.py does the work) ----------------------------------------------------
    def choose_output_dir(self) -> None:
        self.capture.choose_output_dir()

    def set_output_dir(self, folder: Path | str) -> None:
        self.capture.set_output_dir(folder)

    def snapshot(self) -> None:
        self.capture.snapshot()

    def set_recording(self, on: bool) -> None:
        self.capture.set_recording(on)

    def toggle_recording(self) -> None:
        self.capture.toggle_recording()

    # -- tools and help ---------------------------------------------------------------------------------
    def open_annotate_dialog(self) -> None:
        info = self.source_info
        self.dialogs.annotate(info.path if info is not None and info.kind == "video" else None,
                              self.serving.name if self.serving is not None else None)

    @property
    def annotate_dialog(self):
        return self.dialogs.annotate_dialog

    @property
    def models_dialog(self):
        return self.dialogs.models_dialog

    def show_shortcuts(self):
        return self.dialogs.shortcuts(self.menus.shortcuts())

    def show_about(self):
        return self.dialogs.about(self.serving.name if self.serving else None, self.worker.serving_providers())

    # -- shutdown ------------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closed:
            self._closed = True
            if not self.isFullScreen():
                self.settings.geometry = self.saveGeometry()
            self.settings.splitter_state = self.splitter.saveState()
            self.settings.sync()
            self.capture.stop()
            self.dialogs.close_all()
            self.threads_stopped = self.worker.stop(timeout=1.5)
        super().closeEvent(event)
