"""GUI test fixtures: settings in tmp_path, no modal dialogs, no leaked worker threads.

Windows are real (offscreen), sessions are real ONNX Runtime sessions, videos are the
real clips in ../shared/videos.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QFileDialog, QMessageBox  # noqa: E402

INDOOR = "indoor-people-768x432.mp4"
INDOOR_HW = (432, 768)


def studio_threads() -> list[str]:
    return [t.name for t in threading.enumerate()
            if t.name.startswith("studio-") and t.name != "studio-camera-probe" and t.is_alive()]


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """QSettings write under tmp_path; the user's real settings are never read or changed."""
    folder = tmp_path / "qsettings"
    folder.mkdir()
    for fmt in (QSettings.Format.IniFormat, QSettings.Format.NativeFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(folder))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(folder))
    yield folder


@pytest.fixture(autouse=True)
def no_modal_dialogs(monkeypatch):
    """Errors must appear in the window, never in a blocking dialog."""
    def fail(*args, **kwargs):
        pytest.fail(f"a modal dialog was opened: {args[1:3] if len(args) > 2 else args}")

    for name in ("critical", "warning", "information", "question", "about"):
        monkeypatch.setattr(QMessageBox, name, staticmethod(fail))
    monkeypatch.setattr(QMessageBox, "exec", fail)
    for name in ("getOpenFileName", "getExistingDirectory", "getSaveFileName"):
        monkeypatch.setattr(QFileDialog, name, staticmethod(fail))


@pytest.fixture(autouse=True)
def ui_thread_gc(qapp):
    """Garbage is collected on the UI thread only, as in the app (app/ui_thread_gc.py).

    Stopped after every worker thread ended (``no_leaked_threads`` depends on this fixture),
    so the test's Qt garbage is freed here, never by a later test's thread."""
    from app.ui_thread_gc import UiThreadCollector

    collector = UiThreadCollector()
    collector.start()
    yield collector
    collector.stop()


@pytest.fixture(autouse=True)
def no_leaked_threads(ui_thread_gc):
    """Every test must end every worker thread it started (within 2 s)."""
    yield
    deadline = time.monotonic() + 2.0
    while studio_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not studio_threads(), f"threads left behind: {studio_threads()}"


@pytest.fixture
def indoor_clip(videos) -> Path:
    return videos / INDOOR


@pytest.fixture
def make_window(qtbot, tmp_path):
    """Factory for a MainWindow with test-friendly defaults; closed at the end of the test."""
    from app.main_window import MainWindow
    from app.settings_store import SettingsStore

    windows = []

    def make(models_dir=None, source=None, model=None, scale=None, opener=None, **kw):
        settings = SettingsStore()
        settings.output_dir = tmp_path / "captures"
        window = MainWindow(settings, models_dir=models_dir or (tmp_path / "no-models"), source=source,
                            model=model, scale=scale, probe_cameras=False, opener=opener, **kw)
        window.resize(1100, 700)
        qtbot.addWidget(window)
        window.show()
        window.activateWindow()  # keyboard shortcuts need the active window (Xvfb has no window manager)
        qtbot.waitActive(window, timeout=5000)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


def drop_file(window, path) -> bool:
    """Drop ``path`` on ``window`` as a file manager does; True when the window took it."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    return event.isAccepted()


def wait_result(qtbot, window, predicate, timeout=30000):
    """Wait until the newest shown FrameResult satisfies ``predicate``; returns it. On a timeout
    the failure says where playback stood and what every thread was doing (a stall seen once
    in CI under PySide6 6.7.3 could not be reproduced; the next one must explain itself)."""
    def check():
        result = window.last_result
        assert result is not None and predicate(result)
    try:
        qtbot.waitUntil(check, timeout=timeout)
    except qtbot.TimeoutError:
        pytest.fail(f"no frame result satisfied the test within {timeout / 1000:g} s\n{playback_state(window)}")
    return window.last_result


def playback_state(window) -> str:
    """Worker, reader, model and shown-frame state, and every Python thread's stack."""
    import sys
    import traceback

    worker, shown = window.worker, window.last_result
    snap = worker.stats.snapshot()
    lines = [f"threads alive: {worker.threads_alive()}; model: {worker.segmenter.name if worker.segmenter else None}"
             f" (loader busy: {worker.loader.busy}); source: {worker.current_source()}",
             f"worker: read {snap.frames_read}, dropped {snap.frames_dropped}, processed {snap.frames_processed}, "
             f"result waiting to be taken: {worker._notified}",
             f"window: last result {None if shown is None else (shown.frame_index, shown.stats.frames_processed)}, "
             f"banners: {[b.text() for b in window.banner.banners()]}"]
    names = {t.ident: t.name for t in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        lines.append(f"--- thread {names.get(ident, ident)}:\n" + "".join(traceback.format_stack(frame, limit=-6)))
    return "\n".join(lines)
