"""Time ranges of one long video on several workers (``--chunk-seconds S``), merged in frame order.

Why chunks produce only masks: an encoder's output cannot be concatenated byte-identically, but
a mask is a pure function of its frame. So each chunk is an ordinary :class:`AnnotateJob` over a
time range (``start``/``end``, exactly the frames a single job would take there) with
``formats=("masks",)``, in its own folder ``out/.chunks/<video>/<first>-<last>/`` (own lock, own
job file: a killed chunk resumes like any job). The merge moves every chunk's masks into the
video's folder, writes the whole job's fingerprint and runs the whole job with ``resume=True``:
annotate's resume keeps the masks and rebuilds overlay.mp4, stats.csv, cvat.zip and summary.json
from them in frame order, so the folder is byte for byte what a single run writes (summary.json's
``run`` section says what the merge did: it inferred no frame). The merge is idempotent: a
killed merge is simply run again. The driver queues it when the video's last chunk is done.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

from . import annotate as ann
from .batch_task import EventCallback, progress_sender, worker_segmenter
from ..errors import StudioError
from ..io.sources import VideoFileSource

CHUNKS_DIR = ".chunks"


def plan_chunks(video: Path, seconds: float, start, end, every: int) -> list[dict] | None:
    """The chunks of ``video`` (batch.json entries), or None when it is not split: it fits in one
    chunk, or it cannot be read (its whole-video task then fails with the job's own reason).

    Boundaries are source frame numbers of the job's own selection, passed back as times
    ``index / fps`` (which the job rounds back to the same index), so the chunks' frames are
    exactly the single job's frames, ``--every`` included."""
    try:
        with VideoFileSource(video) as src:
            fps, count = src.fps, src.frame_count
        indices = ann.select_frames(fps, count, ann.parse_time(start), ann.parse_time(end), int(every))
    except Exception:  # noqa: BLE001 - not split; the whole-video task reports the job's own reason
        return None
    if fps <= 0:
        return None
    per = max(1, int(round(float(seconds) * fps / int(every))))
    if len(indices) <= per:
        return None
    groups = [indices[i:i + per] for i in range(0, len(indices), per)]
    chunks = []
    for k, group in enumerate(groups):
        last = k == len(groups) - 1
        chunks.append({"first_frame": group[0], "last_frame": group[-1], "start_s": group[0] / fps,
                       "end_s": ann.parse_time(end) if last else groups[k + 1][0] / fps,
                       "out": f"{group[0]:06d}-{group[-1]:06d}", "status": "pending", "frames": 0,
                       "frames_total": len(group), "attempts": 0})
    return chunks


def chunk_folder(out: Path, entry: dict, chunk: dict) -> Path:
    return out / CHUNKS_DIR / entry["out"] / chunk["out"]


def chunk_task(out: Path, index: int, entry: dict, k: int, job_options: dict, mode: str,
               kill_at: int | None) -> dict:
    chunk = entry["chunks"][k]
    options = {**job_options, "start": chunk["start_s"], "end": chunk["end_s"], "formats": ("masks",)}
    return {"index": index, "chunk": k, "video": entry["input"], "out": str(chunk_folder(out, entry, chunk)),
            "options": options, "mode": mode, "attempt": 1, "kill_at": kill_at}


def merge_task(out: Path, index: int, entry: dict, job_options: dict, mode: str) -> dict:
    return {"index": index, "kind": "merge", "video": entry["input"], "out": str(out / entry["out"]),
            "options": job_options, "chunks": [str(chunk_folder(out, entry, c)) for c in entry["chunks"]],
            "chunks_dir": str(out / CHUNKS_DIR / entry["out"]), "mode": mode, "attempt": 1}


def merge_chunks(task: dict, emit: EventCallback, cancel: threading.Event | None) -> dict:
    """In a worker: the chunks' masks into the video's folder, then the whole job resumed from them."""
    options = task["options"]
    segmenter = worker_segmenter(options)
    t0 = time.perf_counter()
    probe = ann.AnnotateJob(ann.AnnotateOptions(video=task["video"], out=task["out"], overwrite=True, **options),
                            segmenter=segmenter).prepare()  # every check, and the lock if the folder exists
    try:
        folder, settings = probe.folder, probe.settings()
        if folder.path.is_dir():
            fresh = task.get("mode") == "overwrite" and task.get("attempt", 1) == 1
            saved = folder.read_job().get("settings") if (folder.path / ann.JOB_FILE).is_file() else None
            if fresh or saved != settings:  # --overwrite, or another job's outputs: only our names go
                folder.remove_outputs()
        try:
            folder.masks.mkdir(parents=True, exist_ok=True)
            folder.write_job(settings, probe.formats)
            for chunk in task["chunks"]:
                masks = Path(chunk) / ann.MASKS_DIR
                if masks.is_dir():
                    for path in sorted(masks.glob("frame_*.png")):
                        os.replace(path, folder.masks / path.name)  # same file system: a rename
        except OSError as exc:
            raise StudioError(f"cannot merge chunks into {folder.path}: {exc.strerror or exc}") from None
    finally:
        probe.close()
    job = ann.AnnotateJob(ann.AnnotateOptions(video=task["video"], out=task["out"], resume=True, **options),
                          segmenter=segmenter).prepare()
    emit({"type": "started", "index": task["index"], "total": len(job.indices), "pid": os.getpid()})
    result = job.run(progress_sender(task, emit), cancel)
    shutil.rmtree(task["chunks_dir"], ignore_errors=True)
    try:
        Path(task["chunks_dir"]).parent.rmdir()  # out/.chunks, once no video uses it
    except OSError:
        pass
    return {"status": "done", "frames": result.frames, "inferred": result.inferred,
            "seconds": round(time.perf_counter() - t0, 3), "loaded_model": False}


# --------------------------------------------------------------------------------------------
# batch.json: a chunked video's record (called by BatchState.apply)
# --------------------------------------------------------------------------------------------
def apply_chunk_event(entry: dict, event: dict, now: str) -> None:
    """A chunk's event: the chunk's record, then the video's frames (the sum of its chunks)."""
    k = event["chunk"]
    chunk = entry["chunks"][k]
    kind = event["type"]
    if kind == "started":
        chunk.update(status="running", frames_total=event["total"], attempts=chunk.get("attempts", 0) + 1)
        if entry["status"] == "pending":
            entry.update(status="running", started_at=now)
    elif kind == "progress":
        chunk.update(frames=event["done"])
    elif kind == "retry":
        chunk["last_error"] = event["reason"]
    elif kind == "finished":
        result = event["result"]
        if result["status"] == "done":
            chunk.update(status="done", frames=result["frames"], inferred=result["inferred"],
                         seconds=result["seconds"], fps=result["fps"], loaded_model=result.get("loaded_model", False))
        elif result["status"] == "failed":
            chunk.update(status="failed", reason=result["reason"])
            entry.update(status="failed", finished_at=now,
                         reason=f"chunk {k + 1} of {len(entry['chunks'])} (frames {chunk['first_frame']}-"
                                f"{chunk['last_frame']}): {result['reason']}")
        else:
            chunk["status"] = "pending"
    entry["frames"] = sum(c["frames"] for c in entry["chunks"])


def apply_merge_event(entry: dict, event: dict, now: str) -> None:
    """The merge's event; its frame progress is not counted again (the chunks did those frames)."""
    kind = event["type"]
    if kind == "started":
        entry.update(status="running", stage="merging", attempts=entry.get("attempts", 0) + 1)
    elif kind == "retry":
        entry["last_error"] = event["reason"]
    elif kind == "finished":
        result = event["result"]
        entry.pop("stage", None)
        if result["status"] == "done":
            chunks = entry["chunks"]
            seconds = round(sum(c.get("seconds", 0.0) for c in chunks) + result["seconds"], 3)
            entry.update(status="done", frames=result["frames"], frames_total=result["frames"],
                         inferred=sum(c.get("inferred", 0) for c in chunks), seconds=seconds,
                         fps=round(result["frames"] / seconds, 3) if seconds > 0 else 0.0,
                         merge_seconds=result["seconds"],
                         loaded_model=any(c.get("loaded_model") for c in chunks), finished_at=now)
            entry.pop("reason", None)
        elif result["status"] == "failed":
            entry.update(status="failed", reason=f"merging chunks: {result['reason']}", finished_at=now)
        else:
            entry["status"] = "pending"


def adopt_chunks(entry: dict, before: dict) -> None:
    """--resume: keep the finished chunks of an earlier run whose boundaries are the same."""
    old = {(c["first_frame"], c["last_frame"]): c for c in before.get("chunks") or []}
    for chunk in entry.get("chunks") or []:
        prev = old.get((chunk["first_frame"], chunk["last_frame"]))
        if prev is None:
            continue
        if prev.get("status") == "done":
            chunk.update(prev)
        else:
            chunk["attempts"] = prev.get("attempts", 0)
    if entry.get("chunks"):
        entry["frames"] = sum(c["frames"] for c in entry["chunks"])
