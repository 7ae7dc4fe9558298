"""The worker side of a batch: one video through the public AnnotateJob, and the thread budget.

Runs in a pool process (:mod:`engine.batch_pool`) or a Ray actor (:mod:`engine.batch_ray`);
only plain dicts cross the process boundary. Never raises for a bad video: a corrupt file is
a ``failed`` result with its one-line reason, so it fails alone.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from . import annotate as ann
from ..errors import StudioError

JOB_FILE = getattr(ann, "JOB_FILE", ".annotate-job.json")
PROGRESS_EVERY_S = 0.25  # how often a worker reports frames (a message per frame would flood the queue)

Event = dict  # {"type": "started"|"progress"|"finished"|"retry", "index": int, ["chunk": k | "kind": "merge"], ...}
EventCallback = Callable[[Event], "list[dict] | None"]  # may return new tasks (a video's merge)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def thread_budget(workers: int, cores: int, threads: int | None) -> tuple[int, int]:
    """(workers, inference threads per worker) with workers x threads <= cores."""
    workers = max(1, min(int(workers), cores))
    per = max(1, cores // workers)
    return workers, per if threads is None else max(1, min(int(threads), per))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


_models: dict[tuple, object] = {}


def worker_segmenter(options: dict):
    """The model for a task, loaded (and checksummed) once per worker process and handed to every
    job through ``AnnotateJob(options, segmenter=...)``; Segmenter keeps no per-call state."""
    from ..run.segmenter import Segmenter

    key = (options["model"], options.get("models_dir"), options.get("threads"))
    if key not in _models:
        _models[key] = Segmenter.load(options["model"], options.get("models_dir"), threads=options.get("threads"))
    return _models[key]


def task_tag(task: dict) -> dict:
    """What an event must carry besides the video's index: its chunk, or that it is the merge."""
    return {k: task[k] for k in ("chunk", "kind") if task.get(k) is not None}


def _job_mode(task: dict) -> tuple[bool, bool]:
    """(resume, overwrite) for this attempt. A folder holding a job file is continued (an earlier
    attempt or an interrupted batch started it; the masks it finished are kept); a folder with
    only debris of a killed attempt is overwritten. Both are identical to a serial run."""
    out = Path(task["out"])
    if task.get("mode") == "overwrite" and task.get("attempt", 1) == 1:
        return False, True
    if (out / JOB_FILE).is_file():
        return True, False
    if out.is_dir() and any(out.iterdir()):
        return False, True
    return False, False


def run_task(task: dict, emit: EventCallback, cancel: threading.Event | None = None) -> dict:
    """Annotate one video, one chunk of a video, or merge a video's chunks (in a worker).
    Never raises for a bad video: returns its status."""
    tag = task_tag(task)
    send = (lambda e: emit({**e, **tag})) if tag else emit
    try:
        if task.get("kind") == "merge":
            from .batch_chunks import merge_chunks

            return merge_chunks(task, send, cancel)
        return _annotate(task, send, cancel)
    except ann.AnnotateCancelled:
        return {"status": "cancelled"}
    except StudioError as exc:
        return {"status": "failed", "reason": _one_line(exc)}
    except Exception as exc:  # noqa: BLE001 - one bad video must not end the batch
        return {"status": "failed", "reason": f"{type(exc).__name__}: {_one_line(exc)}"}


def progress_sender(task: dict, emit: EventCallback, kill_at: int | None = None):
    """A job progress callback that reports at most every PROGRESS_EVERY_S (and kills at ``kill_at``: tests)."""
    index = task["index"]
    last = [0.0]

    def progress(p) -> None:
        if kill_at is not None and p.done >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: a worker killed mid-video
        now = time.monotonic()
        if p.stage != "frames" or now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            emit({"type": "progress", "index": index, "done": p.done, "total": p.total})

    return progress


def _annotate(task: dict, emit: EventCallback, cancel: threading.Event | None) -> dict:
    index = task["index"]
    resume, overwrite = _job_mode(task)
    options = ann.AnnotateOptions(video=task["video"], out=task["out"], resume=resume, overwrite=overwrite,
                                  **task["options"])
    progress = progress_sender(task, emit, task.get("kill_at") if not resume else None)
    loads = len(_models)
    segmenter = worker_segmenter(task["options"])
    loaded = len(_models) > loads  # this video paid for loading the model
    job = ann.AnnotateJob(options, segmenter=segmenter).prepare()
    emit({"type": "started", "index": index, "total": len(job.indices), "pid": os.getpid(), "resumed": resume})
    result = job.run(progress, cancel)
    return {"status": "done", "frames": result.frames, "inferred": result.inferred,
            "seconds": round(result.seconds, 3), "fps": round(result.fps, 3),
            "already_complete": bool(result.already_complete), "loaded_model": loaded}
