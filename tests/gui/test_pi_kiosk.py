"""--profile pi and --kiosk: profile choice, the real launch path, the kiosk window offscreen."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from app.window.profiles import board_model, choose_profile
from engine.cpu import has_int8_dot

from .test_cli import run_main

pytestmark = [pytest.mark.gui]
REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
HIGHWAY = "highway-1280x720-short.mp4"
PI4_FEATURES = "fp asimd evtstrm crc32 cpuid"
PI5_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"


def test_board_and_cpu_detection(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\0")
    assert board_model(model) == "Raspberry Pi 5 Model B Rev 1.0"
    assert board_model(tmp_path / "absent") == ""
    for features, fast in ((PI4_FEATURES, False), (PI5_FEATURES, True)):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: {features}\n")
        assert has_int8_dot(cpuinfo) is fast


def test_profile_choice():
    installed = ["camvid-tiny", "camvid-tiny-int8", "camvid-small"]
    pi5 = choose_profile(None, board="Raspberry Pi 5 Model B Rev 1.0", int8_fast=True, installed=installed, cores=4)
    assert (pi5.name, pi5.model, pi5.scale, pi5.threads, pi5.reduced_effects) == ("pi", "camvid-tiny-int8", "half", 4, True)
    pi4 = choose_profile(None, board="Raspberry Pi 4 Model B Rev 1.5", int8_fast=False, installed=installed, cores=4)
    assert pi4.model == "camvid-tiny" and "dot-product" in pi4.reason
    assert choose_profile(None, board="Raspberry Pi 5", int8_fast=True, installed=["camvid-tiny"]).model == "camvid-tiny"
    assert choose_profile("desktop", board="Raspberry Pi 5 Model B").name == "desktop"  # overridable
    desktop = choose_profile(None, board="")
    assert (desktop.name, desktop.model, desktop.scale, desktop.threads) == ("desktop", None, None, None)
    assert choose_profile("pi", board="", int8_fast=False).name == "pi"


@pytest.mark.shared
def test_profile_pi_benchmark_reports_the_model_and_scale_used(videos, tmp_path, monkeypatch):
    """The real launch path: --profile pi picks Tiny (INT8 on a CPU with dot-product
    instructions), half scale, threads = cores; the benchmark JSON says what actually ran."""
    monkeypatch.delenv("STUDIO_THREADS", raising=False)  # a user's explicit setting would win
    proc = run_main(["--profile", "pi", "--source", str(videos / HIGHWAY), "--benchmark-frames", "4",
                     "--models-dir", str(MODELS)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["profile"] == "pi" and report["threads"] == os.cpu_count()
    assert report["model"] == ("camvid-tiny-int8" if has_int8_dot() else "camvid-tiny")
    assert report["scale"] == "half" and report["input_size"] == [352, 640] and report["frame_size"] == [720, 1280]
    # an explicit choice still wins over the profile
    proc = run_main(["--profile", "pi", "--model", "camvid-small", "--scale", "full", "--source", str(videos / HIGHWAY),
                     "--benchmark-frames", "2", "--models-dir", str(MODELS)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (report["model"], report["scale"]) == ("camvid-small", "full")


@pytest.mark.shared
def test_kiosk_through_main_py_saves_a_full_screen_shot(videos, tmp_path):
    out = tmp_path / "kiosk.png"
    proc = run_main(["--kiosk", "--profile", "pi", "--source", str(videos / HIGHWAY), "--models-dir", str(MODELS),
                     "--screenshot", str(out), "--screenshot-after", "1.5"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.stat().st_size > 10000


@pytest.fixture
def make_kiosk(qtbot, tmp_path):
    from app.window.kiosk import KioskController
    from app.main_window import MainWindow
    from app.settings_store import SettingsStore

    windows = []

    def make(source, fallback=None, **kw):
        settings = SettingsStore()
        settings.output_dir = tmp_path / "captures"
        window = MainWindow(settings, models_dir=MODELS, source=source, model="camvid-tiny", scale="half",
                            probe_cameras=False)
        kiosk = KioskController(window, source, fallback=fallback, **kw)
        qtbot.addWidget(window)
        window.show()
        window.activateWindow()
        qtbot.waitActive(window, timeout=5000)
        windows.append(window)
        return window, kiosk

    yield make
    for window in windows:
        window.close()


@pytest.mark.shared
def test_kiosk_window_plays_full_screen_with_legend_and_fps(make_kiosk, qtbot, videos):
    window, kiosk = make_kiosk(str(videos / HIGHWAY))
    assert window.windowFlags() & Qt.WindowType.FramelessWindowHint
    qtbot.waitUntil(lambda: window.isFullScreen(), timeout=5000)
    assert not window.menuBar().isVisible() and not window.side_scroll.isVisible()
    qtbot.waitUntil(lambda: "fps" in kiosk.badge.text() and kiosk.legend.rowCount() > 0, timeout=30000)
    assert "camvid-tiny" in kiosk.badge.text() and kiosk.badge.isVisible() and kiosk.legend.isVisible()
    assert set(kiosk.legend.names()) & {"road", "sky", "building", "tree", "car"}
    palette = np.zeros((11, 3), np.uint8)
    heights = []
    for count in (9, 2):  # a frame with fewer classes than one before: the box shrinks to them
        kiosk.legend.set_classes([(i, f"class {i}", 10.0 - i) for i in range(count)], palette)
        kiosk._place_overlays()
        heights.append(kiosk.legend.height())
    assert heights == [kiosk.legend.rowHeight(0) * 9 + 6, max(30, kiosk.legend.rowHeight(0) * 2 + 6)]
    # one FPS readout and one legend: the view paints neither its stats box nor its own legend
    assert not window.view.show_stats and not window.view.show_legend
    qtbot.keyClick(window, Qt.Key.Key_L)  # the desktop's legend toggle stays off here
    assert not window.view.show_legend
    assert window.settings.show_stats  # the desktop app's own setting is left as it was
    assert window.source_panel.loop_check.isChecked()
    qtbot.keyClick(window, Qt.Key.Key_F)  # the window's own full-screen toggle is off in the kiosk
    assert window.isFullScreen()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)


@pytest.mark.shared
def test_kiosk_long_press_quits(make_kiosk, qtbot, videos):
    window, kiosk = make_kiosk(str(videos / HIGHWAY), long_press_s=0.3)
    qtbot.waitUntil(lambda: window.view.has_image, timeout=30000)
    centre = window.view.rect().center()
    qtbot.mousePress(window.view, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseRelease(window.view, Qt.MouseButton.LeftButton, pos=centre, delay=50)  # a tap does not quit
    qtbot.wait(500)
    assert window.isVisible()
    qtbot.mousePress(window.view, Qt.MouseButton.LeftButton, pos=QPoint(centre))
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=3000)


def test_missing_camera_is_known_without_opening_it():
    from engine.errors import SourceError
    from engine.io.sources import camera_available, open_source

    if sys.platform.startswith("linux"):
        assert camera_available(97) is False  # no /dev/video97, no picamera2 camera 97
    with pytest.raises(SourceError, match="camera 97"):
        open_source("97")


def test_kiosk_without_camera_shows_no_camera_and_retries(make_kiosk, qtbot):
    window, kiosk = make_kiosk("97", retry_s=0.2)  # no /dev/video97 here
    qtbot.waitUntil(lambda: kiosk.showing_no_camera and kiosk.no_camera.isVisible(), timeout=10000)
    assert "No camera" in kiosk.no_camera.text() and "every" in kiosk.no_camera.text()
    qtbot.waitUntil(lambda: kiosk.camera_attempts >= 2, timeout=5000)
    assert kiosk.retry_timer.isActive() and not window.banner.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)


def test_kiosk_with_a_video_that_cannot_play_says_why_full_screen(make_kiosk, qtbot, tmp_path):
    window, kiosk = make_kiosk(str(tmp_path / "gone.mp4"))
    qtbot.waitUntil(lambda: kiosk.showing_no_camera and kiosk.no_camera.isVisible(), timeout=10000)
    text = kiosk.no_camera.text()
    assert text.startswith("Cannot play the video") and "gone.mp4 does not exist" in text and "Esc" in text
    assert not window.banner.isVisible() and not window.empty_state.isVisible()  # no open buttons on a stand
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)


@pytest.mark.shared
def test_kiosk_without_camera_loops_the_fallback_and_keeps_retrying(make_kiosk, qtbot, videos):
    window, kiosk = make_kiosk("97", fallback=str(videos / HIGHWAY), retry_s=0.2)
    qtbot.waitUntil(lambda: window.source_info is not None and window.source_info.kind == "video", timeout=15000)
    qtbot.waitUntil(lambda: window.view.has_image and not kiosk.showing_no_camera, timeout=30000)
    start = kiosk.camera_attempts
    qtbot.waitUntil(lambda: kiosk.camera_attempts >= start + 2, timeout=5000)
    assert window.source_info.kind == "video"  # the failed camera attempts left the video playing
