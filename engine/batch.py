"""Annotate many videos as one batch: the plan, the per-video task, and ``batch.json``.

Qt-free and executor-neutral. The driver (:func:`run_batch`) expands the inputs, gives every
video its own output folder under ``out`` (the same layout as a single ``annotate`` job), and
hands plain-dict tasks to an executor: :mod:`engine.batch_pool` (local processes, the default)
or :mod:`engine.batch_ray` (a Ray cluster). Workers run :func:`run_task`, which drives the
public :class:`engine.annotate.AnnotateJob`, so a batch video is byte-for-byte what a single
job writes. ``batch.json`` at the top of ``out`` records each video's status and throughput and
is rewritten atomically as the batch goes, so a crash leaves a readable record and ``--resume``
continues where it stopped (finished videos are skipped, unfinished ones resume their frames).
"""
from __future__ import annotations

import glob
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol

from . import annotate as ann
from .errors import StudioError
from .fileio import atomic_write_text
from .registry import Registry
from .scales import parse_scale
from .sources import VIDEO_EXTENSIONS

BATCH_FILE = "batch.json"
JOB_FILE = getattr(ann, "JOB_FILE", ".annotate-job.json")
GLOB_CHARS = set("*?[")
PROGRESS_EVERY_S = 0.25  # how often a worker reports frames (a message per frame would flood the queue)
SAVE_EVERY_S = 2.0  # batch.json is rewritten at least this often while frames progress
MAX_ATTEMPTS = 3  # a video whose worker died this many times is failed

Event = dict  # {"type": "started"|"progress"|"finished"|"retry", "index": int, ...}
EventCallback = Callable[[Event], None]


# --------------------------------------------------------------------------------------------
# Inputs and output names
# --------------------------------------------------------------------------------------------
def is_batch_input(items: list[str]) -> bool:
    """True when the inputs name more than one video: several items, a folder or a glob."""
    return len(items) > 1 or any(Path(i).is_dir() or (GLOB_CHARS & set(i) and not Path(i).exists()) for i in items)


def _videos_in(folder: Path) -> list[Path]:
    found = [p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()]
    return sorted(found, key=lambda p: str(p.relative_to(folder)).lower())


def expand_inputs(items: list[str]) -> list[Path]:
    """Files as given, folders searched (recursively) for video files, globs expanded; in order,
    without duplicates. A named file is kept whatever its extension: if it is not a video its
    task fails alone with the reason."""
    videos: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = _videos_in(path)
            if not found:
                raise StudioError(f"{item}: no video files in this folder ({', '.join(sorted(VIDEO_EXTENSIONS))})")
        elif path.exists():
            found = [path]
        elif GLOB_CHARS & set(item):
            found = sorted((Path(p) for p in glob.glob(item, recursive=True)
                            if Path(p).is_file() and Path(p).suffix.lower() in VIDEO_EXTENSIONS), key=str)
            if not found:
                raise StudioError(f"{item}: no video file matches")
        else:
            raise StudioError(f"{item}: no such file or folder")
        videos += found
    seen: set[Path] = set()
    unique = []
    for video in videos:
        key = video.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(key)
    return unique


def output_names(videos: list[Path]) -> list[str]:
    """One folder name per video: its file name without extension; clashes (case-insensitive,
    e.g. a/clip.mp4 and b/clip.mp4) get -2, -3... in input order."""
    used: set[str] = {BATCH_FILE.lower()}
    names = []
    for video in videos:
        base = video.stem or "video"
        name, n = base, 1
        while name.lower() in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name.lower())
        names.append(name)
    return names


