"""The garbage collector runs on the UI thread only while the app runs (app/ui_thread_gc.py)."""
from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QObject

from app.ui_thread_gc import UiThreadCollector, due_generation


def make_cycles(n: int) -> None:
    for _ in range(n):
        a: list = []
        a.append(a)


def collecting_threads(action) -> list[str]:
    """Names of the threads in which the collector ran during ``action()``."""
    seen: list[str] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            seen.append(threading.current_thread().name)

    gc.callbacks.append(record)
    try:
        action()
    finally:
        gc.callbacks.remove(record)
    return seen


def test_due_generation_follows_the_thresholds():
    assert due_generation((10, 0, 0), (700, 10, 10)) is None
    assert due_generation((701, 0, 0), (700, 10, 10)) == 0
    assert due_generation((701, 11, 0), (700, 10, 10)) == 1
    assert due_generation((701, 11, 11), (700, 10, 10)) == 2
    assert due_generation((5000, 0, 0), (0, 10, 10)) is None  # threshold 0: collection off


def test_worker_threads_never_collect_and_the_ui_thread_does(qtbot, ui_thread_gc):
    """A worker allocating cycles would trigger collections in its own thread; with the
    collector started they happen on the UI thread's timer instead, and the garbage goes."""
    assert ui_thread_gc.running and not gc.isenabled()

    def work_then_wait():
        worker = threading.Thread(target=make_cycles, args=(50_000,), name="studio-gc-probe")
        worker.start()
        worker.join()
        qtbot.wait(400)

    threads = collecting_threads(work_then_wait)
    assert threads and set(threads) == {threading.main_thread().name}
    assert gc.get_count()[0] < 50_000


def test_stop_collects_and_restores_the_collector(qapp):
    """After ``stop`` a Qt object left in a cycle is gone, and automatic collection is as before."""
    enabled = gc.isenabled()
    collector = UiThreadCollector()
    collector.start()
    collector.start()  # idempotent
    holder: list = [QObject()]
    holder.append(holder)  # a cycle: only the collector frees it, and the QObject with it
    destroyed: list[bool] = []
    holder[0].destroyed.connect(lambda: destroyed.append(True))
    del holder
    assert not destroyed  # only the collector can free a cycle, and it is the UI thread's now
    collector.stop()
    assert destroyed and gc.isenabled() == enabled and not collector.running
    collector.stop()  # idempotent
