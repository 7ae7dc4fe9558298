"""The frame pipeline: a reader thread decodes, the calling thread segments, a writer thread feeds the sinks.

Decoding, inference and encoding overlap; two small queues (4 items) bound the memory. The first
error in any stage stops all three and is raised in the calling thread; ``cancel`` stops them
between frames (AnnotateCancelled). Items are :class:`DecodedFrame` and :class:`LabeledFrame`.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from ...errors import SourceError, StudioError
from ...io.indexed_png import read_mask
from ...run.multiscale import segment_multiscale
from ...run.segmenter import Segmenter
from ...io.sources import SelectedFrames, decode_shortfall
from .folder import OutputFolder
from .items import DecodedFrame, LabeledFrame, PipelineCounts, Progress
from .plan import JobPlan
from .sinks import Sink

ProgressCallback = Callable[[Progress], None]
QUEUE_SIZE = 4


class AnnotateCancelled(StudioError):
    """The job was cancelled (GUI Cancel); finished frames are kept for a resume."""


class _Stop(Exception):
    """Another stage failed or the job was cancelled: leave quietly."""


_END = object()


class Pipeline:
    """One pass over the plan's frames; ``done`` leading frames come from masks kept on disk."""

    def __init__(self, plan: JobPlan, segmenter: Segmenter, folder: OutputFolder,
                 make_sinks: Callable[[], list[Sink]], done: int, needs_pixels_for_kept: bool):
        self.plan, self.seg, self.folder = plan, segmenter, folder
        self.make_sinks = make_sinks
        self.done = done
        self.needs_pixels_for_kept = needs_pixels_for_kept
        self.counts = PipelineCounts()
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._in: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._out: queue.Queue = queue.Queue(maxsize=QUEUE_SIZE)
        self._progress: ProgressCallback | None = None
        self.t_start = 0.0

    def report(self, stage: str) -> None:
        if self._progress is not None:
            c = self.counts
            self._progress(Progress(c.done, len(self.plan.indices), c.inferred,
                                    time.perf_counter() - self.t_start, stage))

    # ---- queues that give up when another stage failed ---------------------------------------
    def _put(self, q: queue.Queue, item) -> None:
        while True:
            if self._stop.is_set():
                raise _Stop
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue):
        while True:
            if self._stop.is_set():
                raise _Stop
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue

    def _fail(self, exc: BaseException) -> None:
        self._errors.append(exc)
        self._stop.set()

    # ---- stages ------------------------------------------------------------------------------
    def _kept_mask(self, index: int):
        plan, path = self.plan, self.folder.mask_path(index)
        try:
            mask = read_mask(path)
        except (OSError, ValueError) as exc:
            raise StudioError(f"mask {path} is damaged ({exc}): delete it and resume") from None
        if mask.shape != (plan.video.height, plan.video.width):
            raise StudioError(f"mask {path} has size {mask.shape[::-1]}, "
                              f"not the video's {plan.video.width}x{plan.video.height}: use --overwrite")
        return mask

    def _reader(self) -> None:
        plan, video = self.plan, self.plan.video
        frames = None
        try:
            frames = SelectedFrames(video.path, single_thread=True)
            for n, index in enumerate(plan.indices):
                mask = None
                if n < self.done:
                    mask = self._kept_mask(index)
                    if not self.needs_pixels_for_kept:
                        self._put(self._in, DecodedFrame(n, index, None, None, mask))
                        continue
                image = frames.frame(index)
                if image is None:
                    if not decode_shortfall(index, video.frame_count):
                        break  # the container over-counted its last frames (the one tolerance: sources)
                    raise SourceError(f"{video.path.name} is truncated or damaged: frame {index} of "
                                      f"{video.frame_count} cannot be read")
                prepared = self.seg.prepare(image, plan.input_hw) if mask is None and not plan.multiscale else None
                self._put(self._in, DecodedFrame(n, index, image, prepared, mask))
            self._put(self._in, _END)
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            self._fail(exc)
        finally:
            if frames is not None:
                frames.close()

    def _writer(self) -> None:
        sinks: list[Sink] = []
        finished = False
        try:
            sinks = self.make_sinks()
            written = 0
            while True:
                item = self._get(self._out)
                if item is _END:
                    break
                for sink in sinks:
                    sink.add(item)
                written += 1
                self.counts.done = written
                self.report("frames")
            self.counts.frames = written
            self.report("finishing")
            for sink in sinks:
                sink.finish()
            finished = True
        except _Stop:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            self._fail(exc)
        finally:
            if not finished:
                for sink in sinks:
                    sink.abort()

    def run(self, progress: ProgressCallback | None, cancel: threading.Event) -> float:
        """Process every frame; returns the seconds from the first read to the last file committed."""
        self._progress = progress
        self.t_start = time.perf_counter()
        frame_hw = (self.plan.video.height, self.plan.video.width)
        threads = [threading.Thread(target=self._reader, name="studio-annotate-reader", daemon=True),
                   threading.Thread(target=self._writer, name="studio-annotate-writer", daemon=True)]
        for t in threads:
            t.start()
        try:
            while True:
                if cancel.is_set():
                    raise AnnotateCancelled("cancelled")
                try:
                    item = self._in.get(timeout=0.1)
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    continue
                if item is _END:
                    self._put(self._out, _END)
                    break
                if item.mask is None:
                    labels = (segment_multiscale(self.seg, item.image, self.plan.multiscale).labels
                              if self.plan.multiscale else self.seg.labels(item.prepared, frame_hw))
                    self.counts.inferred += 1
                else:
                    labels = item.mask
                self._put(self._out, LabeledFrame(item.n, item.index, item.image, labels, item.mask is None))
            while threads[1].is_alive():
                if cancel.is_set():
                    raise AnnotateCancelled("cancelled")
                threads[1].join(timeout=0.1)
        except _Stop:
            pass  # a stage failed: its error is raised below
        except BaseException:
            self._stop.set()
            for t in threads:
                t.join()
            raise
        self._stop.set()
        for t in threads:
            t.join()
        if self._errors:
            raise self._errors[0]
        if cancel.is_set():
            raise AnnotateCancelled("cancelled")
        return time.perf_counter() - self.t_start
