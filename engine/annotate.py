"""Annotate a video file: masks, overlay video, per-frame statistics and a CVAT export; resumable.

Qt-free: the CLI (``engine/cli/annotate_cmd.py``) and the GUI dialog (``app/annotate_dialog.py``)
both drive :class:`AnnotateJob` and get progress through a callback.

Layout of the output folder::

    masks/frame_000000.png   indexed (palette) PNG per processed frame: pixel = class id,
                             palette = the model's colours; the name is the source frame number
                             (CVAT's naming of video frames)
    overlay.mp4              class colours blended over the video, at fps / every
    stats.csv                per frame: timestamp and % area of every class
    cvat.zip                 CVAT "Segmentation mask 1.1": labelmap.txt (background first),
                             ImageSets/Segmentation/default.txt, SegmentationClass/frame_*.png
                             (colour masks in the Pascal VOC indexed form, see engine/cvat.py)
    summary.json             model, checksum, settings, frame count, class totals, time taken
    .annotate-job.json       the job's settings, so ``--resume`` can check it continues the same job

Pipeline: a reader thread decodes and resizes frames, the calling thread runs the network, a
writer thread encodes PNGs, the video and the zip, so decoding, inference and encoding overlap.

Safety: every file is written under a ``.tmp-`` name and renamed into place, so an interrupted
run (Ctrl-C, kill -9, disk full) leaves only complete files. ``resume=True`` keeps the masks
before the first missing one and rebuilds overlay.mp4, stats.csv and cvat.zip from them.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from . import overlay
from .cvat import CvatZipWriter, cvat_label_colors
from .errors import SourceError, StudioError
from .indexed_png import encode_indexed_png, read_mask
from .scales import parse_scale
from .segmenter import Segmenter
from .sources import IMAGE_EXTENSIONS, VideoFileSource

FORMATS = ("masks", "overlay", "stats", "cvat")
MASKS_DIR = "masks"
OVERLAY_FILE = "overlay.mp4"
STATS_FILE = "stats.csv"
CVAT_FILE = "cvat.zip"
SUMMARY_FILE = "summary.json"
JOB_FILE = ".annotate-job.json"
TMP_PREFIX = ".tmp-"
OUTPUT_FILES = {"overlay": OVERLAY_FILE, "stats": STATS_FILE, "cvat": CVAT_FILE}
# A container's frame count can be an estimate; a stream this many frames short at the very end is
# accepted (the missing frames do not exist), anything shorter is a truncated file.
FRAME_COUNT_SLACK = 2
CODECS = (("avc1", "H.264"), ("mp4v", "MPEG-4 Part 2"))


class AnnotateCancelled(StudioError):
    """The job was cancelled (GUI Cancel); finished frames are kept for a resume."""


def frame_name(index: int) -> str:
    """CVAT's name of a video frame: ``frame_`` + the source frame number, 6 digits."""
    return f"frame_{index:06d}"


