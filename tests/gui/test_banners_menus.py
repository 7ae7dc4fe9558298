"""Banners (one per cause, several at once, cleared with their cause), menus, Help, small windows."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from app.panels.error_banner import BannerStack
from engine.paths import MODELS_DIR

from .conftest import drop_file, wait_result

pytestmark = [pytest.mark.gui]


def test_banner_stack_keeps_several_and_clears_by_cause(qtbot):
    stack = BannerStack()
    qtbot.addWidget(stack)
    stack.show()
    stack.show_message("cannot open a.mp4", "source")
    stack.show_message("model x failed", "model")
    stack.show_message("cannot open a.mp4", "source")  # the same message is not repeated
    assert stack.messages() == ["cannot open a.mp4", "model x failed"] and stack.isVisible()
    stack.clear("source")
    assert stack.messages() == ["model x failed"]
    qtbot.mouseClick(stack.banners()[0].close_button, Qt.MouseButton.LeftButton)  # dismissed by the user
    assert stack.messages() == [] and not stack.isVisible()
    assert stack.last_error == "cannot open a.mp4"  # the newest error, even when shown once


def test_two_bad_sources_show_two_banners_and_a_good_one_clears_them(qtbot, make_window, videos, tmp_path):
    window = make_window(tmp_path / "no-models")
    window.open_source(str(tmp_path / "first.mp4"))
    window.open_source(str(tmp_path / "second.mp4"))
    qtbot.waitUntil(lambda: len(window.banner.messages("source")) == 2, timeout=10000)
    assert "first.mp4" in window.banner.messages()[0] and "second.mp4" in window.banner.messages()[1]
    qtbot.wait(300)
    assert len(window.banner.messages("source")) == 2  # errors stay until their cause is gone
    window.open_source(str(videos / "indoor-people-768x432.mp4"))
    qtbot.waitUntil(lambda: window.source_info is not None, timeout=10000)
    assert window.banner.messages("source") == [] and not window.banner.isVisible()


test_two_bad_sources_show_two_banners_and_a_good_one_clears_them = pytest.mark.shared(
    test_two_bad_sources_show_two_banners_and_a_good_one_clears_them)


def test_model_not_installed_keeps_the_previous_model(qtbot, make_window):
    window = make_window(MODELS_DIR, model="camvid-tiny")  # the shipped models
    qtbot.waitUntil(lambda: window.serving is not None, timeout=20000)
    window.select_model("not-a-model")
    assert "not-a-model" in window.last_error and "still serving camvid-tiny" in window.last_error
    assert window.banner.messages("model")
    assert window.model_panel.current_name() == "camvid-tiny" and window.menus.checked_model() == "camvid-tiny"
    window.select_model("camvid-small")  # a model that loads clears the model banner
    qtbot.waitUntil(lambda: window.serving is not None and window.serving.name == "camvid-small", timeout=20000)
    assert window.banner.messages("model") == []
    assert window.menus.checked_model() == "camvid-small"


def test_menus_have_check_marks_help_and_camera_state(qtbot, make_window):
    window = make_window(MODELS_DIR, model="camvid-tiny", scale="half")
    qtbot.waitUntil(lambda: window.serving is not None, timeout=20000)
    menus = window.menus
    assert menus.checked_model() == "camvid-tiny"
    assert menus.scale_actions["half"].isChecked() and not menus.scale_actions["full"].isChecked()
    window.toggle_scale()
    assert menus.scale_actions["full"].isChecked() and window.model_panel.scale_buttons["full"].isChecked()
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles == ["&File", "&Playback", "&Models", "&Capture", "&View", "&Tools", "&Help"]

    window.camera_probe.cameras_found.emit([])
    qtbot.waitUntil(lambda: not menus.open_camera.isEnabled(), timeout=2000)
    assert "No camera found" in menus.open_camera.toolTip()
    assert not window.source_panel.camera_button.isEnabled() and "Refresh" in window.source_panel.camera_button.toolTip()
    window.camera_probe.cameras_found.emit([0])
    qtbot.waitUntil(lambda: menus.open_camera.isEnabled(), timeout=2000)

    shortcuts = dict((text, keys) for keys, text in menus.shortcuts())
    assert shortcuts["Play / pause"] == "Space" and shortcuts["Full screen"] == "F" and shortcuts["Legend on the video"] == "L"
    dialog = window.show_shortcuts()
    assert dialog.isVisible() and dialog.table.rowCount() == len(menus.shortcuts())
    dialog.close()
    about = window.show_about()
    text = about.label.text()
    assert "Model: camvid-tiny" in text and "Backend: CPU" in text and "ONNX Runtime" in text and "PySide6" in text
    about.close()


@pytest.mark.shared
def test_fullscreen_shows_the_legend_on_the_video_and_l_toggles_it(qtbot, make_window, videos):
    window = make_window(MODELS_DIR, source=str(videos / "dashcam-highway-960x540.mp4"), model="camvid-tiny", scale="half")
    wait_result(qtbot, window, lambda r: r.labels is not None)
    assert not window.view.show_legend
    margins = window.video_layout.contentsMargins()
    assert (margins.left(), margins.top()) == (6, 6)
    window.fullscreen_action.setChecked(True)
    assert window.view.show_legend and not window.side_scroll.isVisible()
    margins = window.video_layout.contentsMargins()  # the video edge to edge
    assert (margins.left(), margins.top(), margins.right(), margins.bottom()) == (0, 0, 0, 0)
    qtbot.waitUntil(lambda: window.view.mapTo(window, QPoint(0, 0)) == QPoint(0, 0), timeout=5000)  # no borders
    qtbot.waitUntil(lambda: bool(window.view.legend_names()), timeout=10000)
    assert "road" in window.view.legend_names()
    qtbot.keyClick(window, Qt.Key.Key_L)
    assert not window.view.show_legend
    window.fullscreen_action.setChecked(False)
    assert window.side_scroll.isVisible() and not window.view.show_legend
    assert window.video_layout.contentsMargins().left() == 6
    qtbot.waitUntil(lambda: window.view.mapTo(window, QPoint(0, 0)).x() >= 6, timeout=5000)


@pytest.mark.shared
def test_distinct_palette_road_car_pavement_and_stats_lines(qtbot, make_window, videos):
    window = make_window(MODELS_DIR, source=str(videos / "dashcam-highway-960x540.mp4"), model="camvid-tiny", scale="half")
    result = wait_result(qtbot, window, lambda r: r.labels is not None and r.stats.frames_processed >= 3)
    names = result.class_names
    colours = {n: tuple(int(c) for c in result.palette_rgb[names.index(n)]) for n in ("road", "car", "pavement")}
    for a in colours:
        for b in colours:
            if a < b:
                assert sum(abs(x - y) for x, y in zip(colours[a], colours[b])) > 200, (a, b, colours)
    window.set_palette("dataset")
    result = wait_result(qtbot, window, lambda r: tuple(r.palette_rgb[names.index("car")]) == (64, 0, 128))
    assert window.settings.palette == "dataset" and window.display_panel.dataset_colours_check.isChecked()
    # the latency median restarts when a model starts serving: wait for new frames to refill it
    qtbot.waitUntil(lambda: window.latency.median() is not None, timeout=10000)
    latency = window.latency.median()
    lines = result.stats.lines(latency)
    assert any("dropped" in line and "/s" in line for line in lines)
    assert 0 < latency < 5000
    assert any(line.startswith("capture to screen") and "ms" in line for line in lines)


def test_window_works_at_800x600(qtbot, make_window):
    window = make_window(MODELS_DIR, model="camvid-tiny")
    window.resize(800, 600)
    qtbot.wait(200)
    assert window.width() <= 820 and window.height() <= 620
    assert window.view.isVisible() or window.empty_state.isVisible()
    video_w = window.splitter.sizes()[0]
    assert video_w >= 320, window.splitter.sizes()
    assert window.side_scroll.isVisible() and window.side_scroll.width() <= 800 - 320


def test_notice_links_to_download_and_goes_with_its_source(qtbot, make_window, videos):
    window = make_window(MODELS_DIR, source=str(videos / "dashcam-highway-960x540.mp4"), model="camvid-tiny", scale="half")
    qtbot.waitUntil(lambda: window.source_info is not None, timeout=10000)
    window.show_notice("This model knows street scenes (road, car, pedestrian...).")
    banner = window.banner.banners()[-1]
    assert not banner.error and banner.link.isVisible() and window.notices == [banner.text()]
    banner.link.linkActivated.emit("Open Models…")
    assert window.models_dialog is not None and window.models_dialog.tabs.currentIndex() == 1
    window.models_dialog.close()
    window.open_source(str(videos / "indoor-people-768x432.mp4"))  # a new source: the hint about the old one goes
    qtbot.waitUntil(lambda: window.banner.messages("scene") == [], timeout=10000)
    assert window.notices == ["This model knows street scenes (road, car, pedestrian...)."]  # still recorded


test_notice_links_to_download_and_goes_with_its_source = pytest.mark.shared(
    test_notice_links_to_download_and_goes_with_its_source)


@pytest.mark.shared
def test_dropping_a_file_opens_it_and_a_bad_one_says_why(qtbot, make_window, videos, tmp_path):
    window = make_window(tmp_path / "no-models")
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n" * 50)
    assert drop_file(window, notes)
    qtbot.waitUntil(lambda: len(window.banner.messages("source")) == 1, timeout=10000)
    assert "notes.mp4 is not a readable video" in window.banner.messages("source")[0]
    assert drop_file(window, videos / "indoor-people-768x432.mp4")
    qtbot.waitUntil(lambda: window.source_info is not None and window.source_info.kind == "video", timeout=10000)
    assert window.banner.messages("source") == []
    checkpoint = tmp_path / "topformer.pth"
    checkpoint.write_bytes(b"PK")
    assert drop_file(window, checkpoint)  # to the Models dialog's import tab; nothing starts by itself
    dialog = window.dialogs.models_dialog
    assert dialog.isVisible() and dialog.tabs.currentIndex() == 2 and dialog.import_path.text() == str(checkpoint)
    assert window.source_info.kind == "video" and window.banner.messages("source") == []
