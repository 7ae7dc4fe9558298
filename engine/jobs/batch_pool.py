"""Local process pool for batch annotation: N spawned worker processes, no extra dependency.

Why not ``multiprocessing.Pool`` or ``ProcessPoolExecutor``: a worker killed mid-video (OOM
killer, kill -9) hangs the first and breaks the whole second. Here the driver owns each worker
process and its inbox, sees a dead one, starts a fresh one and hands the video to it again
(the new attempt resumes the masks the dead one finished, so the result is identical).

Each worker loads the model once (:func:`engine.jobs.batch_task.worker_segmenter`) and runs
``threads`` inference threads; the driver keeps workers x threads <= the cores it has. Workers
ignore SIGINT: Ctrl-C reaches the driver, which cancels the running jobs (their finished
frames are kept for ``--resume``) and stops the workers.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import wait

from .batch import MAX_ATTEMPTS
from .batch_task import EventCallback, available_cores, run_task, task_tag, thread_budget

STOP_WAIT_S = 15.0  # Ctrl-C: how long cancelled jobs get to stop before their workers are killed


def _worker_main(wid: int, inbox, conn, cancel_mp, threads: int) -> None:
    """A worker process: take tasks from ``inbox`` until None, report through its own pipe.

    A pipe per worker, not one shared queue: a worker killed while writing to a shared queue
    would leave its lock held and hang every other worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    cv2.setNumThreads(threads)
    cancel = threading.Event()
    lock = threading.Lock()

    def watch() -> None:  # the job takes a threading.Event; mirror the driver's process-shared one
        cancel_mp.wait()
        cancel.set()

    def send(event: dict) -> None:
        with lock:
            conn.send({**event, "worker": wid})

    threading.Thread(target=watch, name="studio-batch-cancel", daemon=True).start()
    while True:
        task = inbox.get()
        if task is None:
            return
        result = run_task(task, send, cancel)
        send({"type": "finished", "index": task["index"], "result": result, **task_tag(task)})


@dataclass
class _Slot:
    wid: int
    process: mp.Process
    inbox: object
    conn: object  # the driver's end of the worker's pipe
    task: dict | None = None


class LocalPool:
    """``--workers N`` on this machine."""

    kind = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None, cores: int | None = None):
        self.cores = cores or available_cores()
        self.workers, self.threads = thread_budget(workers or 1, self.cores, threads)
        self.requested = workers or 1

    def describe(self) -> dict:
        return {"kind": self.kind, "workers": self.workers, "threads_per_worker": self.threads, "cores": self.cores}

    def run(self, tasks: list[dict], on_event: EventCallback) -> None:
        ctx = mp.get_context("spawn")
        cancel = ctx.Event()
        pending = deque(tasks)
        slots: list[_Slot] = []
        next_id = [0]

        def spawn() -> _Slot:
            inbox = ctx.SimpleQueue()
            reader, writer = ctx.Pipe(duplex=False)
            wid = next_id[0]
            next_id[0] += 1
            proc = ctx.Process(target=_worker_main, args=(wid, inbox, writer, cancel, self.threads),
                               name=f"studio-batch-{wid}", daemon=True)
            proc.start()
            writer.close()  # only the worker writes: its death then reads as EOF here
            return _Slot(wid, proc, inbox, reader)

        def receive(slot: _Slot) -> bool:
            """Handle one message of ``slot``; False when its worker is gone."""
            try:
                event = slot.conn.recv()
            except (EOFError, OSError):
                return False
            if event["type"] == "finished":
                slot.task = None
            pending.extend(on_event(event) or ())  # a finished chunk may make its video's merge due
            return True

        def poll(timeout: float) -> list[_Slot]:
            """Handle what arrived within ``timeout``; return the slots whose worker died."""
            dead = []
            ready = wait([s.conn for s in slots], timeout)
            for slot in slots:
                if slot.conn in ready and not receive(slot):
                    slot.process.join(timeout=5)
                    dead.append(slot)
            return dead

        try:
            slots.extend(spawn() for _ in range(min(self.workers, len(tasks))))
            while pending or any(s.task is not None for s in slots):
                for slot in slots:
                    if slot.task is None and pending:
                        slot.task = pending.popleft()
                        slot.inbox.put(slot.task)
                for slot in poll(0.2):
                    slots[slots.index(slot)] = spawn()
                    slot.conn.close()
                    task = slot.task
                    if task is None:
                        continue
                    reason = f"worker process died (exit code {slot.process.exitcode}) on attempt {task['attempt']}"
                    if task["attempt"] >= MAX_ATTEMPTS:
                        on_event({"type": "finished", "index": task["index"],
                                  "result": {"status": "failed", "reason": reason}, **task_tag(task)})
                    else:
                        on_event({"type": "retry", "index": task["index"], "reason": reason, **task_tag(task)})
                        pending.appendleft({**task, "attempt": task["attempt"] + 1})
        except KeyboardInterrupt:
            cancel.set()
            deadline = time.monotonic() + STOP_WAIT_S
            while any(s.task is not None and s.process.is_alive() for s in slots) and time.monotonic() < deadline:
                try:
                    poll(0.2)
                except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                    break
            raise
        finally:
            for slot in slots:
                try:
                    slot.inbox.put(None)
                except (OSError, ValueError):
                    pass
            for slot in slots:
                slot.process.join(timeout=5)
                if slot.process.is_alive():
                    slot.process.kill()
                    slot.process.join(timeout=5)
                slot.conn.close()