def parse_time(value: str | float | int | None) -> float | None:
    """Seconds from ``12.5``, ``"12.5"``, ``"1:02.5"`` or ``"1:00:02"``; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        try:
            parts = [float(p) for p in str(value).strip().split(":")]
        except ValueError:
            raise StudioError(f"bad time {value!r}: use seconds (12.5) or [hh:]mm:ss") from None
        if not 1 <= len(parts) <= 3:
            raise StudioError(f"bad time {value!r}: use seconds (12.5) or [hh:]mm:ss")
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + part
    if not math.isfinite(seconds) or seconds < 0:
        raise StudioError(f"bad time {value!r}: must be a non-negative number of seconds")
    return seconds


def parse_formats(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The chosen outputs from ``"masks,stats"`` or a list, in FORMATS order; None means all."""
    if value is None:
        return FORMATS
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [i.strip().lower() for i in items if i and i.strip()]
    unknown = [i for i in items if i not in FORMATS]
    if unknown or not items:
        raise StudioError(f"unknown format {', '.join(unknown) or '(none)'}: choose from {','.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in items)


# --------------------------------------------------------------------------------------------
# Small helpers: atomic files, codec probe
# --------------------------------------------------------------------------------------------
def _write_all(fh, data: bytes) -> None:
    """The one place file bytes are written (tests replace it to simulate a full disk)."""
    fh.write(data)


def _tmp(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed into place."""
    return path.with_name(TMP_PREFIX + path.name)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``.tmp-<name>`` next to ``path``, then rename it over ``path``."""
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as fh:
            _write_all(fh, data)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        if exc.filename is None:
            exc.filename = str(path)
        raise
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(path: Path) -> None:
    """Remove a file if it is there; cleanup must never raise over the error that caused it."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass


def _io_error(exc: OSError, what: Path | str | None = None) -> StudioError:
    reason = exc.strerror or str(exc)
    where = what or exc.filename or "output"
    return StudioError(f"cannot write {where}: {reason}")


def open_capture(path: Path | str) -> cv2.VideoCapture:
    """A capture with a single-threaded decoder: the pipeline has its own threads, and on a
    small machine the decoder's extra threads only compete with inference (measured: less CPU
    per frame). Falls back to OpenCV's default backend."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not cap.isOpened():
        cap.release()
        cap = cv2.VideoCapture(str(path))
    return cap


_codec_cache: dict[tuple[int, int], tuple[str, str]] = {}


def pick_codec(folder: Path, size: tuple[int, int], fps: float) -> tuple[str, str]:
    """(fourcc, name): H.264 ('avc1') when this OpenCV build can really write it, else 'mp4v'.

    Tested by opening a writer on a scratch file in ``folder`` and writing one frame.
    """
    w, h = size
    if (w, h) in _codec_cache:
        return _codec_cache[(w, h)]
    probe = folder / f"{TMP_PREFIX}codec-probe.mp4"
    chosen = CODECS[-1]
    old_level = None
    try:
        old_level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except Exception:  # noqa: BLE001 - logging control is optional
        pass
    try:
        for fourcc, name in CODECS[:-1]:
            writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
            try:
                if not writer.isOpened():
                    continue
                writer.write(np.zeros((h, w, 3), np.uint8))
            finally:
                writer.release()
            ok = probe.is_file() and probe.stat().st_size > 0
            if ok:
                cap = cv2.VideoCapture(str(probe))
                ok = cap.isOpened() and cap.read()[0]
                cap.release()
            _unlink(probe)
            if ok:
                chosen = (fourcc, name)
                break
    finally:
        _unlink(probe)
        if old_level is not None:
            cv2.utils.logging.setLogLevel(old_level)
    _codec_cache[(w, h)] = chosen
    return chosen


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------
@dataclass
class AnnotateOptions:
    video: Path | str
    model: str
    out: Path | str
    models_dir: Path | str | None = None
    scale: str | float = "full"
    every: int = 1
    start: float | str | None = None  # seconds (or [hh:]mm:ss)
    end: float | str | None = None
    formats: tuple[str, ...] | str = FORMATS
    opacity: float = 0.5
    resume: bool = False
    overwrite: bool = False
    threads: int | None = None


@dataclass
class Progress:
    done: int  # frames finished (all their outputs written)
    total: int
    inferred: int  # frames segmented by the network in this run
    elapsed_s: float
    stage: str = "frames"  # "frames", "finishing", "done"

    @property
    def fps(self) -> float:
        return self.inferred / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (self.total - self.done) / rate if rate > 0 else None


@dataclass
class AnnotateResult:
    out_dir: Path
    summary: dict
    frames: int  # frames in the output
    inferred: int  # frames segmented in this run
    seconds: float  # wall time of the frame pipeline (reading to last file renamed)
    codec: str | None  # fourcc of overlay.mp4, None without overlay
    codec_name: str | None
    already_complete: bool = False
    files: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.inferred / self.seconds if self.seconds > 0 else 0.0


ProgressCallback = Callable[[Progress], None]

_END = object()


class _Stop(Exception):
    pass


class AnnotateJob:
    """One annotation run: ``prepare()`` checks everything (raises StudioError), ``run()`` works."""

    def __init__(self, options: AnnotateOptions):
        self.opts = options
        self.video = Path(options.video)
        self.out = Path(options.out)
        self.formats = parse_formats(options.formats)
        self.segmenter: Segmenter | None = None
        self.indices: list[int] = []
        self.prepared = False
        self._created_out = False

    # ---- checks -------------------------------------------------------------------------
    def prepare(self) -> "AnnotateJob":
        o = self.opts
        if int(o.every) < 1:
            raise StudioError(f"--every must be 1 or more (got {o.every})")
        self.every = int(o.every)
        parse_scale(o.scale)  # validates
        self.scale = o.scale
        if not 0.0 <= float(o.opacity) <= 1.0:
            raise StudioError(f"opacity {o.opacity} is out of range (0..1)")
        self.opacity = float(o.opacity)
        if o.resume and o.overwrite:
            raise StudioError("choose one of --resume and --overwrite")
        start, end = parse_time(o.start), parse_time(o.end)

        # the video: exists, is a video, is complete
        if self.video.suffix.lower() in IMAGE_EXTENSIONS:
            raise StudioError(f"{self.video.name} is an image; annotate takes a video file")
        with VideoFileSource(self.video) as src:
            self.fps, self.frame_count = src.fps, src.frame_count
            self.width, self.height = src.width, src.height
        if self.frame_count <= 0:
            raise SourceError(f"{self.video.name}: cannot tell how many frames the video has")
        first = int(round((start or 0.0) * self.fps))
        stop = self.frame_count if end is None else min(self.frame_count, int(round(end * self.fps)))
        if end is not None and start is not None and end <= start:
            raise StudioError(f"--end ({end:g} s) must be after --start ({start:g} s)")
        self.indices = list(range(first, stop, self.every))
        if not self.indices:
            length = self.frame_count / self.fps
            raise StudioError(f"no frames selected: the video is {length:.2f} s long ({self.frame_count} frames)")
        self._check_readable(self.indices[-1])

        # the model
        self.segmenter = Segmenter.load(o.model, o.models_dir, threads=o.threads)
        self.input_hw = self.segmenter.input_size((self.height, self.width), self.scale)
        self.palette_rgb = self.segmenter.palette_rgb
        self.lut = overlay.color_lut(self.segmenter.palette_bgr)
        self.cvat_labels, self.cvat_changed = cvat_label_colors(self.segmenter.class_names, self.palette_rgb)

        # the output folder
        self._check_out()
        self.prepared = True
        return self

    def _check_readable(self, last: int) -> None:
        """A truncated file often still opens and reports its full length: read the last frame needed."""
        probe = min(last, max(self.frame_count - 1 - FRAME_COUNT_SLACK, 0))
        cap = cv2.VideoCapture(str(self.video))
        try:
            if probe > 0:
                cap.set(cv2.CAP_PROP_POS_FRAMES, probe)
            ok = cap.read()[0]
        finally:
            cap.release()
        if not ok:
            raise SourceError(f"{self.video.name} is truncated or damaged: frame {probe} of {self.frame_count} cannot be read")

    def settings(self) -> dict:
        """What the outputs depend on; a resume must match these."""
        entry = self.segmenter.entry
        return {
            "video": self.video.name,
            "video_size": [self.width, self.height],
            "video_frames": self.frame_count,
            "fps": self.fps,
            "model": entry.name,
            "sha256": entry.sha256,
            "scale": self.scale,
            "input_size": list(self.input_hw),
            "every": self.every,
            "first_frame": self.indices[0],
            "last_frame": self.indices[-1],
            "opacity": self.opacity,
        }

    def _check_out(self) -> None:
        out = self.out
        for parent in [out, *out.parents]:
            if parent.exists() and not parent.is_dir():
                raise StudioError(f"cannot use output folder {out}: {parent} is a file")
            if parent.exists():
                break
        self.resuming = False
        self.saved_settings = None
        if out.is_dir() and any(out.iterdir()):
            if self.opts.overwrite:
                return
            if not self.opts.resume:
                raise StudioError(f"output folder {out} already exists and is not empty: "
                                  "use --resume to continue it or --overwrite to start again")
            job = out / JOB_FILE
            if not job.is_file():
                raise StudioError(f"{out} does not hold an annotate job to resume (no {JOB_FILE}); "
                                  "use --overwrite to start again or choose another folder")
            try:
                saved = json.loads(job.read_text())
            except (OSError, ValueError) as exc:
                raise StudioError(f"cannot read {job}: {exc}") from None
            mine = self.settings()
            diff = [k for k in mine if saved.get("settings", {}).get(k) != mine[k]]
            if diff:
                k = diff[0]
                raise StudioError(f"{out} was started with other settings ({k}: {saved['settings'].get(k)!r}, "
                                  f"now {mine[k]!r}); use --overwrite to start again")
            self.resuming = True
            self.saved_settings = saved

    # ---- state of an existing folder ---------------------------------------------------
    def _mask_path(self, index: int) -> Path:
        return self.out / MASKS_DIR / f"{frame_name(index)}.png"

    def _done_count(self) -> int:
        """Frames before the first missing mask."""
        masks = self.out / MASKS_DIR
        have = set(os.listdir(masks)) if masks.is_dir() else set()
        n = 0
        for index in self.indices:
            if f"{frame_name(index)}.png" not in have:
                break
            n += 1
        return n

    def _complete(self) -> bool:
        summary = self.out / SUMMARY_FILE
        if not summary.is_file():
            return False
        try:
            data = json.loads(summary.read_text())
        except (OSError, ValueError):
            return False
        if not data.get("complete") or data.get("settings") != self.settings():
            return False
        if "masks" in self.formats and self._done_count() < data.get("frames", len(self.indices)):
            return False
        return all((self.out / OUTPUT_FILES[f]).is_file() for f in self.formats if f in OUTPUT_FILES)

    def is_complete(self) -> bool:
        """After prepare(): True when ``resume`` finds the job already finished (run() does nothing)."""
        return bool(self.resuming) and self._complete()

    def _cleanup_temps(self) -> None:
        for folder in (self.out, self.out / MASKS_DIR):
            if folder.is_dir():
                for name in os.listdir(folder):
                    if name.startswith(TMP_PREFIX):
                        _unlink(folder / name)

    def _remove_outputs(self) -> None:
        """--overwrite: remove what a previous job wrote (only our own names)."""
        masks = self.out / MASKS_DIR
        if masks.is_dir():
            shutil.rmtree(masks)
        for name in (OVERLAY_FILE, STATS_FILE, CVAT_FILE, SUMMARY_FILE, JOB_FILE):
            _unlink(self.out / name)
        self._cleanup_temps()

    # ---- run -----------------------------------------------------------------------------
    def run(self, progress: ProgressCallback | None = None, cancel: threading.Event | None = None) -> AnnotateResult:
        if not self.prepared:
            self.prepare()
        cancel = cancel or threading.Event()
        t0 = time.perf_counter()
        self._created_out = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / MASKS_DIR).mkdir(exist_ok=True)
        except OSError as exc:
            self._undo_created()
            raise StudioError(f"cannot create output folder {self.out}: {exc.strerror or exc}") from None
        try:
            if self.opts.overwrite:
                self._remove_outputs()
                (self.out / MASKS_DIR).mkdir(exist_ok=True)
            self._cleanup_temps()
            if self.resuming and self._complete():
                summary = json.loads((self.out / SUMMARY_FILE).read_text())
                return AnnotateResult(self.out, summary, summary.get("frames", 0), 0, 0.0,
                                      (summary.get("overlay") or {}).get("codec"),
                                      (summary.get("overlay") or {}).get("codec_name"), already_complete=True,
                                      files=self._files())
            self._write_job_file()
            done = self._done_count() if self.resuming else 0
            return self._pipeline(done, progress, cancel, t0)
        except OSError as exc:
            self._cleanup_temps()
            self._undo_created()
            raise self._disk_error(exc) from None
        except BaseException:
            self._cleanup_temps()
            self._undo_created()
            raise

    def _disk_error(self, exc: OSError) -> StudioError:
        err = _io_error(exc, exc.filename)
        finished = self._done_count() if (self.out / MASKS_DIR).is_dir() else 0
        if finished:
            return StudioError(f"{err}; the {finished} finished frames are kept: fix this and run again with --resume")
        return err

    def _undo_created(self) -> None:
        """A new run that finished no frame leaves nothing behind (the folder too, if it made it)."""
        if self.resuming or not self.out.is_dir():
            return
        masks = self.out / MASKS_DIR
        if masks.is_dir() and any(masks.iterdir()):
            return
        _unlink(self.out / JOB_FILE)
        for path in (masks, self.out) if self._created_out else (masks,):
            try:
                path.rmdir()
            except OSError:
                pass

    def _write_job_file(self) -> None:
        data = {"tool": "topformer-studio annotate", "settings": self.settings(), "formats": list(self.formats)}
        atomic_write_bytes(self.out / JOB_FILE, (json.dumps(data, indent=1) + "\n").encode())

    def _files(self) -> list[str]:
        files = []
        if "masks" in self.formats:
            files.append(f"{MASKS_DIR}/")
        files += [OUTPUT_FILES[f] for f in self.formats if f in OUTPUT_FILES]
        return files + [SUMMARY_FILE]

    def _pipeline(self, done: int, progress: ProgressCallback | None, cancel: threading.Event, t0: float) -> AnnotateResult:
        seg = self.segmenter
        total = len(self.indices)
        want_overlay = "overlay" in self.formats
        want_cvat = "cvat" in self.formats
        stop = threading.Event()
        errors: list[BaseException] = []
        in_q: queue.Queue = queue.Queue(maxsize=4)
        out_q: queue.Queue = queue.Queue(maxsize=4)
        codec = pick_codec(self.out, (self.width, self.height), self.fps / self.every) if want_overlay else None
        counts = {"done": 0, "inferred": 0}
        areas = np.zeros((total, seg.num_classes), np.float64)
        t_start = time.perf_counter()

        def report(stage: str) -> None:
            if progress is not None:
                progress(Progress(counts["done"], total, counts["inferred"], time.perf_counter() - t_start, stage))

        def put(q: queue.Queue, item) -> None:
            while True:
                if stop.is_set():
                    raise _Stop
                try:
                    q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def get(q: queue.Queue):
            while True:
                if stop.is_set():
                    raise _Stop
                try:
                    return q.get(timeout=0.1)
                except queue.Empty:
                    continue

        def reader() -> None:
            cap = None
            try:
                need_frames_for_done = want_overlay
                cap = open_capture(self.video)
                pos = 0  # index of the frame the next grab() returns
                for n, index in enumerate(self.indices):
                    mask = None
                    if n < done:
                        try:
                            mask = read_mask(self._mask_path(index))
                        except (OSError, ValueError) as exc:
                            raise StudioError(f"mask {self._mask_path(index)} is damaged ({exc}): delete it and resume") from None
                        if mask.shape != (self.height, self.width):
                            raise StudioError(f"mask {self._mask_path(index)} has size {mask.shape[::-1]}, "
                                              f"not the video's {self.width}x{self.height}: use --overwrite")
                        if not need_frames_for_done:
                            put(in_q, (n, index, None, None, mask))
                            continue
                    if index - pos > 100:  # far ahead: seek instead of decoding everything between
                        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                        pos = index
                    while pos < index:
                        if not cap.grab():
                            break
                        pos += 1
                    ok = pos == index and cap.grab()
                    image = cap.retrieve()[1] if ok else None
                    if image is None:
                        if index >= self.frame_count - FRAME_COUNT_SLACK:
                            break  # the container over-counted its last frames
                        raise SourceError(f"{self.video.name} is truncated or damaged: frame {index} of "
                                          f"{self.frame_count} cannot be read")
                    pos += 1
                    prepared = seg.prepare(image, self.input_hw) if mask is None else None
                    put(in_q, (n, index, image, prepared, mask))
                put(in_q, _END)
            except _Stop:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                errors.append(exc)
                stop.set()
            finally:
                if cap is not None:
                    cap.release()

        def writer() -> None:
            video = cvat_zip = None
            tmp_video = _tmp(self.out / OVERLAY_FILE)
            tmp_zip = _tmp(self.out / CVAT_FILE)
            try:
                if want_overlay:
                    video = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*codec[0]), self.fps / self.every,
                                            (self.width, self.height))
                    if not video.isOpened():
                        raise StudioError(f"cannot write {self.out / OVERLAY_FILE} (OpenCV video writer failed to open)")
                if want_cvat:
                    cvat_zip = CvatZipWriter(tmp_zip, self.cvat_labels)
                written = 0
                while True:
                    item = get(out_q)
                    if item is _END:
                        break
                    n, index, image, labels, is_new = item
                    if is_new:
                        atomic_write_bytes(self._mask_path(index), encode_indexed_png(labels, self.palette_rgb))
                    areas[n] = overlay.class_areas(labels, seg.num_classes)
                    if video is not None:
                        video.write(overlay.blend(image, labels, opacity=self.opacity, lut=self.lut))
                    if cvat_zip is not None:
                        cvat_zip.add(frame_name(index), labels)
                    written += 1
                    counts["done"] = written
                    report("frames")
                counts["frames"] = written
                report("finishing")
                if video is not None:
                    video.release()
                    video = None
                    check = cv2.VideoCapture(str(tmp_video))
                    got = int(check.get(cv2.CAP_PROP_FRAME_COUNT)) if check.isOpened() else -1
                    check.release()
                    if got != written:
                        raise StudioError(f"cannot write {self.out / OVERLAY_FILE}: the video has {got} of {written} "
                                          "frames (disk full?)")
                if cvat_zip is not None:
                    cvat_zip.finish()
                    cvat_zip = None
                if want_overlay:
                    os.replace(tmp_video, self.out / OVERLAY_FILE)
                if want_cvat:
                    os.replace(tmp_zip, self.out / CVAT_FILE)
            except _Stop:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                errors.append(exc)
                stop.set()
            finally:
                if video is not None:
                    video.release()
                if cvat_zip is not None:
                    cvat_zip.close()

        threads = [threading.Thread(target=reader, name="studio-annotate-reader", daemon=True),
                   threading.Thread(target=writer, name="studio-annotate-writer", daemon=True)]
        for t in threads:
            t.start()
        try:
            while True:
                if cancel.is_set():
                    raise AnnotateCancelled("cancelled")
                try:
                    item = in_q.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        break
                    continue
                if item is _END:
                    put(out_q, _END)
                    break
                n, index, image, prepared, mask = item
                if mask is None:
                    labels = seg.labels(prepared, (self.height, self.width))
                    counts["inferred"] += 1
                else:
                    labels = mask
                put(out_q, (n, index, image, labels, mask is None))
            while threads[1].is_alive():
                if cancel.is_set():
                    raise AnnotateCancelled("cancelled")
                threads[1].join(timeout=0.1)
        except _Stop:
            pass  # a worker failed: its error is raised below
        except BaseException:
            stop.set()
            for t in threads:
                t.join()
            raise
        stop.set()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        if cancel.is_set():
            raise AnnotateCancelled("cancelled")

        frames = counts.get("frames", 0)
        indices = self.indices[:frames]
        areas = areas[:frames]
        if "stats" in self.formats:
            atomic_write_bytes(self.out / STATS_FILE, self._stats_csv(indices, areas))
        pipeline_s = time.perf_counter() - t_start
        summary = self._summary(indices, areas, done, counts["inferred"], pipeline_s, time.perf_counter() - t0, codec)
        atomic_write_bytes(self.out / SUMMARY_FILE, (json.dumps(summary, indent=1) + "\n").encode())
        if "masks" not in self.formats:
            shutil.rmtree(self.out / MASKS_DIR, ignore_errors=True)
        pipeline_s = time.perf_counter() - t_start
        report("done")
        return AnnotateResult(self.out, summary, frames, counts["inferred"], pipeline_s,
                              codec[0] if codec else None, codec[1] if codec else None, files=self._files())

    # ---- outputs -------------------------------------------------------------------------
    def _stats_csv(self, indices: list[int], areas: np.ndarray) -> bytes:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["frame", "name", "timestamp_s", *self.segmenter.class_names])
        for index, row in zip(indices, areas):
            w.writerow([index, frame_name(index), f"{index / self.fps:.3f}", *(f"{v:.4f}" for v in row)])
        return buf.getvalue().encode()

    def _summary(self, indices, areas, resumed_from, inferred, pipeline_s, total_s, codec) -> dict:
        entry = self.segmenter.entry
        mean = areas.mean(axis=0) if len(areas) else np.zeros(self.segmenter.num_classes)
        present = (areas > 0).sum(axis=0) if len(areas) else np.zeros(self.segmenter.num_classes, int)
        order = np.argsort(-mean, kind="stable")
        totals = [{"id": int(i), "name": self.segmenter.class_names[i], "mean_percent": round(float(mean[i]), 4),
                   "frames_present": int(present[i])} for i in order if present[i] > 0]
        summary = {
            "tool": "topformer-studio annotate",
            "complete": True,
            "video": {"path": str(self.video.resolve()), "width": self.width, "height": self.height,
                      "fps": self.fps, "frames": self.frame_count},
            "model": {"name": entry.name, "variant": entry.variant, "dataset": entry.dataset,
                      "sha256": entry.sha256, "classes": len(entry.classes), "providers": self.segmenter.providers},
            "settings": self.settings(),
            "formats": list(self.formats),
            "frames": len(indices),
            "first_frame": frame_name(indices[0]) if indices else None,
            "last_frame": frame_name(indices[-1]) if indices else None,
            "class_totals": totals,
            "run": {"finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "resumed_from_frame": resumed_from, "inferred_frames": inferred,
                    "pipeline_s": round(pipeline_s, 3), "time_s": round(total_s, 3),
                    "fps": round(inferred / pipeline_s, 3) if pipeline_s > 0 else None},
        }
        if codec:
            summary["overlay"] = {"file": OVERLAY_FILE, "codec": codec[0], "codec_name": codec[1],
                                  "h264": codec[0] == "avc1", "fps": self.fps / self.every, "opacity": self.opacity}
        if "cvat" in self.formats:
            summary["cvat"] = {"file": CVAT_FILE, "format": "Segmentation mask 1.1",
                               "label_changes": self.cvat_changed}
        return summary


