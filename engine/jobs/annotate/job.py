"""One annotation run: ``prepare()`` checks everything and locks the folder, ``run()`` does the work.

``prepare`` raises StudioError for every user mistake before anything is written (a missing or
truncated video, an unknown model, a folder that is in use, not empty or holds another job).
``run`` creates the folder, writes the job file (the resume fingerprint), runs the pipeline and
writes summary.json last. The folder lock is held from ``prepare`` to the end of ``run`` (or
``close()``); the kernel drops it if the process dies.
"""
from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ...run import overlay
from ...io.cvat import cvat_label_colors
from ...errors import SourceError, StudioError
from ...scales import multiscale_factors, scale_name
from ...run.multiscale import check_model
from ...run.segmenter import Segmenter
from ...io.sources import FRAME_COUNT_SLACK, IMAGE_EXTENSIONS, VideoFileSource, frame_is_readable, refuse_stream
from .folder import CVAT_FILE, OVERLAY_FILE, SUMMARY_FILE, TOOL, OutputFolder
from .items import PipelineCounts
from .pipeline import Pipeline, ProgressCallback
from .plan import (AnnotateOptions, JobPlan, VideoInfo, frame_name, parse_every, parse_formats, parse_opacity,
                   parse_time, select_frames, video_digest)
from .folder import OutputError
from .sinks import CvatSink, MaskSink, OverlaySink, Sink, StatsSink, pick_codec


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


