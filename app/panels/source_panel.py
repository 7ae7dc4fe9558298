"""Source controls: open a file or camera, play/pause/step, seek, loop and playback speed."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QSlider, QWidget)

from ..playback.frame_reader import SourceInfo


def _clock(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def _elide(text: str, limit: int) -> str:
    """Middle ellipsis for long file names (labels cannot wrap a name without spaces)."""
    if len(text) <= limit:
        return text
    keep = (limit - 1) // 2
    return f"{text[:keep]}…{text[-keep:]}"


def camera_tooltip(found: bool) -> str:
    return "Open the chosen camera" if found else "No camera found. Connect one, then press Refresh."


class SourcePanel(QGroupBox):
    open_file_requested = Signal()
    camera_requested = Signal(int)
    refresh_cameras_requested = Signal()
    play_toggled = Signal(bool)  # True = play
    step_requested = Signal()
    seek_requested = Signal(int)
    loop_changed = Signal(bool)
    realtime_changed = Signal(bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Source", parent)
        self.open_button = QPushButton("Open video or image…")
        self.open_button.clicked.connect(self.open_file_requested)
        self.camera_combo = QComboBox()
        self.camera_combo.setPlaceholderText("no camera found")
        self.camera_combo.setToolTip("Cameras that opened and delivered a frame")
        self.camera_button = QPushButton("Open camera")
        self.camera_button.clicked.connect(self._on_camera)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Look for cameras again")
        self.refresh_button.clicked.connect(self.refresh_cameras_requested)
        self.source_label = QLabel("nothing open")
        self.source_label.setWordWrap(True)
        self.play_button = QPushButton("Pause")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play / pause (Space)")
        self.play_button.toggled.connect(self._on_play_toggled)
        self.step_button = QPushButton("Step")
        self.step_button.setToolTip("Next frame (. or →)")
        self.step_button.clicked.connect(self.step_requested)
        self.loop_check = QCheckBox("Loop")
        self.loop_check.toggled.connect(self.loop_changed)
        self.speed_combo = QComboBox()
        self.speed_combo.addItem("File's own fps", True)
        self.speed_combo.addItem("As fast as possible", False)
        self.speed_combo.currentIndexChanged.connect(lambda _i: self.realtime_changed.emit(self.speed_combo.currentData()))
        self.seek_slider = QSlider(Qt.Orientation.Horizontal)
        self.seek_slider.setEnabled(False)
        self.seek_slider.sliderReleased.connect(lambda: self.seek_requested.emit(self.seek_slider.value()))
        self.seek_slider.actionTriggered.connect(self._on_slider_action)
        self.position_label = QLabel("–")
        self.position_label.setMinimumWidth(92)
        self.position_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        grid = QGridLayout(self)
        grid.addWidget(self.open_button, 0, 0, 1, 3)
        grid.addWidget(self.camera_combo, 1, 0)
        grid.addWidget(self.camera_button, 1, 1)
        grid.addWidget(self.refresh_button, 1, 2)
        grid.addWidget(self.source_label, 2, 0, 1, 3)
        transport = QHBoxLayout()
        transport.addWidget(self.play_button)
        transport.addWidget(self.step_button)
        transport.addWidget(self.loop_check)
        grid.addLayout(transport, 3, 0, 1, 3)
        grid.addWidget(self.speed_combo, 4, 0, 1, 3)
        seek = QHBoxLayout()
        seek.addWidget(self.seek_slider, 1)
        seek.addWidget(self.position_label)
        grid.addLayout(seek, 5, 0, 1, 3)
        grid.setColumnStretch(0, 1)
        self._info: SourceInfo | None = None
        self.set_source(None)

    # -- state in ---------------------------------------------------------------------------
    def set_cameras(self, indices: list[int]) -> None:
        current = self.camera_combo.currentData()
        self.camera_combo.clear()
        for index in indices:
            self.camera_combo.addItem(f"Camera {index}", index)
        if current in indices:
            self.camera_combo.setCurrentIndex(indices.index(current))
        self.camera_button.setEnabled(bool(indices))
        self.camera_button.setToolTip(camera_tooltip(bool(indices)))

    def selected_camera(self) -> int:
        """The camera index chosen in the list (0 when the list is empty)."""
        index = self.camera_combo.currentData()
        return int(index) if index is not None else 0

    def set_source(self, info: SourceInfo | None) -> None:
        self._info = info
        seekable = info is not None and info.kind == "video" and info.frame_count > 1
        self.seek_slider.setEnabled(seekable)
        self.step_button.setEnabled(info is not None and info.kind != "image")
        self.play_button.setEnabled(info is not None and info.kind != "image")
        self.seek_slider.setRange(0, max(info.frame_count - 1, 0) if seekable else 0)
        if info is None:
            self.source_label.setText("nothing open")
            self.position_label.setText("–")
            return
        size = f"{info.width}x{info.height}"
        rate = f" · {info.fps:.0f} fps" if info.kind != "image" else ""
        self.source_label.setText(f"{_elide(info.description, 38)}\n{info.kind} · {size}{rate}")
        self.source_label.setToolTip(info.spec)

    def set_position(self, index: int) -> None:
        info = self._info
        if info is None or info.kind != "video":
            self.position_label.setText(f"frame {index}" if info is not None and info.kind == "camera" else "–")
            return
        if not self.seek_slider.isSliderDown():
            self.seek_slider.blockSignals(True)
            self.seek_slider.setValue(index)
            self.seek_slider.blockSignals(False)
        fps = info.fps or 25.0
        self.position_label.setText(f"{_clock(index / fps)} / {_clock(info.frame_count / fps)}")

    def set_playing(self, playing: bool) -> None:
        self.play_button.blockSignals(True)
        self.play_button.setChecked(not playing)
        self.play_button.setText("Play" if not playing else "Pause")
        self.play_button.blockSignals(False)

    def set_loop(self, loop: bool) -> None:
        self.loop_check.setChecked(loop)

    def set_realtime(self, realtime: bool) -> None:
        self.speed_combo.setCurrentIndex(0 if realtime else 1)

    # -- user input ---------------------------------------------------------------------------
    def _on_play_toggled(self, checked: bool) -> None:
        self.play_button.setText("Play" if checked else "Pause")
        self.play_toggled.emit(not checked)

    def _on_camera(self) -> None:
        index = self.camera_combo.currentData()
        self.camera_requested.emit(int(index) if index is not None else 0)

    def _on_slider_action(self, action: int) -> None:
        if action != QSlider.SliderAction.SliderMove.value and not self.seek_slider.isSliderDown():
            # page clicks and keys: the value is updated right after this signal
            self.seek_requested.emit(self.seek_slider.sliderPosition())
