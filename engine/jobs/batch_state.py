"""The record of a batch: ``batch.json``, rewritten atomically as the batch goes.

Per video: status (pending, running, done, failed + one-line reason), frames done of total,
attempts, throughput, and for a video split with ``--chunk-seconds`` its chunks' records; at the
top the settings (a resume must match them), the executor and the totals. Executors report
through events; :class:`BatchState` applies them.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import annotate as ann
from .batch_chunks import adopt_chunks, apply_chunk_event, apply_merge_event
from .batch_task import Event, EventCallback
from ..fileio import atomic_write_text

if TYPE_CHECKING:
    from .batch import BatchOptions

BATCH_FILE = "batch.json"
SAVE_EVERY_S = 2.0  # batch.json is rewritten at least this often while frames progress


@dataclass
class BatchProgress:
    frames_done: int
    frames_total: int
    videos_done: int
    videos_failed: int
    videos_total: int
    elapsed_s: float
    frames_before: int = 0  # frames of videos finished before this run (a resumed batch)

    @property
    def fps(self) -> float:
        """Frames per second of this run (a resume's finished videos do not count)."""
        return (self.frames_done - self.frames_before) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return (self.frames_total - self.frames_done) / self.fps if self.fps > 0 else None


class Executor(Protocol):
    kind: str

    def describe(self) -> dict: ...

    def run(self, tasks: list[dict], on_event: EventCallback) -> None:
        """Run ``tasks``; a list returned by ``on_event`` (for a ``finished`` event) is more tasks to run."""


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
        self.frames_before = 0
        self.job_options: dict = {}  # the AnnotateOptions fields every task of the batch uses
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
                adopt_chunks(entry, before)  # finished chunks of a chunked video are kept
        self.frames_before = sum(v["frames"] if v["status"] == "done" else
                                 sum(c["frames"] for c in v.get("chunks") or [] if c["status"] == "done")
                                 for v in self.videos)
        self.data["started_at"] = previous.get("started_at", self.data["started_at"])
        self.data["resumed_at"] = _now()

    def progress(self) -> BatchProgress:
        vs = self.videos
        return BatchProgress(sum(v["frames"] for v in vs), sum(max(v["frames_total"], v["frames"]) for v in vs),
                             sum(v["status"] == "done" for v in vs), sum(v["status"] == "failed" for v in vs),
                             len(vs), time.perf_counter() - self.t0, self.frames_before)

    def apply(self, event: Event) -> None:
        entry = self.videos[event["index"]]
        kind = event["type"]
        force = kind != "progress"
        if event.get("chunk") is not None:
            apply_chunk_event(entry, event, _now())
        elif event.get("kind") == "merge":
            apply_merge_event(entry, event, _now())
        elif kind == "started":
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
                             loaded_model=result.get("loaded_model", False), finished_at=_now())
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
                               "frames_this_run": p.frames_done - p.frames_before,
                               "elapsed_s": round(p.elapsed_s, 3), "fps": round(p.fps, 3)}
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")
        self.saved_at = time.monotonic()

    def finish(self, status: str) -> None:
        for entry in self.videos:
            if entry["status"] == "running":
                entry["status"] = "pending"
                entry.pop("stage", None)
            for chunk in entry.get("chunks") or []:
                if chunk["status"] == "running":
                    chunk["status"] = "pending"
        self.data["status"] = status
        self.save()
