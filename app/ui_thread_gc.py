"""Python's cyclic garbage collector, run on the UI thread only, while Qt runs.

The collector runs in whichever thread's allocation crosses its threshold. When it frees a
reference cycle that held the last reference to a Qt object (a closed dialog and the slots
that point back at it), the C++ object is destroyed in that thread. A worker thread
destroying widgets of the UI thread crashes the process: CI at 5315bc3 died with a
segmentation fault "Garbage-collecting" inside the models dialog's import job, a plain
Python thread. So, while the app runs, automatic collection is off and a timer on the UI
thread collects instead, by the same thresholds; worker threads then never run the collector.
"""
from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


def due_generation(counts: tuple[int, ...], thresholds: tuple[int, ...]) -> int | None:
    """The oldest generation whose count passed its threshold, as automatic collection picks it."""
    due = [gen for gen, (count, limit) in enumerate(zip(counts, thresholds)) if limit and count > limit]
    return max(due) if due else None


class UiThreadCollector(QObject):
    """Switches automatic collection off on ``start`` and collects from a UI-thread timer.

    ``stop`` collects once more (on the calling thread, the UI thread) and gives the
    collector back as it was, so a caller that stops after its worker threads ended leaves
    no Qt garbage for another thread to free.
    """

    def __init__(self, interval_ms: int = 100, parent: QObject | None = None):
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect_if_due)
        self._was_enabled: bool | None = None

    @property
    def running(self) -> bool:
        return self._was_enabled is not None

    def start(self) -> None:
        if self.running:
            return
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer.start()

    def stop(self) -> None:
        if not self.running:
            return
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
        self._was_enabled = None

    def collect_if_due(self) -> int | None:
        """Collect the generation automatic collection would have; the generation, or None."""
        generation = due_generation(gc.get_count(), gc.get_threshold())
        if generation is not None:
            gc.collect(generation)
        return generation
