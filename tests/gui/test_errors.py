"""Bad input never ends the session: corrupt and missing files, vanishing sources, broken models."""
from __future__ import annotations

import pytest

from engine.errors import SourceError
from engine.io.sources import FrameSource, VideoFileSource, open_source

from .conftest import wait_result

pytestmark = [pytest.mark.gui, pytest.mark.shared]


def test_corrupt_and_missing_files_show_error_and_app_keeps_working(qtbot, make_window, shipped_models_dir,
                                                                   indoor_clip, tmp_path):
    window = make_window(shipped_models_dir, model="camvid-tiny", scale="half")
    missing = tmp_path / "nowhere" / "gone.mp4"
    window.open_source(str(missing))
    qtbot.waitUntil(lambda: "does not exist" in window.last_error, timeout=10000)
    assert window.banner.isVisible() and "gone.mp4" in window.banner.text()
    assert window.stack.currentWidget() is window.empty_state  # nothing else was open
    assert "gone.mp4" in window.empty_state.message.text()

    window.open_source(str(indoor_clip))
    playing = wait_result(qtbot, window, lambda r: r.labels is not None)

    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64)
    window.open_source(str(corrupt))
    qtbot.waitUntil(lambda: "broken.mp4" in window.last_error, timeout=10000)
    assert "not a readable video" in window.last_error
    # the clip that was playing keeps playing
    wait_result(qtbot, window, lambda r: r.frame_index > playing.frame_index + 2 and r.source.spec == str(indoor_clip))
    assert window.stack.currentWidget() is window.view


class VanishingCamera(FrameSource):
    """A camera that delivers a few real frames, then is unplugged."""

    kind = "camera"
    is_live = True

    def __init__(self, clip, frames: int):
        self._video = VideoFileSource(clip)
        self.fps, self.width, self.height = self._video.fps, self._video.width, self._video.height
        self._left = frames

    @property
    def description(self) -> str:
        return "camera 7"

    def read(self):
        if self._left <= 0:
            raise SourceError("camera 7 stopped delivering frames (disconnected?)")
        self._left -= 1
        return self._video.read()

    def close(self) -> None:
        self._video.close()


def test_source_pulled_away_mid_stream(qtbot, make_window, shipped_models_dir, indoor_clip):
    def opener(spec: str):
        return VanishingCamera(indoor_clip, frames=8) if spec == "7" else open_source(spec)

    window = make_window(shipped_models_dir, model="camvid-tiny", scale="half", opener=opener)
    window.open_source(7)
    wait_result(qtbot, window, lambda r: r.source.kind == "camera" and r.labels is not None)
    qtbot.waitUntil(lambda: "camera 7 stopped" in window.last_error, timeout=15000)
    assert window.banner.isVisible()
    assert window.view.has_image  # the last picture stays; the session is not lost
    assert window.source_info is None and window.source_panel.source_label.text() == "nothing open"

    window.open_source(str(indoor_clip))
    wait_result(qtbot, window, lambda r: r.source.kind == "video" and r.labels is not None)


def test_broken_model_keeps_the_old_one_serving(qtbot, make_window, shipped_models_copy, indoor_clip):
    (shipped_models_copy / "camvid-small.onnx").write_bytes(b"not an onnx file")
    window = make_window(shipped_models_copy, source=str(indoor_clip), model="camvid-tiny", scale="half")
    wait_result(qtbot, window, lambda r: r.model == "camvid-tiny")
    window.select_model("camvid-small")
    qtbot.waitUntil(lambda: "camvid-small" in window.last_error, timeout=10000)
    assert "checksum" in window.last_error
    assert window.model_panel.model_combo.currentData() == "camvid-tiny"
    assert "still serving camvid-tiny" in window.model_panel.status_label.text()
    before = window.last_result.frame_index
    wait_result(qtbot, window, lambda r: r.model == "camvid-tiny" and r.frame_index > before + 1)

    window.close()
    other = make_window(shipped_models_copy, source=str(indoor_clip), model="no-such-model")
    qtbot.waitUntil(lambda: "no-such-model" in other.last_error, timeout=5000)
    wait_result(qtbot, other, lambda r: r.labels is not None)  # fell back to an installed model


def test_unwritable_output_folder(qtbot, make_window, shipped_models_dir, indoor_clip, tmp_path):
    window = make_window(shipped_models_dir, source=str(indoor_clip), model="camvid-tiny", scale="half")
    wait_result(qtbot, window, lambda r: r.labels is not None)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    window.set_output_dir(blocker / "captures")
    window.snapshot()
    qtbot.waitUntil(lambda: "snapshot failed" in window.last_error, timeout=10000)
    window.set_recording(True)
    qtbot.waitUntil(lambda: "recording failed" in window.last_error, timeout=10000)
    qtbot.waitUntil(lambda: not window.capture_panel.record_button.isChecked(), timeout=5000)
    before = window.last_result.frame_index
    wait_result(qtbot, window, lambda r: r.frame_index > before)
