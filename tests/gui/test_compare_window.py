"""The compare window on the shipped models and a real clip: same frame per pane, agreement, chart, swipe, banners."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import INDOOR

DASHCAM = "dashcam-highway-960x540.mp4"

pytestmark = [pytest.mark.gui, pytest.mark.shared]


@pytest.fixture
def make_compare(qtbot):
    from app.compare.compare_window import CompareWindow

    windows = []

    def make(panes: str, source, **kw):
        window = CompareWindow(panes, source=str(source), realtime=False, **kw)
        window.resize(1200, 760)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        sets = []
        window.set_shown.connect(sets.append)
        return window, sets

    yield make
    for window in windows:
        window.close()


def test_every_pane_shows_the_same_frame_and_itself_agrees_100(qtbot, make_compare, videos):
    window, sets = make_compare("tiny:half,camvid-tiny:half,tiny:full", videos / INDOOR)
    qtbot.waitUntil(lambda: len(sets) >= 4, timeout=60000)
    for compare_set in sets:
        indices = {p.frame_index for p in compare_set.panes}
        assert len(indices) == 1 and indices != {-1}
    assert len({v.frame_index for v in window.pane_views}) == 1
    last = sets[-1]
    ref, twin, full = last.panes
    assert ref.is_reference and not twin.is_reference
    assert twin.agreement_pct == 100.0 and twin.miou_pct == 100.0
    # indoors a street model's half and full labels differ a lot (49.9 % for the ADE20K-started Tiny)
    assert 25.0 < full.agreement_pct < 100.0
    assert all(p.ms > 0 and p.fps > 0 for p in last.panes)
    # one chart point per (model, scale): the twin pane shares the first point
    assert sorted(p.label for p in window.chart.points) == ["camvid-tiny full", "camvid-tiny half"]
    # 768x432 at half is a 384 px input, at full 768: neither is the 480 px input of the manifest's figure
    assert [ref.input_hw, full.input_hw] == [(224, 384), (448, 768)] and ref.accuracy_long_side == 480
    assert not any(p.same_scale for p in window.chart.points)
    # with three panes the swipe view fills the free grid cell, showing the same frame
    assert window.swipe.isVisible() and window.swipe.frame_indices[0] == window.swipe.frame_indices[1] >= 0
    from engine.models.registry import Registry

    unseen = 100 * Registry().get("camvid-tiny").unseen_drive_miou[0]  # the chart's accuracy axis
    assert all(p.miou_pct == pytest.approx(unseen) and 40 < p.miou_pct < 80 for p in window.chart.points)
    qtbot.waitUntil(lambda: all(v.paint_count > 0 for v in window.pane_views), timeout=10000)


def test_chart_gets_a_point_per_pane_and_swipe_shows_one_frame(qtbot, make_compare, videos):
    window, sets = make_compare("tiny:half,small:half,base:half", videos / DASHCAM)
    qtbot.waitUntil(lambda: len(window.chart.points) == 3, timeout=60000)
    points = {p.label: p for p in window.chart.points}
    assert set(points) == {"camvid-tiny half", "camvid-small half", "camvid-base half"}
    # 960x540 at half: a 480 px input, as CamVid's frames at scale 1 (where the manifest measured)
    assert all(p.same_scale for p in points.values())
    from engine.models.registry import Registry

    # Every model shown has an unseen-drive figure (the mean of three held-out drives): the chart
    # plots that, not val's, which shares a drive with training and flatters the models.
    assert window.chart.y_title == "mIoU % on unseen drives 0006R0, 0001TP, 0016E5: mean (est.)"
    for name in ("camvid-tiny", "camvid-small", "camvid-base"):  # each point plots the manifest's own figure
        assert points[f"{name} half"].miou_pct == pytest.approx(Registry().get(name).unseen_drive_miou[0] * 100)
    assert all(40 < p.miou_pct < 80 for p in points.values())
    window.swipe_right.setCurrentIndex(2)
    window.swipe_check.setChecked(True)
    assert window.stack.currentWidget() is window.swipe_page and window.swipe.isVisible()
    count = len(sets)
    qtbot.waitUntil(lambda: len(sets) > count + 1, timeout=60000)
    a, b = window.swipe.frame_indices
    assert a == b >= 0
    window.swipe.set_position(0.25)
    image = window.swipe.grab().toImage()
    assert not image.isNull()


def test_a_failing_pane_shows_a_banner_and_the_others_go_on(qtbot, make_compare, videos):
    window, sets = make_compare("tiny:half,nope:full", videos / INDOOR)
    qtbot.waitUntil(lambda: len(sets) >= 2, timeout=60000)
    good, bad = window.pane_views
    assert "nope" in bad.error and not good.error
    assert good.has_image and not bad.has_image
    assert sets[-1].panes[1].error and sets[-1].panes[0].image is not None


def test_a_bad_pane_list_is_refused_in_the_window(qtbot, make_compare, videos):
    window, _ = make_compare("tiny:half,tiny:full", videos / INDOOR)
    window._apply_panes("tiny:half")  # one pane: not a comparison
    assert window.banner.isVisibleTo(window) and "2 to 4" in window.banner.text()
    assert len(window.pane_views) == 2


def test_benchmark_with_compare_prints_panes_and_no_mismatches(videos, tmp_path):
    import os

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "main.py", "--source", str(videos / INDOOR), "--compare",
                           "tiny:half,tiny:full", "--benchmark-frames", "4", "--fast"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["frame_index_mismatches"] == 0
    assert [(p["model"], p["scale"]) for p in report["panes"]] == [("camvid-tiny", "half"), ("camvid-tiny", "full")]
    for pane in report["panes"]:
        assert pane["frames_shown"] == 4 and pane["inference_ms_median"] > 0 and pane["fps"] > 0
    assert report["panes"][0]["agreement_pct"] == 100.0 and 25 < report["panes"][1]["agreement_pct"] < 100


def test_benchmark_with_a_bad_pane_exits_2(tmp_path, videos):
    import os

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "main.py", "--source", str(videos / INDOOR), "--compare",
                           "tiny:half,tiny:sideways", "--benchmark-frames", "2"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "sideways" in proc.stderr


def test_opened_from_the_menu_with_default_panes(qtbot, videos):
    from app.compare.compare_window import open_compare

    window = open_compare(None, str(videos / INDOOR))
    qtbot.addWidget(window)
    try:
        assert [v.title for v in window.pane_views] == ["camvid-tiny half", "camvid-tiny full", "camvid-base full"]
        qtbot.waitUntil(lambda: window.last_set is not None, timeout=60000)
    finally:
        window.close()


def test_live_source_panes_skip_together_to_the_newest_frame(qtbot, make_compare, videos):
    """A camera does not wait: frames that arrive during a set are skipped by every pane alike."""
    import time

    from engine.io.sources import VideoFileSource

    class FakeCamera(VideoFileSource):
        kind, is_live = "camera", True

        def read(self):
            time.sleep(1 / 60)  # a 60 fps camera
            frame = super().read()
            if frame is None:
                self.seek(0)
                frame = super().read()
            return frame

    window, sets = make_compare("tiny:full,base:full", videos / INDOOR, opener=FakeCamera)
    qtbot.waitUntil(lambda: len(sets) >= 4 and sets[-1].panes[0].skipped > 0, timeout=60000)
    for compare_set in sets:
        assert len({p.frame_index for p in compare_set.panes}) == 1
    last = sets[-1].panes
    assert last[0].skipped == last[1].skipped > 0


def test_view_menu_opens_the_compare_view_on_the_same_video(qtbot, make_window, videos):
    from app.compare.compare_window import CompareWindow
    from engine.models.registry import default_models_dir

    window = make_window(default_models_dir(), source=str(videos / INDOOR), model="camvid-tiny")
    qtbot.waitUntil(lambda: window.source_info is not None, timeout=30000)
    action = next(a for a in window.actions() if a.text() == "Compare models…")
    action.trigger()
    compare = window.findChildren(CompareWindow)
    assert len(compare) == 1 and compare[0].isVisible() and compare[0].isWindow()
    try:
        assert not window.playing  # the main view pauses so the panes get the CPU
        assert [v.title for v in compare[0].pane_views] == ["camvid-tiny half", "camvid-tiny full", "camvid-base full"]
        assert compare[0].source_spec == str(videos / INDOOR)
        qtbot.waitUntil(lambda: compare[0].last_set is not None, timeout=60000)
    finally:
        compare[0].close()


def test_a_camera_is_handed_to_the_compare_view_and_taken_back(qtbot, make_window, videos):
    """A camera serves one reader: the main view lets go of it while the compare view runs."""
    from app.compare.compare_window import CompareWindow
    from engine.models.registry import default_models_dir
    from engine.io.sources import VideoFileSource

    class FakeCamera(VideoFileSource):
        kind, is_live = "camera", True

    window = make_window(default_models_dir(), source=str(videos / INDOOR), model="camvid-tiny", opener=FakeCamera)
    qtbot.waitUntil(lambda: window.source_info is not None and window.source_info.is_live, timeout=30000)
    next(a for a in window.actions() if a.text() == "Compare models…").trigger()
    compare = window.findChildren(CompareWindow)[0]
    qtbot.waitUntil(lambda: window.worker.current_source() is None, timeout=10000)  # released
    qtbot.waitUntil(lambda: compare.last_set is not None, timeout=60000)
    compare.close()
    qtbot.waitUntil(lambda: window.worker.current_source() is not None, timeout=10000)  # taken back
    assert window.playing


def test_two_panes_fill_the_area_stacked_or_side_by_side(qtbot, make_compare, videos):
    from app.compare.compare_window import pane_columns

    assert pane_columns(1000, 820, 16 / 9) == 1  # a landscape picture shows larger stacked here
    assert pane_columns(2000, 500, 16 / 9) == 2  # and side by side in a wide, low area
    assert pane_columns(900, 900, 0.75) == 2  # portrait footage: side by side
    window, sets = make_compare("tiny:half,tiny:full", videos / INDOOR)
    qtbot.waitUntil(lambda: len(sets) >= 1, timeout=60000)
    page, (top, bottom) = window.grid_page, window.pane_views
    # stacked, each pane takes the whole width: no empty column beside them
    assert top.width() > 0.95 * page.width() and bottom.y() > top.y() and bottom.x() == top.x()
    window.resize(2400, 600)
    qtbot.waitUntil(lambda: top.width() < 0.55 * page.width(), timeout=5000)
    assert top.y() == bottom.y() and bottom.x() > top.x() and top.height() > 0.9 * page.height()
    window._apply_panes("tiny:half,tiny:full,small:half,base:half")  # four: two columns, all used
    a, b, c, d = window.pane_views
    qtbot.waitUntil(lambda: b.x() > a.x() and c.y() > a.y(), timeout=5000)
    assert a.width() + b.width() > 0.95 * page.width()


def test_a_point_is_filled_where_the_pane_feeds_the_measured_input_size():
    from app.compare.tradeoff_chart import measured_at_this_input

    assert measured_at_this_input(480, 480, "half", "full")  # a 960x540 clip at half
    assert not measured_at_this_input(960, 480, "full", "full")  # the same clip at full: twice the input
    assert not measured_at_this_input(384, 480, "half", "full") and measured_at_this_input(512, 480, "full", "full")
    assert measured_at_this_input(None, None, "full", "full") and not measured_at_this_input(None, None, "half", "full")
    assert not measured_at_this_input(640, None, "full", "")  # no accuracy recorded: never filled
