"""Measures how long the UI thread was blocked: a precise QTimer records the gaps between ticks.

A tick that arrives late means the event loop was busy (painting, a slot, the GIL held by a
worker). The worst gap minus the interval is the worst stall the user could have felt.
Python's cyclic garbage collector stops every thread while it runs, so its pauses are timed
too (``gc.callbacks``): a stall that matches one is the collector's, not the app's code.
Collections on another thread are counted apart: there should be none (app/ui_thread_gc.py).
"""
from __future__ import annotations

import gc
import threading
import time

from PySide6.QtCore import QObject, Qt, QTimer


class StallMeter(QObject):
    def __init__(self, interval_ms: int = 10, parent: QObject | None = None):
        super().__init__(parent)
        self.interval_ms = interval_ms
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last = 0.0
        self.gaps_ms: list[float] = []
        self.gc_pauses_ms: list[float] = []
        self.gc_off_ui_thread = 0
        self._gc_started = 0.0

    def start(self) -> None:
        self.gaps_ms.clear()
        self.gc_pauses_ms.clear()
        self.gc_off_ui_thread = 0
        self._last = time.perf_counter()
        self._timer.start()
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        self._timer.stop()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._gc_started = now
            if threading.current_thread() is not threading.main_thread():
                self.gc_off_ui_thread += 1
        elif self._gc_started:
            self.gc_pauses_ms.append((now - self._gc_started) * 1000.0)
            self._gc_started = 0.0

    @property
    def worst_gc_pause_ms(self) -> float:
        return max(self.gc_pauses_ms, default=0.0)

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps_ms.append((now - self._last) * 1000.0)
        self._last = now

    @property
    def worst_gap_ms(self) -> float:
        return max(self.gaps_ms, default=0.0)

    @property
    def worst_stall_ms(self) -> float:
        """Worst delay beyond the timer interval."""
        return max(0.0, self.worst_gap_ms - self.interval_ms)

    def percentile_gap_ms(self, q: float) -> float:
        if not self.gaps_ms:
            return 0.0
        ordered = sorted(self.gaps_ms)
        return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]
