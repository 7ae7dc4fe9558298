"""Base of the scripted, self-ending window runs (``--benchmark-frames``, ``--screenshot``)."""
from __future__ import annotations

import signal
import sys
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QApplication, QWidget

from ..ui_thread_gc import UiThreadCollector


class ScriptedRun(QObject):
    """Owns the exit code and a watchdog, so a scripted run always ends, with 0 or 2.

    ``window`` is the main window or the compare window: anything with ``close()``.
    """

    def __init__(self, window: QWidget, timeout_s: float, on_timeout: Callable[[], None]):
        super().__init__(window)
        self.window = window
        self.exit_code: int | None = None
        self._watchdog = QTimer(self)
        self._watchdog.setSingleShot(True)
        self._watchdog.timeout.connect(on_timeout)
        self._watchdog.start(int(timeout_s * 1000))

    def refuse_a_still(self, info) -> None:
        """For runs that count frames, called with each shown frame's SourceInfo: a picture, or
        a one-frame video, is segmented once and then only shown, so N frames would never come.
        Say so at its first frame, not at the watchdog minutes later."""
        if info.kind == "image" or (info.kind == "video" and info.frame_count == 1):
            what = "a still picture" if info.kind == "image" else "a video of one frame"
            self._fail(f"--benchmark-frames needs a video or a camera: {info.description} is {what} "
                       f"(main.py bench --frame {info.spec} measures one picture's speed)")

    def _fail(self, message: str) -> None:
        if self.exit_code is None:
            print(f"error: {message}", file=sys.stderr, flush=True)
            self._quit(2)

    def _quit(self, code: int) -> None:
        self.exit_code = code
        self._watchdog.stop()
        self.window.close()
        QApplication.instance().exit(code)


def run_event_loop(app: QApplication, window: QWidget, runner: ScriptedRun | None) -> int:
    """Show ``window``, run Qt until it closes, tear down while Python is alive; the exit code.

    Ctrl+C in the terminal closes the window cleanly (Python only sees signals between Qt
    events, hence the heartbeat timer). Deleting the window before interpreter shutdown
    avoids crashes at exit seen with some PySide6 versions. Python's garbage collector runs
    on this thread only while the app runs (``UiThreadCollector``: a worker thread freeing
    Qt objects crashes the process).
    """
    collector = UiThreadCollector(parent=None)
    collector.start()
    signal.signal(signal.SIGINT, lambda *_: window.close())
    heartbeat = QTimer()
    heartbeat.start(250)
    heartbeat.timeout.connect(lambda: None)
    code = app.exec()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    heartbeat.stop()
    window.close()  # no-op when already closed; stops the worker threads otherwise
    app.processEvents()
    window.deleteLater()
    app.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    collector.stop()
    if runner is not None and runner.exit_code is not None:
        code = runner.exit_code
    return int(code)
