"""One-off background jobs on the app's one thread idiom: plain Python threads, results by Qt signal.

Every background activity of the app is a plain ``threading.Thread`` (the capture, inference
and compose loops, the compare worker, model loading, the camera probe, snapshots, and the
jobs here); the UI thread never waits on one, and whatever the UI must see comes back as a
Qt signal, which Qt queues to the UI thread because it is emitted from another thread.

A job is a plain function ``fn(job)`` that may call ``job.report(done, total)`` and check
``job.cancelled``; its result or its error comes back as a queued signal. Dialogs own a
``JobRunner`` (its own worker threads, one job at a time by default) and wait for it when
they close, so no job outlives the window that started it by more than its next
cancellation check.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from PySide6.QtCore import QObject, Signal

from engine.errors import StudioError


class JobSignals(QObject):
    progress = Signal(int, int)  # done, total (total 0: unknown)
    update = Signal(object)  # a richer progress value of the job's own type (e.g. annotate's Progress)
    finished = Signal(object)  # the function's result (never None: see Job.run)
    failed = Signal(str)  # one line for the user


class Job:
    def __init__(self, name: str, fn: Callable[["Job"], object]):
        self.name, self.fn = name, fn
        self.signals = JobSignals()
        self.cancel_event = threading.Event()
        self.done = threading.Event()
        self._last_report = 0.0

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def cancel(self) -> None:
        self.cancel_event.set()

    def report(self, done: int, total: int | None) -> None:
        """Progress from the job's thread; at most ~10 signals a second (and the last one).

        Never raises: it is handed to engine code as a callback, and the engine checks the
        cancel event itself (so it can keep a resumable partial download)."""
        now = time.monotonic()
        if now - self._last_report >= 0.1 or (total and done >= total):
            self._last_report = now
            self._emit(self.signals.progress, int(done), int(total or 0))

    def update(self, value: object) -> None:
        """Any progress object, every time (the receiver decides what to show)."""
        self._emit(self.signals.update, value)

    def run(self) -> None:
        try:
            result = self.fn(self)
        except StudioError as exc:
            self._emit(self.signals.failed, str(exc))
        except Exception as exc:  # noqa: BLE001 - a failed job is a message, never a crash
            self._emit(self.signals.failed, f"{self.name} failed: {exc}")
        else:
            self._emit(self.signals.finished, result if result is not None else self.name)
        finally:
            self.done.set()

    @staticmethod
    def _emit(signal, *args) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the receiver's window was deleted meanwhile
            pass


class JobRunner(QObject):
    """Runs each job on its own thread; with ``serial`` (the default) one at a time, in order."""

    def __init__(self, parent: QObject | None = None, serial: bool = True):
        super().__init__(parent)
        self.serial = serial
        self.jobs: list[Job] = []
        self._threads: dict[Job, threading.Thread] = {}

    def start(self, name: str, fn: Callable[[Job], object], finished: Callable | None = None,
              failed: Callable | None = None, progress: Callable | None = None, update: Callable | None = None) -> Job:
        """Start ``fn``; the receivers are connected before it starts (a fast job loses nothing)."""
        self.jobs = [j for j in self.jobs if not j.done.is_set()]
        self._threads = {j: t for j, t in self._threads.items() if t.is_alive()}
        previous = self.jobs[-1] if self.serial and self.jobs else None
        job = Job(name, fn)
        for signal, slot in ((job.signals.finished, finished), (job.signals.failed, failed),
                             (job.signals.progress, progress), (job.signals.update, update)):
            if slot is not None:
                signal.connect(slot)
        self.jobs.append(job)
        thread = threading.Thread(target=self._run, args=(job, previous), name=f"studio-job-{name}", daemon=True)
        self._threads[job] = thread
        thread.start()
        return job

    @staticmethod
    def _run(job: Job, previous: Job | None) -> None:
        if previous is not None:
            previous.done.wait()  # serial: the jobs of one dialog never compete for the CPU
        job.run()

    def busy(self) -> bool:
        return any(not j.done.is_set() for j in self.jobs)

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        """Cancel every job and wait for their threads; True when all ended in time."""
        for job in self.jobs:
            job.cancel()
        deadline = time.monotonic() + timeout_ms / 1000.0
        for thread in list(self._threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads.values())