def annotate(options: AnnotateOptions, progress: ProgressCallback | None = None,
             cancel: threading.Event | None = None) -> AnnotateResult:
    """prepare() + run() in one call."""
    return AnnotateJob(options).prepare().run(progress, cancel)


# --------------------------------------------------------------------------------------------
# The engine's own speed on the same frames, for the throughput ratio
# --------------------------------------------------------------------------------------------
def sample_frames(video: Path | str, indices: list[int], count: int) -> list[np.ndarray]:
    """Up to ``count`` of the selected frames, spread over the selection (decoded sequentially)."""
    if not indices:
        return []
    step = max(1, len(indices) // max(count, 1))
    wanted = set(indices[::step][:count])
    frames = []
    cap = cv2.VideoCapture(str(video))
    try:
        pos = 0
        for index in sorted(wanted):
            while pos < index and cap.grab():
                pos += 1
            ok, image = cap.read()
            if not ok:
                break
            pos += 1
            frames.append(image)
    finally:
        cap.release()
    return frames


def segment_fps(segmenter: Segmenter, frames: list[np.ndarray], scale, min_seconds: float = 0.0) -> tuple[int, float]:
    """(calls, seconds) of ``Segmenter.segment`` alone over ``frames`` after one warm-up call;
    the frames are cycled until ``min_seconds`` have passed (short windows are noisy on a busy machine)."""
    if not frames:
        return 0, 0.0
    segmenter.segment(frames[0], scale)
    calls = 0
    t = time.perf_counter()
    while True:
        for frame in frames:
            segmenter.segment(frame, scale)
        calls += len(frames)
        seconds = time.perf_counter() - t
        if seconds >= min_seconds:
            return calls, seconds
