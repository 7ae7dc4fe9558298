"""The inference worker: capture, segmentation, overlay and recording off the UI thread.

Four kinds of threads feed one QObject living on the UI thread:
  * the reader (frame_reader.FrameReader) puts frames into a one-frame LatestSlot;
  * the inference thread here takes the newest frame and segments it;
  * the compose thread draws the overlay, writes recordings, scales the picture to the
    view and wraps it in a QImage, for frame N while the network already runs on frame
    N+1 (one job in hand-over at most: a slow compose holds inference back, no queue);
  * model builds (model_loader.ModelLoader) swap a new Segmenter in when it is ready.
The UI thread only paints: ``frame_ready`` is emitted at most once until the UI calls
``take_result()``, so no queue of frames can build up behind a busy window.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal

from engine.run import overlay
from engine.errors import StudioError
from engine.run.segmenter import CancelToken, Segmenter

from .capture import Recorder, capture_stem, ensure_writable_folder, save_snapshot
from .frame_result import ComposeJob, DisplayOptions, FrameResult, fit_size, to_qimage  # noqa: F401 - re-exported
from .frame_reader import FrameReader, Packet, SourceInfo
from .frame_slot import LatestSlot
from .model_loader import ModelLoader
from .palettes import PaletteCache
from ..measure.stats import PipelineStats


class InferenceWorker(QObject):
    frame_ready = Signal()  # a FrameResult waits in take_result()
    source_opened = Signal(object)  # SourceInfo
    source_ended = Signal()
    source_failed = Signal(str)  # could not open, or stopped delivering frames
    model_changed = Signal(object)  # ModelEntry now serving frames
    model_failed = Signal(str, str)  # name, message
    error_occurred = Signal(str)  # anything else the user should read
    snapshot_saved = Signal(list)  # list[str] of written files
    recording_started = Signal(str)
    recording_stopped = Signal(str, int)  # path, frames written

    def __init__(self, models_dir: Path | None, parent: QObject | None = None, opener=None):
        super().__init__(parent)
        self.stats = PipelineStats()
        self._slot = LatestSlot()
        kwargs = {"opener": opener} if opener else {}
        self.reader = FrameReader(self._slot, self.stats, on_opened=self.source_opened.emit,
                                  on_error=self.source_failed.emit, on_ended=self.source_ended.emit, **kwargs)
        self.loader = ModelLoader(models_dir, self._install_segmenter, self.model_failed.emit)
        self._lock = threading.Lock()
        self._segmenter: Segmenter | None = None
        self._scale = "full"
        self._display = DisplayOptions()
        self._palette_mode = "distinct"
        self._palettes = PaletteCache()
        self._view_size = (0, 0)
        self._result: FrameResult | None = None
        self._notified = False
        self._last_packet: Packet | None = None
        self._cache: tuple = (None, None, None, None)  # (packet, segmenter, scale, labels)
        self._record_request: tuple | None = None
        self._recorder: Recorder | None = None
        self._failed_model: str | None = None
        self._last_report: tuple[str, float] = ("", 0.0)
        self._stop = threading.Event()
        self._cancel = CancelToken()  # stops an inference in progress when the worker stops
        self._thread = threading.Thread(target=self._run, name="studio-inference", daemon=True)
        self._compose_cond = threading.Condition()
        self._compose_job: ComposeJob | None = None
        self._compose_thread = threading.Thread(target=self._run_compose, name="studio-compose", daemon=True)

    # -- control (UI thread) -----------------------------------------------------------------------
    def start(self) -> None:
        self.reader.start()
        self._thread.start()
        self._compose_thread.start()

    def open_source(self, spec: str | int) -> None:
        self.reader.open(str(spec))

    def close_source(self) -> None:
        self.reader.close_source()

    def set_model(self, name: str | None) -> None:
        """Build ``name`` in the background; None serves raw video."""
        if name is None:
            self._install_segmenter(None)
        else:
            self.loader.request(name)

    def set_scale(self, scale: str) -> None:
        with self._lock:
            self._scale = scale
        self.stats.model_changed()
        self._slot.poke()

    def set_display(self, opacity: float, boundaries: bool, mask_only: bool) -> None:
        with self._lock:
            self._display = DisplayOptions(float(opacity), bool(boundaries), bool(mask_only))
        self._slot.poke()

    def set_palette(self, mode: str) -> None:
        """"distinct" (street classes in clearly different hues) or "dataset" (the official colours)."""
        with self._lock:
            self._palette_mode = mode
        self._slot.poke()

    def set_view_size(self, width: int, height: int) -> None:
        with self._lock:
            self._view_size = (int(width), int(height))
        self._slot.poke()

    def set_paused(self, paused: bool) -> None:
        self.reader.set_paused(paused)

    def step(self) -> None:
        self.reader.step()

    def seek(self, index: int) -> None:
        self.reader.seek(index)

    def set_loop(self, loop: bool) -> None:
        self.reader.set_loop(loop)

    def set_realtime(self, realtime: bool) -> None:
        self.reader.set_realtime(realtime)

    @property
    def segmenter(self) -> Segmenter | None:
        with self._lock:
            return self._segmenter

    @property
    def scale(self) -> str:
        with self._lock:
            return self._scale

    def current_source(self) -> SourceInfo | None:
        """The source the reader has open now (None after it failed or closed)."""
        return self.reader.info

    def serving_providers(self) -> list[str]:
        """ONNX Runtime providers of the model serving frames (empty without one)."""
        segmenter = self.segmenter
        return segmenter.providers if segmenter is not None else []

    def take_result(self) -> FrameResult | None:
        """The newest finished frame (UI thread); re-arms ``frame_ready``."""
        with self._lock:
            self._notified = False
            return self._result

    def snapshot(self, folder: Path | str) -> bool:
        """Save the newest frame in the background; False when there is nothing to save yet."""
        with self._lock:
            result = self._result
        if result is None:
            return False

        def save() -> None:
            try:
                paths = save_snapshot(folder, result.model, result.frame_bgr, result.labels, result.overlay_bgr)
            except StudioError as exc:
                self.error_occurred.emit(f"snapshot failed: {exc}")
                return
            self.snapshot_saved.emit([str(p) for p in paths])

        threading.Thread(target=save, name="studio-snapshot", daemon=True).start()
        return True

    def start_recording(self, folder: Path | str) -> None:
        with self._lock:
            self._record_request = ("start", Path(folder))
        self._slot.poke()
        with self._compose_cond:
            self._compose_cond.notify_all()

    def stop_recording(self) -> None:
        with self._lock:
            self._record_request = ("stop",)
        self._slot.poke()
        with self._compose_cond:
            self._compose_cond.notify_all()

    def stop(self, timeout: float = 1.5) -> bool:
        """Stop every thread; True when all ended within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        self._cancel.cancel()
        self.reader.stop()
        self._slot.poke()
        reader_ok = self.reader.join(max(0.05, deadline - time.monotonic()))
        with self._compose_cond:
            self._compose_cond.notify_all()
        for thread in (self._thread, self._compose_thread):
            if thread.is_alive():
                thread.join(max(0.05, deadline - time.monotonic()))
        loader_ok = self.loader.close(max(0.05, deadline - time.monotonic()))
        return reader_ok and loader_ok and not self._thread.is_alive() and not self._compose_thread.is_alive()

    def threads_alive(self) -> list[str]:
        names = [t.name for t in (self.reader._thread, self._thread, self._compose_thread) if t.is_alive()]
        return names + (["studio-model"] if self.loader.busy else [])

    # -- background threads --------------------------------------------------------------------------
    def _install_segmenter(self, segmenter: Segmenter | None) -> None:
        with self._lock:
            self._segmenter = segmenter
            self._failed_model = None
        self.stats.model_changed()
        self._slot.poke()
        self.model_changed.emit(segmenter.entry if segmenter is not None else None)

    def _run(self) -> None:
        while not self._stop.is_set():
            packet, poked = self._slot.take(0.2)
            if self._stop.is_set():
                break
            redo = packet is None
            packet = packet or (self._last_packet if poked else None)
            if packet is None:
                continue
            self._last_packet = packet
            try:
                self._process(packet, redo)
            except Exception as exc:  # noqa: BLE001 - keep serving; tell the user (not every frame)
                self._report_once(f"processing failed: {exc}")
                time.sleep(0.2)

    def _process(self, packet: Packet, redo: bool) -> None:
        """Inference thread: segment, then hand the frame to the compose thread."""
        with self._lock:
            segmenter, scale, display, view = self._segmenter, self._scale, self._display, self._view_size
            mode = self._palette_mode
        labels, input_size, infer_ms, confidence = self._labels(packet, segmenter, scale, redo)
        job = ComposeJob(packet, redo, segmenter, scale, display, view, labels, input_size, infer_ms, confidence, mode)
        with self._compose_cond:
            while self._compose_job is not None and not self._stop.is_set():
                self._compose_cond.wait(0.2)  # compose still busy with the frame before the last
            self._compose_job = job
            self._compose_cond.notify_all()

    def _run_compose(self) -> None:
        try:
            while not self._stop.is_set():
                with self._compose_cond:
                    if self._compose_job is None:
                        self._compose_cond.wait(0.2)
                    job, self._compose_job = self._compose_job, None
                    self._compose_cond.notify_all()
                self._handle_recording_request()
                if job is None or self._stop.is_set():
                    continue
                try:
                    self._compose(job)
                except Exception as exc:  # noqa: BLE001 - keep serving; tell the user (not every frame)
                    self._report_once(f"processing failed: {exc}")
                    time.sleep(0.2)
        finally:
            self._finish_recording()

    def _compose(self, job: ComposeJob) -> None:
        """Compose thread: overlay, recording, legend, view-sized QImage, publish."""
        packet, redo, segmenter, scale = job.packet, job.redo, job.segmenter, job.scale
        display, view, labels, input_size, infer_ms = job.display, job.view, job.labels, job.input_size, job.infer_ms
        confidence = job.confidence
        frame = packet.frame.image
        rgb, bgr = self._palettes.get(segmenter, job.palette_mode)
        if labels is None:
            out = frame
        else:
            opacity = 1.0 if display.mask_only else display.opacity
            out = overlay.blend(frame, labels, bgr, opacity, boundaries=display.boundaries)
        if not redo:
            self._record(out, packet.frame.index)
        legend = overlay.present_classes(labels, segmenter.class_names, 0.05) if labels is not None else []
        h, w = out.shape[:2]
        dw, dh = fit_size((w, h), view)
        shown = out if (dw, dh) == (w, h) else cv2.resize(
            # INTER_AREA only for strong reductions: for mild ones (a window a bit smaller than the
            # frame) it costs ~10x bilinear (4.8 vs 0.5 ms at 1280x720) for no visible gain.
            out, (dw, dh), interpolation=cv2.INTER_AREA if dw * 2 < w else cv2.INTER_LINEAR)
        model = segmenter.name if segmenter is not None else ""
        note = segmenter.input_note((h, w), scale) if segmenter is not None else ""
        stats = self.stats.snapshot(model=model, input_size=input_size, frame_size=(h, w), scale=scale, input_note=note,
                                    providers=segmenter.providers if segmenter is not None else [])
        result = FrameResult(
            image=to_qimage(shown), frame_bgr=frame, overlay_bgr=out, labels=labels,
            class_names=segmenter.class_names if segmenter is not None else [],
            palette_rgb=rgb, legend=legend, frame_index=packet.frame.index, source=packet.info, stats=stats,
            model=model, infer_ms=infer_ms, is_new=not redo, confidence=confidence, read_at=packet.read_at)
        with self._lock:
            self._result = result
            notify = not self._notified
            self._notified = True
        if notify:
            self.frame_ready.emit()

    def _report_once(self, message: str, every_s: float = 10.0) -> None:
        """Emit ``message`` unless the same one was emitted in the last ``every_s`` seconds."""
        now = time.monotonic()
        if message != self._last_report[0] or now - self._last_report[1] > every_s:
            self._last_report = (message, now)
            self.error_occurred.emit(message)

    def _labels(self, packet: Packet, segmenter: Segmenter | None, scale: str,
                redo: bool) -> tuple[np.ndarray | None, tuple[int, int], float | None, float | None]:
        """Class map of the packet's frame, reusing the last one when only the display changed."""
        if segmenter is None:
            if not redo:
                self.stats.frame_processed(None)
            return None, (0, 0), None, None
        frame = packet.frame.image
        input_size = segmenter.input_size(frame.shape[:2], scale)
        c_packet, c_segmenter, c_scale, c_labels = self._cache
        if redo and c_packet is packet and c_segmenter is segmenter and c_scale == scale:
            return c_labels, input_size, None, None
        t0 = time.perf_counter()
        try:
            result = segmenter.segment(frame, scale, cancel=self._cancel)
            labels = result.labels
        except Exception as exc:  # noqa: BLE001 - a model that fails on a frame must not stop the app
            if self._stop.is_set():
                return None, input_size, None, None
            if self._failed_model != segmenter.name:
                self._failed_model = segmenter.name
                self.error_occurred.emit(f"model {segmenter.name} failed on this frame: {exc}")
            return None, input_size, None, None
        infer_ms = (time.perf_counter() - t0) * 1000.0
        self.stats.frame_processed(infer_ms)
        self._cache = (packet, segmenter, scale, labels)
        return labels, input_size, infer_ms, getattr(result, "confidence", None)

    # -- recording (inference thread only) ----------------------------------------------------------------
    def _handle_recording_request(self) -> None:
        with self._lock:
            request, self._record_request = self._record_request, None
            model = self._segmenter.name if self._segmenter is not None else "no-model"
        if request is None:
            return
        if request[0] == "stop":
            self._finish_recording()
            return
        self._finish_recording()
        info = self.reader.info
        fps = info.fps if info is not None and info.fps > 0 else 25.0
        path = Path(request[1]) / f"{capture_stem(model)}.mp4"
        try:
            ensure_writable_folder(path.parent)
        except StudioError as exc:
            self.error_occurred.emit(f"recording failed: {exc}")
            self.recording_stopped.emit("", 0)
            return
        self._recorder = Recorder(path, fps)
        self.recording_started.emit(str(path))

    def _record(self, out: np.ndarray, index: int) -> None:
        if self._recorder is None:
            return
        try:
            self._recorder.write(out, index)
        except StudioError as exc:
            self._recorder = None
            self.error_occurred.emit(f"recording failed: {exc}")
            self.recording_stopped.emit("", 0)

    def _finish_recording(self) -> None:
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return
        path = recorder.close()
        self.recording_stopped.emit(str(path) if path else "", recorder.frames)