# --------------------------------------------------------------------------------------------
# Options and the worker-side task
# --------------------------------------------------------------------------------------------
@dataclass
class BatchOptions:
    inputs: list[str]
    model: str
    out: Path | str
    models_dir: Path | str | None = None
    scale: str | float = "full"
    every: int = 1
    start: float | str | None = None
    end: float | str | None = None
    formats: tuple[str, ...] | str = ann.FORMATS
    opacity: float = 0.5
    threads: int | None = None  # inference threads per worker (default: cores // workers)
    workers: int | None = None  # default 1 (local) or one per CPU of the cluster (Ray)
    resume: bool = False
    overwrite: bool = False
    kill_first_attempt: dict[str, int] = field(default_factory=dict)  # tests: video name -> frame

    def settings(self) -> dict:
        """What every video's output depends on; a resumed batch must match."""
        return {"model": self.model, "scale": self.scale, "every": int(self.every),
                "start": self.start, "end": self.end, "formats": list(ann.parse_formats(self.formats)),
                "opacity": float(self.opacity)}

    def check(self) -> None:
        """Settings errors once, in the driver, before any worker starts (exit 2, not N failures)."""
        if int(self.every) < 1:
            raise StudioError(f"--every must be 1 or more (got {self.every})")
        parse_scale(self.scale)
        ann.parse_formats(self.formats)
        ann.parse_time(self.start), ann.parse_time(self.end)
        if not 0.0 <= float(self.opacity) <= 1.0:
            raise StudioError(f"opacity {self.opacity} is out of range (0..1)")
        if self.resume and self.overwrite:
            raise StudioError("choose one of --resume and --overwrite")
        if self.workers is not None and int(self.workers) < 1:
            raise StudioError(f"--workers must be 1 or more (got {self.workers})")
        if self.threads is not None and int(self.threads) < 1:
            raise StudioError(f"--threads must be 1 or more (got {self.threads})")
        Registry(self.models_dir).get(self.model)  # unknown model: one error, not one per video


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


_model_cache: dict[tuple, object] = {}


def install_model_cache() -> None:
    """In a worker process only: ``Segmenter.load`` returns the session already loaded for the
    same model and threads, so a worker loads (and checksums) its model once, not once per video.
    Segmenter keeps no per-call state, so sharing it between consecutive jobs is safe."""
    from .segmenter import Segmenter

    if getattr(Segmenter.load, "_batch_cached", False):
        return
    original = Segmenter.load.__func__

    def load(cls, name, models_dir=None, threads=None, cpu_only=False):
        key = (name, str(models_dir), threads, cpu_only)
        if key not in _model_cache:
            _model_cache[key] = original(cls, name, models_dir, threads=threads, cpu_only=cpu_only)
        return _model_cache[key]

    load._batch_cached = True  # type: ignore[attr-defined]
    Segmenter.load = classmethod(load)  # type: ignore[method-assign]


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
    """Annotate one video (in a worker). Never raises for a bad video: returns its status."""
    index = task["index"]
    resume, overwrite = _job_mode(task)
    options = ann.AnnotateOptions(video=task["video"], out=task["out"], resume=resume, overwrite=overwrite,
                                  **task["options"])
    kill_at = task.get("kill_at") if not resume else None
    last = [0.0]

    def progress(p) -> None:
        if kill_at is not None and p.done >= kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: a worker killed mid-video
        now = time.monotonic()
        if p.stage != "frames" or now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            emit({"type": "progress", "index": index, "done": p.done, "total": p.total})

    try:
        job = ann.AnnotateJob(options).prepare()
        emit({"type": "started", "index": index, "total": len(job.indices), "pid": os.getpid(), "resumed": resume})
        result = job.run(progress, cancel)
    except ann.AnnotateCancelled:
        return {"status": "cancelled"}
    except StudioError as exc:
        return {"status": "failed", "reason": _one_line(exc)}
    except Exception as exc:  # noqa: BLE001 - one bad video must not end the batch
        return {"status": "failed", "reason": f"{type(exc).__name__}: {_one_line(exc)}"}
    return {"status": "done", "frames": result.frames, "inferred": result.inferred,
            "seconds": round(result.seconds, 3), "fps": round(result.fps, 3),
            "already_complete": bool(result.already_complete)}


# --------------------------------------------------------------------------------------------
# The driver: batch.json and the batch-wide progress
# --------------------------------------------------------------------------------------------
@dataclass
class BatchProgress:
    frames_done: int
    frames_total: int
    videos_done: int
    videos_failed: int
    videos_total: int
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        rate = self.frames_done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (self.frames_total - self.frames_done) / rate if rate > 0 else None


