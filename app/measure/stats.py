"""Live pipeline statistics (Qt-free): rates and medians over a short sliding window.

The numbers the user sees must be measured, not configured: source fps is how fast frames
actually arrive, inference ms is the median of the last runs, end-to-end fps is how fast
finished frames reach the screen, and dropped frames are those replaced before inference.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field


class RateMeter:
    """Events per second over the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 2.0):
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def count_per_s(self, now: float | None = None) -> float:
        """Events in the window divided by the window's length (0 when none): for rare events."""
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        return len(self._times) / self.window_s

    def reset(self) -> None:
        self._times.clear()


@dataclass
class StatsSnapshot:
    """What the stats overlay and the benchmark JSON show."""

    source_fps: float = 0.0
    inference_ms: float = 0.0  # median of the last runs
    e2e_fps: float = 0.0
    frames_read: int = 0
    frames_dropped: int = 0  # since this source opened
    dropped_per_s: float = 0.0  # over the last few seconds: a rate, so the number does not grow forever
    frames_processed: int = 0
    model: str = ""
    input_size: tuple[int, int] = (0, 0)  # network (height, width)
    frame_size: tuple[int, int] = (0, 0)  # source (height, width)
    scale: str = "full"
    input_note: str = ""  # e.g. the model's best size capped the input (Segmenter.input_note)
    providers: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["frame_size"] = list(self.frame_size)
        return data

    def lines(self, latency_ms: float | None = None) -> list[str]:
        """Compact text for the on-video overlay; ``latency_ms`` is capture-to-display, measured by the view."""
        ih, iw = self.input_size
        latency = f"{latency_ms:6.0f} ms" if latency_ms is not None else "     -"
        return [
            f"{self.model or 'no model'}  {iw}x{ih} ({self.scale}{': ' + self.input_note if self.input_note else ''})",
            f"source {self.source_fps:5.1f} fps   shown {self.e2e_fps:5.1f} fps",
            f"inference {self.inference_ms:6.1f} ms   dropped {self.dropped_per_s:4.1f}/s",
            f"capture to screen {latency}",
        ]


class LatencyMeter:
    """Median capture-to-display delay of the last frames shown (UI thread only)."""

    def __init__(self, window: int = 30):
        self._ms: deque[float] = deque(maxlen=window)

    def add(self, ms: float) -> None:
        self._ms.append(ms)

    def median(self) -> float | None:
        return statistics.median(self._ms) if self._ms else None

    def reset(self) -> None:
        self._ms.clear()


class PipelineStats:
    """Thread-safe counters fed by the reader and inference threads."""

    def __init__(self, window: int = 30):
        self._lock = threading.Lock()
        self._infer_ms: deque[float] = deque(maxlen=window)
        self._source = RateMeter()
        self._shown = RateMeter()
        self._drops = RateMeter(window_s=5.0)
        self.read = 0
        self.dropped = 0
        self.processed = 0

    def frame_read(self, replaced_unprocessed: bool) -> None:
        with self._lock:
            self.read += 1
            self._source.tick()
            if replaced_unprocessed:
                self.dropped += 1
                self._drops.tick()

    def frame_processed(self, infer_ms: float | None) -> None:
        """A frame reached the view; ``infer_ms`` is None when it was shown without a model."""
        with self._lock:
            self.processed += 1
            if infer_ms is not None:
                self._infer_ms.append(infer_ms)
            self._shown.tick()

    def model_changed(self) -> None:
        """Forget inference times of the previous model or resolution so the median follows at once."""
        with self._lock:
            self._infer_ms.clear()

    def source_changed(self) -> None:
        """A new source starts with fresh counters (the on-screen numbers are per source)."""
        with self._lock:
            self._source.reset()
            self._shown.reset()
            self._drops.reset()
            self._infer_ms.clear()
            self.read = self.dropped = self.processed = 0

    def snapshot(self, **context) -> StatsSnapshot:
        with self._lock:
            median = statistics.median(self._infer_ms) if self._infer_ms else 0.0
            return StatsSnapshot(
                source_fps=round(self._source.rate(), 2),
                inference_ms=round(median, 2),
                e2e_fps=round(self._shown.rate(), 2),
                frames_read=self.read,
                frames_dropped=self.dropped,
                dropped_per_s=round(self._drops.count_per_s(), 2),
                frames_processed=self.processed,
                **context,
            )
