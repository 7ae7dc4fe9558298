"""The capture thread: opens sources and reads frames into a LatestSlot, paced like the source.

Opening (a camera can take seconds), seeking and reading all happen here, never on the UI
thread. Commands arrive through a queue so the FrameSource is only ever touched by this
thread. Results go out through plain callbacks (the Qt worker turns them into signals).
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.errors import StudioError
from engine.io.sources import Frame, FrameSource, open_source

from .frame_slot import LatestSlot
from ..measure.stats import PipelineStats


@dataclass(frozen=True)
class SourceInfo:
    """What the UI needs to know about the open source."""

    spec: str  # what open_source() got: a camera index as digits, or a path
    kind: str  # "video" | "camera" | "image"
    description: str
    fps: float
    frame_count: int
    width: int
    height: int
    is_live: bool
    generation: int  # increases with every opened source

    @property
    def path(self) -> Path | None:
        return None if self.kind == "camera" else Path(self.spec)


@dataclass
class Packet:
    """A frame on its way to inference, tagged with the source it came from."""

    frame: Frame
    info: SourceInfo
    read_at: float  # monotonic time the frame left the source


class FrameReader:
    """Owns the current FrameSource on its own daemon thread."""

    def __init__(self, slot: LatestSlot, stats: PipelineStats,
                 on_opened: Callable[[SourceInfo], None],
                 on_error: Callable[[str], None],
                 on_ended: Callable[[], None],
                 opener: Callable[[str], FrameSource] = open_source):
        self._slot, self._stats = slot, stats
        self._on_opened, self._on_error, self._on_ended = on_opened, on_error, on_ended
        self._opener = opener
        self._commands: queue.Queue[tuple[str, object]] = queue.Queue()
        self._stop = threading.Event()
        self._source: FrameSource | None = None
        self._info: SourceInfo | None = None
        self._generation = 0
        self.paused = False
        self.loop = True
        self.realtime = True  # False: as fast as inference allows, no frames dropped
        self._step = False
        self._ended = False
        self._clock_t0 = 0.0  # pacing: monotonic time at which frame ``_clock_index`` was due
        self._clock_index = 0
        self._thread = threading.Thread(target=self._run, name="studio-reader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- commands (any thread) -------------------------------------------------------------
    def open(self, spec: str) -> None:
        self._commands.put(("open", str(spec)))

    def close_source(self) -> None:
        self._commands.put(("close", None))

    def seek(self, index: int) -> None:
        self._commands.put(("seek", int(index)))

    def set_paused(self, paused: bool) -> None:
        self._commands.put(("pause", bool(paused)))

    def step(self) -> None:
        self._commands.put(("step", None))

    def set_loop(self, loop: bool) -> None:
        self._commands.put(("loop", bool(loop)))

    def set_realtime(self, realtime: bool) -> None:
        self._commands.put(("realtime", bool(realtime)))

    def stop(self) -> None:
        self._stop.set()
        self._commands.put(("wake", None))

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def info(self) -> SourceInfo | None:
        return self._info

    # -- thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                wait = self._wait_time()
                try:
                    cmd = self._commands.get(timeout=wait) if wait > 0 else self._commands.get_nowait()
                except queue.Empty:
                    cmd = None
                if cmd is not None:
                    self._apply(*cmd)
                    continue  # re-evaluate pacing after every command
                if not self._idle():
                    self._read_one()
        finally:
            self._close()

    def _idle(self) -> bool:
        return self._source is None or self._ended or (self.paused and not self._step)

    def _wait_time(self) -> float:
        """Seconds to wait for a command before the next read (0: read now)."""
        if self._idle():
            return 0.2
        if self.realtime and not self._step and not self._source.is_live and self._source.fps > 0:
            due = self._clock_t0 + self._clock_index / self._source.fps
            return max(0.0, due - time.monotonic())
        return 0.0

    def _apply(self, name: str, arg: object) -> None:
        if name == "open":
            self._open(str(arg))
        elif name == "close":
            self._close()
            self._info = None
        elif name == "seek" and self._source is not None:
            try:
                self._source.seek(int(arg))
            except StudioError as exc:
                self._on_error(str(exc))
                return
            self._ended = False
            self._restart_clock()
            if self.paused:
                self._step = True  # show the frame at the new position
        elif name == "pause":
            was_paused, self.paused = self.paused, bool(arg)
            if not self.paused:
                if self._ended and self._source is not None and not self._source.is_live:
                    self._rewind()
                if was_paused:  # a repeated "play" must not restart the clock (a burst of frames)
                    self._restart_clock()
        elif name == "step":
            if self._ended and self._source is not None and not self._source.is_live:
                self._rewind()
            self.paused, self._step = True, True
        elif name == "loop":
            self.loop = bool(arg)
        elif name == "realtime" and self.realtime != bool(arg):
            self.realtime = bool(arg)
            self._restart_clock()

    def _open(self, spec: str) -> None:
        """Open ``spec``; when that fails the current source keeps playing."""
        try:
            source = self._opener(spec)
        except StudioError as exc:
            self._on_error(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - OpenCV can raise odd errors on odd files
            self._on_error(f"cannot open {spec}: {exc}")
            return
        self._close()
        self._slot.clear()
        self._generation += 1
        self._source = source
        self._ended = False
        self._step = self.paused  # a paused player still shows the first frame
        self._info = SourceInfo(spec=spec, kind=source.kind, description=source.description,
                                fps=float(source.fps), frame_count=int(source.frame_count),
                                width=int(source.width), height=int(source.height),
                                is_live=bool(source.is_live), generation=self._generation)
        self._stats.source_changed()
        self._restart_clock()
        self._on_opened(self._info)

    def _rewind(self) -> None:
        try:
            self._source.seek(0)
        except StudioError:
            return
        self._ended = False
        self._restart_clock()

    def _restart_clock(self) -> None:
        self._clock_t0 = time.monotonic()
        self._clock_index = 0

    def _read_one(self) -> None:
        source = self._source
        if source is None:
            return
        if not self.realtime and not source.is_live:
            if not self._slot.wait_empty(0.2):
                return  # inference still busy: no frame is dropped in this mode
        try:
            frame = source.read()
        except StudioError as exc:
            self._lost(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a driver error must not kill the thread
            self._lost(f"{source.description} failed: {exc}")
            return
        self._step = False
        if frame is None:
            if self.loop and source.kind == "video" and source.frame_count != 1:
                self._rewind()
                return
            self._ended = True
            self._on_ended()
            return
        self._clock_index += 1
        replaced = self._slot.put(Packet(frame, self._info, time.monotonic()))
        self._stats.frame_read(replaced)

    def _lost(self, message: str) -> None:
        self._close()
        self._info = None
        self._on_error(message)

    def _close(self) -> None:
        if self._source is not None:
            try:
                self._source.close()
            except Exception:  # noqa: BLE001 - closing a vanished device may fail; nothing to do
                pass
            self._source = None