class Executor(Protocol):
    kind: str

    def describe(self) -> dict: ...

    def run(self, tasks: list[dict], on_event: EventCallback) -> None: ...


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def estimate_frames(video: Path, opts: BatchOptions) -> int:
    """Frames a job will select, from the container header (the bar's total until a worker knows)."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
    finally:
        cap.release()
    if count <= 0 or fps <= 0:
        return 0
    start, end = ann.parse_time(opts.start), ann.parse_time(opts.end)
    first = int(round((start or 0.0) * fps))
    stop = count if end is None else min(count, int(round(end * fps)))
    return len(range(first, stop, int(opts.every)))


class BatchState:
    """The record of a batch, mirrored to ``out/batch.json`` (atomic rewrite on each change)."""

    def __init__(self, out: Path, opts: BatchOptions, videos: list[Path], names: list[str], executor: dict):
        self.path = out / BATCH_FILE
        self.opts = opts
        self.t0 = time.perf_counter()
        self.saved_at = 0.0
        self.data = {"tool": "topformer-studio annotate batch", "version": 1, "status": "running",
                     "started_at": _now(), "updated_at": _now(), "settings": opts.settings(),
                     "executor": executor, "videos": []}
        for video, name in zip(videos, names):
            self.data["videos"].append({"input": str(video), "out": name, "status": "pending", "frames": 0,
                                        "frames_total": estimate_frames(video, opts), "attempts": 0})

    @property
    def videos(self) -> list[dict]:
        return self.data["videos"]

    def adopt(self, previous: dict) -> None:
        """--resume: keep the earlier record of each video (finished ones are not run again)."""
        old = {v["input"]: v for v in previous.get("videos", [])}
        for entry in self.videos:
            before = old.get(entry["input"])
            if before is None:
                continue
            if before.get("status") == "done":
                entry.update(before)
            else:  # failed, interrupted or never started: run again (resuming its frames)
                entry["attempts"] = before.get("attempts", 0)
        self.data["started_at"] = previous.get("started_at", self.data["started_at"])
        self.data["resumed_at"] = _now()

    def progress(self) -> BatchProgress:
        vs = self.videos
        return BatchProgress(sum(v["frames"] for v in vs), sum(max(v["frames_total"], v["frames"]) for v in vs),
                             sum(v["status"] == "done" for v in vs), sum(v["status"] == "failed" for v in vs),
                             len(vs), time.perf_counter() - self.t0)

    def apply(self, event: Event) -> None:
        entry = self.videos[event["index"]]
        kind = event["type"]
        force = kind != "progress"
        if kind == "started":
            entry.update(status="running", frames_total=event["total"], attempts=entry.get("attempts", 0) + 1)
            entry["started_at"] = _now()
        elif kind == "progress":
            entry.update(frames=event["done"], frames_total=event["total"])
        elif kind == "retry":
            entry["last_error"] = event["reason"]
        elif kind == "finished":
            result = event["result"]
            status = result["status"]
            if status == "done":
                entry.update(status="done", frames=result["frames"], frames_total=result["frames"],
                             inferred=result["inferred"], seconds=result["seconds"], fps=result["fps"],
                             finished_at=_now())
                entry.pop("reason", None)
            elif status == "failed":
                entry.update(status="failed", reason=result["reason"], finished_at=_now())
            else:  # cancelled: left for --resume
                entry["status"] = "pending"
        self.save(force)

    def save(self, force: bool = True) -> None:
        if not force and time.monotonic() - self.saved_at < SAVE_EVERY_S:
            return
        p = self.progress()
        self.data["updated_at"] = _now()
        self.data["totals"] = {"videos": p.videos_total, "done": p.videos_done, "failed": p.videos_failed,
                               "pending": sum(v["status"] in ("pending", "running") for v in self.videos),
                               "frames_done": p.frames_done, "frames_total": p.frames_total,
                               "elapsed_s": round(p.elapsed_s, 3),
                               "fps": round(p.frames_done / p.elapsed_s, 3) if p.elapsed_s > 0 else None}
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")
        self.saved_at = time.monotonic()

    def finish(self, status: str) -> None:
        for entry in self.videos:
            if entry["status"] == "running":
                entry["status"] = "pending"
        self.data["status"] = status
        self.save()


def _read_previous(out: Path, opts: BatchOptions, videos: list[Path]) -> dict | None:
    """The earlier batch.json for --resume (checked), None for a new batch (out must be free)."""
    path = out / BATCH_FILE
    if out.exists() and not out.is_dir():
        raise StudioError(f"cannot use output folder {out}: it is a file")
    if not opts.resume:
        if out.is_dir() and any(out.iterdir()) and not opts.overwrite:
            raise StudioError(f"output folder {out} already exists and is not empty: "
                              "use --resume to continue its batch or --overwrite to start again")
        return None
    if not path.is_file():
        raise StudioError(f"{out} does not hold a batch to resume (no {BATCH_FILE})")
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StudioError(f"cannot read {path}: {exc}") from None
    if previous.get("settings") != opts.settings():
        diff = next(k for k in opts.settings() if previous.get("settings", {}).get(k) != opts.settings()[k])
        raise StudioError(f"{out} holds a batch with other settings ({diff}: "
                          f"{previous.get('settings', {}).get(diff)!r}, now {opts.settings()[diff]!r}); "
                          "use --overwrite to start again")
    before = [v["input"] for v in previous.get("videos", [])]
    if sorted(before) != sorted(str(v) for v in videos):
        raise StudioError(f"{out} holds a batch of other videos ({len(before)} listed in {BATCH_FILE}, "
                          f"{len(videos)} given now); give the same inputs or choose another --out")
    return previous


def plan_batch(opts: BatchOptions, executor: Executor) -> tuple[BatchState, list[dict]]:
    """Check everything, name the output folders, write the initial batch.json; return the tasks."""
    opts.check()
    videos = expand_inputs(opts.inputs)
    out = Path(opts.out).resolve()
    previous = _read_previous(out, opts, videos)
    if previous is not None:  # keep the folder names the batch started with
        names_by_input = {v["input"]: v["out"] for v in previous["videos"]}
        names = [names_by_input[str(v)] for v in videos]
    else:
        names = output_names(videos)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudioError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    state = BatchState(out, opts, videos, names, executor.describe())
    if previous is not None:
        state.adopt(previous)
    state.save()
    job_options = {"model": opts.model, "models_dir": str(opts.models_dir) if opts.models_dir else None,
                   "scale": opts.scale, "every": int(opts.every), "start": opts.start, "end": opts.end,
                   "formats": ann.parse_formats(opts.formats), "opacity": float(opts.opacity),
                   "threads": executor.describe().get("threads_per_worker")}
    tasks = []
    for i, entry in enumerate(state.videos):
        if entry["status"] == "done":
            continue
        tasks.append({"index": i, "video": entry["input"], "out": str(out / entry["out"]), "options": job_options,
                      "mode": "overwrite" if opts.overwrite else "new", "attempt": 1,
                      "kill_at": opts.kill_first_attempt.get(entry["out"])})
    return state, tasks


def run_batch(opts: BatchOptions, executor: Executor,
              progress: Callable[[BatchProgress], None] | None = None) -> BatchState:
    """Plan, run every unfinished video on ``executor``, keep batch.json current. Ctrl-C
    (KeyboardInterrupt) marks the batch interrupted and is re-raised for the caller."""
    state, tasks = plan_batch(opts, executor)

    def on_event(event: Event) -> None:
        state.apply(event)
        if progress is not None:
            progress(state.progress())

    if progress is not None:
        progress(state.progress())
    try:
        if tasks:
            executor.run(tasks, on_event)
    except KeyboardInterrupt:
        state.finish("interrupted")
        raise
    except BaseException:
        state.finish("error")
        raise
    failed = any(v["status"] == "failed" for v in state.videos)
    unfinished = any(v["status"] in ("pending", "running") for v in state.videos)
    state.finish("failed" if failed else "interrupted" if unfinished else "done")
    return state
