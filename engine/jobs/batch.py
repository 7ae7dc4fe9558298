"""Annotate many videos as one batch: inputs, output names, options, the plan and the driver.

Qt-free and executor-neutral. The driver (:func:`run_batch`) expands the inputs, gives every
video its own output folder under ``out`` (the same layout as a single ``annotate`` job), and
hands plain-dict tasks to an executor: :mod:`engine.batch_pool` (local processes, the default)
or :mod:`engine.batch_ray` (a Ray cluster). Workers run :func:`run_task`, which drives the
public :class:`engine.jobs.annotate.AnnotateJob` (:mod:`engine.jobs.batch_task`), so a batch video is
byte-for-byte what a single job writes. ``batch.json`` (:mod:`engine.batch_state`) at the top of ``out`` records each video's status and throughput and
is rewritten atomically as the batch goes, so a crash leaves a readable record and ``--resume``
continues where it stopped (finished videos are skipped, unfinished ones resume their frames).
With ``chunk_seconds`` a long video is split into time ranges run as separate tasks and merged
back into its folder in frame order (:mod:`engine.batch_chunks`): the chunks first, then the merges.
"""
from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import annotate as ann
from .batch_chunks import CHUNKS_DIR, chunk_task, merge_task, plan_chunks
from .batch_state import BATCH_FILE, BatchProgress, BatchState, Executor
from .batch_task import (  # noqa: F401 - re-exported: one import for callers
    Event, EventCallback, available_cores, run_task, thread_budget)
from ..errors import StudioError
from ..models.registry import Registry
from ..scales import multiscale_factors, parse_scale
from ..io.sources import VIDEO_EXTENSIONS

GLOB_CHARS = set("*?[")
MAX_ATTEMPTS = 3  # a video whose worker died this many times is failed


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
    used: set[str] = {BATCH_FILE.lower(), CHUNKS_DIR}
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
    chunk_seconds: float | None = None  # split videos longer than this into time ranges (merged after)
    multiscale: str | None = None  # average these input factors (engine/run/multiscale.py)
    kill_first_attempt: dict[str, int] = field(default_factory=dict)  # tests: "name" or "name:chunk" -> frame

    def settings(self) -> dict:
        """What every video's output depends on; a resumed batch must match."""
        return {"model": self.model, "scale": self.scale, "every": int(self.every),
                "start": self.start, "end": self.end, "formats": list(ann.parse_formats(self.formats)),
                "opacity": float(self.opacity), **({"multiscale": self.multiscale} if self.multiscale else {})}

    def check(self) -> None:
        """Settings errors once, in the driver, before any worker starts (exit 2, not N failures)."""
        if int(self.every) < 1:
            raise StudioError(f"--every must be 1 or more (got {self.every})")
        parse_scale(self.scale)
        multiscale_factors(self.multiscale, self.scale)
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
        if self.chunk_seconds is not None and not float(self.chunk_seconds) > 0:
            raise StudioError(f"--chunk-seconds must be more than 0 (got {self.chunk_seconds})")
        Registry(self.models_dir).get(self.model)  # unknown model: one error, not one per video


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
    described = executor.describe()  # starts or joins Ray: its errors come before anything is written
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudioError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    state = BatchState(out, opts, videos, names, described)
    if opts.chunk_seconds is not None:
        for entry in state.videos:
            chunks = plan_chunks(Path(entry["input"]), float(opts.chunk_seconds), opts.start, opts.end, opts.every)
            if chunks:
                entry.update(chunks=chunks, frames_total=sum(c["frames_total"] for c in chunks))
    if previous is not None:
        state.adopt(previous)
    state.save()
    job_options = {"model": opts.model, "models_dir": str(opts.models_dir) if opts.models_dir else None,
                   "scale": opts.scale, "every": int(opts.every), "start": opts.start, "end": opts.end,
                   "formats": ann.parse_formats(opts.formats), "opacity": float(opts.opacity),
                   "threads": described.get("threads_per_worker"), "multiscale": opts.multiscale}
    state.job_options = job_options
    tasks = []
    mode = "overwrite" if opts.overwrite else "new"
    for i, entry in enumerate(state.videos):
        if entry["status"] == "done":
            continue
        if entry.get("chunks"):
            todo = [k for k, c in enumerate(entry["chunks"]) if c["status"] != "done"]
            kills = opts.kill_first_attempt
            tasks += [chunk_task(out, i, entry, k, job_options, mode, kills.get(f"{entry['out']}:{k}")) for k in todo]
            if not todo:  # every chunk finished before: only the merge is left
                tasks.append(merge_task(out, i, entry, job_options, mode))
            continue
        tasks.append({"index": i, "video": entry["input"], "out": str(out / entry["out"]), "options": job_options,
                      "mode": "overwrite" if opts.overwrite else "new", "attempt": 1,
                      "kill_at": opts.kill_first_attempt.get(entry["out"])})
    return state, tasks


def _merges_due(state: BatchState, opts: BatchOptions, queued: set[int]) -> list[dict]:
    """Merge tasks of the chunked videos whose chunks are all done (and whose merge is not ``queued``,
    which this adds them to)."""
    out = Path(opts.out).resolve()
    mode = "overwrite" if opts.overwrite else "new"
    due = [i for i, entry in enumerate(state.videos)
           if entry.get("chunks") and i not in queued and entry["status"] not in ("done", "failed")
           and all(c["status"] == "done" for c in entry["chunks"])]
    queued.update(due)
    return [merge_task(out, i, state.videos[i], state.job_options, mode) for i in due]


def run_batch(opts: BatchOptions, executor: Executor,
              progress: Callable[[BatchProgress], None] | None = None) -> BatchState:
    """Plan, run every unfinished video on ``executor``, keep batch.json current. Ctrl-C
    (KeyboardInterrupt) marks the batch interrupted and is re-raised for the caller."""
    state, tasks = plan_batch(opts, executor)
    queued = {t["index"] for t in tasks if t.get("kind") == "merge"}

    def on_event(event: Event) -> list[dict] | None:
        state.apply(event)
        if progress is not None:
            progress(state.progress())
        if event["type"] == "finished" and event.get("chunk") is not None:
            return _merges_due(state, opts, queued)  # merged as soon as its last chunk is done
        return None

    if progress is not None:
        progress(state.progress())

    def size(task: dict) -> int:
        entry = state.videos[task["index"]]
        return entry["chunks"][task["chunk"]]["frames_total"] if "chunk" in task else entry["frames_total"]

    # longest first: the batch ends when its longest video does, so start that one early
    tasks.sort(key=lambda t: -size(t))
    try:
        if tasks:
            executor.run(tasks, on_event)
        merges = _merges_due(state, opts, queued)
        if merges:  # an executor that does not take new tasks while it runs: the merges now
            executor.run(sorted(merges, key=lambda t: -size(t)), on_event)
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