class AnnotateJob:
    """One annotation run: ``prepare()`` checks everything (raises StudioError), ``run()`` works."""

    def __init__(self, options: AnnotateOptions, segmenter: Segmenter | None = None):
        """``segmenter``: an already loaded model named ``options.model`` (batch jobs load it once)."""
        self.opts = options
        self._given_segmenter = segmenter
        self.video = Path(options.video)
        self.out = Path(options.out)
        self.folder = OutputFolder(self.out)
        self.formats = parse_formats(options.formats)
        self.segmenter: Segmenter | None = None
        self.plan: JobPlan | None = None
        self.indices: list[int] = []
        self.prepared = False
        self.resuming = False
        self._contents_checked = False

    # ---- checks -------------------------------------------------------------------------
    def prepare(self) -> "AnnotateJob":
        o = self.opts
        self.every = parse_every(o.every)
        self.scale = scale_name(o.scale)  # validates; "0.5" and 0.5 are "half" (one fingerprint)
        self.multiscale = multiscale_factors(o.multiscale, self.scale)
        self.opacity = parse_opacity(o.opacity)
        if o.resume and o.overwrite:
            raise StudioError("choose one of --resume and --overwrite")
        start, end = parse_time(o.start), parse_time(o.end)

        # the video: exists, is a video, is complete, is not where the outputs go
        refuse_stream(str(self.opts.video))
        if self.video.suffix.lower() in IMAGE_EXTENSIONS:
            raise StudioError(f"{self.video.name} is an image; annotate takes a video file")
        self.folder.check_not_over(self.video)
        with VideoFileSource(self.video) as src:
            self.fps, self.frame_count = src.fps, src.frame_count
            self.width, self.height = src.width, src.height
        if self.frame_count <= 0:
            raise SourceError(f"{self.video.name}: cannot tell how many frames the video has")
        self.indices = select_frames(self.fps, self.frame_count, start, end, self.every)
        probe = min(self.indices[-1], max(self.frame_count - 1 - FRAME_COUNT_SLACK, 0))
        if not frame_is_readable(self.video, probe):
            raise SourceError(f"{self.video.name} is truncated or damaged: frame {probe} of "
                              f"{self.frame_count} cannot be read")

        # the model
        seg = self._given_segmenter or Segmenter.load(o.model, o.models_dir, threads=o.threads)
        if seg.entry.name != o.model:
            raise StudioError(f"the loaded model is {seg.entry.name!r}, the job asks for {o.model!r}")
        self.segmenter = seg
        if self.multiscale:
            check_model(seg)  # before the folder is touched
        sizes = [seg.input_size((self.height, self.width), f) for f in self.multiscale or (self.scale,)]
        self.input_hw = max(sizes, key=lambda s: s[0] * s[1])
        self.palette_rgb = seg.palette_rgb
        self.lut = overlay.color_lut(seg.palette_bgr)
        self.cvat_labels, self.cvat_changed = cvat_label_colors(seg.class_names, self.palette_rgb)
        info = VideoInfo(self.video, self.width, self.height, self.fps, self.frame_count, video_digest(self.video))
        self.plan = JobPlan(info, self.formats, self.indices, self.scale, self.every, self.opacity,
                            seg.entry.name, seg.entry.sha256, tuple(self.input_hw), self.multiscale)

        # the output folder
        self._check_out()
        self.prepared = True
        return self

    def settings(self) -> dict:
        """What the outputs depend on (the resume fingerprint); see JobPlan.settings."""
        return self.plan.settings()

    def _check_out(self) -> None:
        """Lock the folder (a live job's folder is refused, --overwrite included), then check it."""
        folder = self.folder
        folder.check_parents()
        self.resuming = False
        self._contents_checked = False
        try:
            if not folder.path.is_dir():
                return  # created, locked and checked by run()
            folder.lock.acquire(create=False)  # refuses a folder in use; writes nothing
            self._check_contents()
            folder.lock.claim()
        except BaseException:
            folder.lock.release()
            raise

    def _check_contents(self) -> None:
        """A folder with content is replaced only with --overwrite, continued only by the same job."""
        self._contents_checked = True
        if self.folder.has_content() and not self.opts.overwrite:
            if not self.opts.resume:
                raise StudioError(f"output folder {self.out} already exists and is not empty: "
                                  "use --resume to continue it or --overwrite to start again")
            self.folder.check_resumable(self.settings())
            self.resuming = True

    def close(self) -> None:
        """Release the folder lock (run() does this itself; for a job prepared but never run)."""
        self.folder.lock.release()

    def is_complete(self) -> bool:
        """After prepare(): True when ``resume`` finds the job already finished (run() does nothing)."""
        return bool(self.resuming) and self._complete()

    def _complete(self) -> bool:
        return self.folder.complete(self.settings(), self.formats, self.indices)

    def _done_count(self) -> int:
        return self.folder.done_count(self.indices)

    # ---- run -----------------------------------------------------------------------------
    def run(self, progress: ProgressCallback | None = None, cancel: threading.Event | None = None) -> AnnotateResult:
        if not self.prepared:
            self.prepare()
        cancel = cancel or threading.Event()
        t0 = time.perf_counter()
        folder = self.folder
        created = not self.out.exists()
        try:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                folder.lock.claim()  # a job that created the folder at the same moment is refused here
                if not self._contents_checked:  # the folder appeared after prepare()
                    self._check_contents()
                folder.masks.mkdir(exist_ok=True)
            except OSError as exc:
                folder.undo_created(created)
                raise StudioError(f"cannot create output folder {self.out}: {exc.strerror or exc}") from None
            return self._run_locked(progress, cancel, t0, created)
        finally:
            folder.lock.release()

    def _run_locked(self, progress, cancel, t0, created) -> AnnotateResult:
        folder = self.folder
        try:
            if self.opts.overwrite:
                folder.remove_outputs()
                folder.masks.mkdir(exist_ok=True)
            folder.cleanup_temps()
            if self.resuming and self._complete():
                summary = folder.read_summary() or {}
                ov = summary.get("overlay") or {}
                return AnnotateResult(self.out, summary, summary.get("frames", 0), 0, 0.0, ov.get("codec"),
                                      ov.get("codec_name"), already_complete=True, files=folder.files(self.formats))
            folder.write_job(self.settings(), self.formats)
            done = self._done_count() if self.resuming else 0
            return self._pipeline(done, progress, cancel, t0)
        except (OSError, OutputError) as exc:
            folder.cleanup_temps()
            if not self.resuming:
                folder.undo_created(created)
            raise self._disk_error(exc) from None
        except BaseException:
            folder.cleanup_temps()
            if not self.resuming:
                folder.undo_created(created)
            raise

    def _disk_error(self, exc: OSError | OutputError) -> StudioError:
        if isinstance(exc, OSError):
            exc = StudioError(f"cannot write {exc.filename or 'output'}: {exc.strerror or exc}")
        finished = self._done_count() if self.folder.masks.is_dir() else 0
        if finished:
            return StudioError(f"{exc}; the {finished} finished frames are kept: fix this and run again with --resume")
        return StudioError(str(exc))

    def _sinks(self, codec: tuple[str, str] | None, stats: list[StatsSink]) -> list[Sink]:
        """The sinks of the chosen formats (created in the writer thread); the stats sink always runs."""
        folder, seg = self.folder, self.segmenter
        sinks: list[Sink] = [MaskSink(folder, self.palette_rgb)]
        try:
            if codec:
                sinks.append(OverlaySink(folder, codec, self.fps / self.every, (self.width, self.height),
                                         self.opacity, self.lut))
            if "cvat" in self.formats:
                sinks.append(CvatSink(folder, self.cvat_labels))
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
        stats.append(StatsSink(folder, len(self.indices), seg.class_names, self.fps, "stats" in self.formats))
        return sinks + stats

    def _pipeline(self, done: int, progress: ProgressCallback | None, cancel: threading.Event,
                  t0: float) -> AnnotateResult:
        want_overlay = "overlay" in self.formats
        codec = pick_codec(self.out, (self.width, self.height), self.fps / self.every) if want_overlay else None
        stats: list[StatsSink] = []
        pipe = Pipeline(self.plan, self.segmenter, self.folder, lambda: self._sinks(codec, stats), done,
                        needs_pixels_for_kept=want_overlay)
        pipe.run(progress, cancel)
        counts = pipe.counts
        indices = self.indices[:counts.frames]
        areas = stats[0].areas[:counts.frames]
        pipeline_s = time.perf_counter() - pipe.t_start
        summary = self._summary(indices, areas, done, counts, pipeline_s, time.perf_counter() - t0, codec)
        self.folder.write_json(SUMMARY_FILE, summary)
        if "masks" not in self.formats:
            shutil.rmtree(self.folder.masks, ignore_errors=True)
        pipeline_s = time.perf_counter() - pipe.t_start
        pipe.report("done")
        return AnnotateResult(self.out, summary, counts.frames, counts.inferred, pipeline_s,
                              codec[0] if codec else None, codec[1] if codec else None,
                              files=self.folder.files(self.formats))

    def _summary(self, indices: list[int], areas: np.ndarray, resumed_from: int, counts: PipelineCounts,
                 pipeline_s: float, total_s: float, codec: tuple[str, str] | None) -> dict:
        seg = self.segmenter
        entry = seg.entry
        mean = areas.mean(axis=0) if len(areas) else np.zeros(seg.num_classes)
        present = (areas > 0).sum(axis=0) if len(areas) else np.zeros(seg.num_classes, int)
        order = np.argsort(-mean, kind="stable")
        totals = [{"id": int(i), "name": seg.class_names[i], "mean_percent": round(float(mean[i]), 4),
                   "frames_present": int(present[i])} for i in order if present[i] > 0]
        inferred = counts.inferred
        summary = {
            "tool": TOOL,
            "complete": True,
            "video": {"path": str(self.video.resolve()), "width": self.width, "height": self.height,
                      "fps": self.fps, "frames": self.frame_count},
            "model": {"name": entry.name, "variant": entry.variant, "dataset": entry.dataset,
                      "sha256": entry.sha256, "classes": len(entry.classes), "providers": seg.providers},
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
