"""The compare window's worker: every pane segments the same frame, off the UI thread.

The reader thread (frame_reader.FrameReader) puts frames into a one-frame LatestSlot; the
inference thread here takes the newest frame and runs every pane on it one after another
(engine.jobs.compare.PaneSet), so a displayed set always holds one frame index. On a live camera
the frames that arrive while a set is computed are replaced in the slot: all panes skip to
the newest shared frame together, and each pane counts what it skipped. The UI thread only
paints: ``set_ready`` is emitted at most once until ``take_set()`` is called.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from engine.run import overlay
from engine.jobs.compare import PaneSet, PaneSpec
from engine.io.sources import open_source

from ..playback.frame_reader import FrameReader, SourceInfo
from ..playback.frame_slot import LatestSlot
from ..measure.stats import PipelineStats, RateMeter
from ..playback.worker import fit_size, to_qimage


@dataclass
class PaneFrame:
    """What one pane shows for one set (image is None when the pane's model failed)."""

    spec: PaneSpec
    image: QImage | None
    frame_index: int
    ms: float
    ms_median: float
    fps: float  # what this pane's model alone reaches at its median latency
    agreement_pct: float  # over the last frames, against the reference pane
    miou_pct: float
    frame_agreement_pct: float  # this frame only
    skipped: int  # frames this pane never saw (all panes skip together)
    error: str = ""
    accuracy_miou: float | None = None  # manifest, 0..1
    accuracy_scale: str = ""  # scale the manifest's accuracy was measured at
    accuracy_long_side: int | None = None  # network input long side it was measured at, if known
    input_hw: tuple[int, int] | None = None  # this pane's network input
    unseen: tuple[float, str, bool] | None = None  # mIoU 0..1, drive, estimate: on a drive never trained on
    is_reference: bool = False
    comparable: bool = True  # same classes as the reference (else agreement means nothing)


@dataclass
class CompareSet:
    frame_index: int
    panes: list[PaneFrame]
    source: SourceInfo
    set_ms: float  # all panes of this frame, wall clock
    sets_fps: float  # sets shown per second, measured
    frame_hw: tuple[int, int]
    created_at: float = field(default_factory=time.monotonic)


class CompareWorker(QObject):
    set_ready = Signal()  # a CompareSet waits in take_set()
    pane_failed = Signal(int, str)  # pane index, message
    source_opened = Signal(object)  # SourceInfo
    source_failed = Signal(str)
    source_ended = Signal()

    def __init__(self, specs: list[PaneSpec], models_dir: Path | str | None = None, errors: list[str] | None = None,
                 opener=open_source, opacity: float = 0.5, parent: QObject | None = None):
        super().__init__(parent)
        self.specs = list(specs)
        self._errors = list(errors or [""] * len(self.specs))
        self.models_dir = models_dir
        self.opacity = opacity
        self.stats = PipelineStats()
        self._slot = LatestSlot()
        self.reader = FrameReader(self._slot, self.stats, on_opened=self.source_opened.emit,
                                  on_error=self.source_failed.emit, on_ended=self.source_ended.emit, opener=opener)
        self.panes: PaneSet | None = None
        self._render_wh = (640, 360)
        self._lock = threading.Lock()
        self._set: CompareSet | None = None
        self._notified = False
        self._reported: set[int] = set()
        self._last_index: int | None = None
        self._generation = -1
        self._warm = False
        self._skipped = [0] * len(self.specs)
        self._rate = RateMeter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="studio-compare", daemon=True)

    # -- control (UI thread) --------------------------------------------------------------------------
    def start(self) -> None:
        self.reader.start()
        self._thread.start()

    def open_source(self, spec: str | int) -> None:
        self.reader.open(str(spec))

    def set_realtime(self, realtime: bool) -> None:
        self.reader.set_realtime(bool(realtime))

    def set_render_size(self, width: int, height: int) -> None:
        """Pane pictures are scaled on the worker to this size (device pixels), so painting is a blit."""
        self._render_wh = (max(16, int(width)), max(16, int(height)))

    def take_set(self) -> CompareSet | None:
        with self._lock:
            result, self._notified = self._set, False
            return result

    def request_stop(self) -> None:
        """Ask both threads to end, without waiting (safe on the UI thread)."""
        self._stop.set()
        self.reader.stop()
        self._slot.poke()

    def stop(self, timeout: float = 3.0) -> bool:
        """Stop and join both threads (waits for the set in progress)."""
        self.request_stop()
        ok = self.reader.join(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)
        return ok and not self._thread.is_alive()

    def threads_alive(self) -> list[str]:
        return [t.name for t in (self._thread, self.reader._thread) if t.is_alive()]

    # -- inference thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        self.panes = PaneSet(self.specs, self.models_dir, strict=False, errors=self._errors)
        self._report_failures()
        while not self._stop.is_set():
            packet, _ = self._slot.take(0.2)
            if packet is None or self._stop.is_set():
                continue
            try:
                self._process(packet)
            except Exception as exc:  # noqa: BLE001 - the thread must live on; the user reads why
                self.source_failed.emit(f"compare failed on frame {packet.frame.index}: {exc}")

    def _report_failures(self) -> None:
        for i, pane in enumerate(self.panes.panes):
            if pane.error and i not in self._reported:
                self._reported.add(i)
                self.pane_failed.emit(i, pane.error)

    def _process(self, packet) -> None:
        frame, info = packet.frame, packet.info
        if info.generation != self._generation:  # a new source: counts start again
            self._generation, self._last_index = info.generation, None
            self._skipped = [0] * len(self.specs)
        if not self._warm:
            self._warm = True
            self.panes.warm_up(frame.image)  # first runs allocate; they would skew the medians
        t0 = time.perf_counter()
        results = self.panes.segment(frame.image)
        set_ms = (time.perf_counter() - t0) * 1000.0
        self._report_failures()
        gap = 0 if self._last_index is None or frame.index <= self._last_index else frame.index - self._last_index - 1
        self._last_index = frame.index
        self._rate.tick()
        w, h = fit_size((frame.image.shape[1], frame.image.shape[0]), self._render_wh)
        small = cv2.resize(frame.image, (w, h), interpolation=cv2.INTER_AREA) if (w, h) != frame.image.shape[1::-1] else frame.image
        ref = self.panes.reference
        frames = []
        for i, (pane, result) in enumerate(zip(self.panes.panes, results)):
            image = None
            if result is not None:
                self._skipped[i] += gap
                labels = result.labels
                if labels.shape != small.shape[:2]:
                    labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
                image = to_qimage(overlay.blend(small, labels, result.palette_bgr, self.opacity))
            acc = pane.entry.accuracy if pane.entry is not None else None
            meter = pane.agreement
            frames.append(PaneFrame(
                spec=pane.spec, image=image, frame_index=frame.index if result is not None else -1,
                ms=result.inference_ms if result is not None else 0.0, ms_median=pane.ms.median, fps=pane.ms.fps,
                agreement_pct=meter.agreement_pct if meter and meter.frames else 0.0,
                miou_pct=meter.miou_pct if meter and meter.frames else 0.0,
                frame_agreement_pct=meter.last_agreement_pct if meter and meter.frames else 0.0,
                skipped=self._skipped[i], error=pane.error,
                accuracy_miou=float(acc["miou"]) if acc and "miou" in acc else None,
                accuracy_scale=str(acc.get("scale", "full")) if acc else "", is_reference=pane is ref,
                accuracy_long_side=pane.entry.accuracy_long_side if pane.entry is not None else None,
                input_hw=tuple(result.input_hw) if result is not None else None,
                unseen=pane.entry.unseen_drive_miou if pane.entry is not None else None,
                comparable=self.panes.comparable(pane)))
        done = CompareSet(frame_index=frame.index, panes=frames, source=info, set_ms=set_ms,
                          sets_fps=self._rate.rate(), frame_hw=frame.image.shape[:2])
        with self._lock:
            self._set = done
            notify = not self._notified
            self._notified = True
        if notify:
            self.set_ready.emit()


def pane_frame_indices(compare_set: CompareSet) -> set[int]:
    """Frame indices of the panes that produced a result (one element when the set is consistent)."""
    return {p.frame_index for p in compare_set.panes if p.image is not None}

