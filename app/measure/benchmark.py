"""``--benchmark-frames N``: play N segmented frames in the real window, print one JSON line, quit.

Users run it to measure their own hardware; it also makes the live app measurable in tests.
The UI-thread stall is measured from the first segmented frame to the last.
With ``health_every_s`` it also prints, every that many seconds, one ``{"health": ...}`` JSON
line on stderr (frames, RSS, ``sys.getrefcount(True/None)``): the soak test reads them to catch
leaks such as PySide6 6.12.0's lost reference to True on each bool signal (tests/test_soak.py).
With ``--unpaced`` file sources are decoded as fast as the engine takes them (no frame
dropped, none waited for), so ``e2e_fps`` shows whether the app keeps up with its engine:
``app_vs_engine`` = e2e_fps / (1000 / inference_ms_median), 1.0 when nothing but the
network and its post-processing limits the frame rate.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import TextIO

from ..main_window import MainWindow
from .scripted_run import ScriptedRun
from PySide6.QtCore import QTimer

from .stall_meter import StallMeter
from ..playback.worker import FrameResult


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; elsewhere the peak, which only grows)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def health_sample(frames: int, elapsed_s: float) -> dict:
    return {"frames": frames, "elapsed_s": round(elapsed_s, 1), "rss_mb": round(rss_mb(), 1),
            "refcount_true": sys.getrefcount(True), "refcount_none": sys.getrefcount(None)}


class BenchmarkRun(ScriptedRun):
    def __init__(self, window: MainWindow, frames: int, out: TextIO = sys.stdout, timeout_s: float = 300.0,
                 min_seconds: float = 0.0, health_every_s: float = 0.0, unpaced: bool = False):
        self.frames, self.out, self.unpaced = max(1, frames), out, unpaced
        self.min_seconds = max(0.0, min_seconds)
        # Long runs may take longer: allow 5 frames a second (2500 frames of a 10 fps clip = 250 s).
        timeout_s = max(timeout_s, self.min_seconds + 300.0, self.frames / 5.0)
        super().__init__(window, timeout_s, lambda: self._fail(f"no {self.frames} segmented frames within {timeout_s:.0f} s"))
        self._health = QTimer(self)
        self._health.setInterval(int(health_every_s * 1000))
        self._health.timeout.connect(self._log_health)
        self.meter = StallMeter(parent=self)
        self._infer_ms: list[float] = []
        self._shown = 0
        self._t0 = 0.0
        self.extra: dict = {}  # more keys for the report (e.g. the start-up profile)
        window.frame_shown.connect(self._on_frame)
        window.worker.source_failed.connect(lambda msg: self._fail(f"source failed: {msg}"))
        window.worker.model_failed.connect(lambda name, msg: self._fail(f"model {name} failed: {msg}"))

    def _on_frame(self, result: FrameResult) -> None:
        if self.exit_code is None and result.source is not None:
            self.refuse_a_still(result.source)
        if self.exit_code is not None or result.labels is None or not result.is_new:
            return  # frames shown before the model is ready, and redraws, do not count
        if not self._shown:
            self.meter.start()
            self._t0 = time.monotonic()
            if self._health.interval() > 0:
                self._log_health()
                self._health.start()
        self._shown += 1
        if result.infer_ms is not None:
            self._infer_ms.append(result.infer_ms)
        if self._shown >= self.frames and time.monotonic() - self._t0 >= self.min_seconds:
            self._finish(result)

    def _log_health(self) -> None:
        sample = health_sample(self._shown, time.monotonic() - self._t0)
        print(json.dumps({"health": sample}), file=sys.stderr, flush=True)

    def _finish(self, result: FrameResult) -> None:
        self.meter.stop()
        self._health.stop()
        elapsed = time.monotonic() - self._t0
        stats = self.window.worker.stats
        snap = result.stats
        ordered = sorted(self._infer_ms)
        e2e_fps = round((self._shown - 1) / elapsed, 2) if elapsed > 0 and self._shown > 1 else snap.e2e_fps
        median_ms = statistics.median(ordered) if ordered else None
        segmenter = self.window.worker.segmenter
        report = {
            "frames": self._shown,
            "source": result.source.description if result.source else "",
            "model": snap.model,
            "providers": snap.providers,
            "scale": snap.scale,
            "frame_size": list(snap.frame_size),
            "input_size": list(snap.input_size),
            "input_note": snap.input_note,  # why the input is smaller than the scale asks, if it is
            "elapsed_s": round(elapsed, 3),
            "source_fps": snap.source_fps,
            "e2e_fps": e2e_fps,
            "inference_ms_median": round(median_ms, 2) if median_ms else None,
            "unpaced": self.unpaced,
            "backend": segmenter.backend_name if segmenter is not None else None,
            "app_vs_engine": round(e2e_fps * median_ms / 1000.0, 3) if median_ms and e2e_fps else None,
            "inference_ms_p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2) if ordered else None,
            "frames_read": stats.read,  # since the source opened, like the on-screen counter
            "frames_dropped": stats.dropped,
            "ui_stall_max_ms": round(self.meter.worst_stall_ms, 1),
            "ui_tick_gap_max_ms": round(self.meter.worst_gap_ms, 1),
            "ui_tick_gap_p99_ms": round(self.meter.percentile_gap_ms(99), 1),
            "ui_tick_interval_ms": self.meter.interval_ms,
            "gc_pause_max_ms": round(self.meter.worst_gc_pause_ms, 1),  # the collector stops every thread
            "gc_collections": len(self.meter.gc_pauses_ms),
            "gc_collections_off_ui_thread": self.meter.gc_off_ui_thread,  # 0: app/ui_thread_gc.py
            "health": health_sample(self._shown, elapsed),
            "notices": list(self.window.notices),  # scene-fit hints shown during the run (empty when none)
            **self.extra,
        }
        print(json.dumps(report), file=self.out, flush=True)
        self._quit(0)
