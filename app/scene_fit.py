"""Scene-fit hint (Qt-free): notice when the model is much less sure than on its own data.

A model trained on street scenes still paints an indoor scene with street classes (the floor
becomes "tree"), but it is far less confident doing so. The engine reports a per-frame
confidence (mean over pixels of the top class probability); each manifest entry records the
model's mean confidence on its own validation frames (``accuracy.confidence``). When the live
value stays well below that for a few seconds, the user is told what the model knows and what
to try. Kept free of Qt so the policy is tested with fed numbers.
"""
from __future__ import annotations

from collections import deque

from engine.registry import ModelEntry

RATIO = 0.85  # "well below": live confidence under 85 % of the validation mean ...
HOLD_S = 3.0  # ... for this long (its median over the window), so a few odd frames say nothing
MIN_FRAMES = 3  # slow devices segment ~1 frame/s

SCENE_WORDS = {
    "camvid": ("street scenes", ("road", "car", "pedestrian", "building", "sky")),
    "cityscapes": ("street scenes", ("road", "car", "person", "building", "sky")),
    "ade20k": ("indoor and outdoor scenes", ("wall", "floor", "person", "table", "sky")),
}


def expected_confidence(entry: ModelEntry | None) -> float | None:
    """The model's mean confidence on its validation frames, if the manifest records it."""
    if entry is None or not entry.accuracy:
        return None
    value = entry.accuracy.get("confidence")
    return float(value) if isinstance(value, (int, float)) and 0 < value <= 1 else None


def notice_text(entry: ModelEntry) -> str:
    """What the model knows and what to try, in plain words."""
    scenes, examples = SCENE_WORDS.get(entry.dataset, (f"{entry.dataset} scenes", tuple(entry.classes[:5])))
    known = ", ".join(examples) + "..."
    if entry.dataset == "ade20k":
        return (f"The model is unsure about this scene. It knows {entry.num_classes} classes of {scenes} "
                f"({known}). Try a larger model (Models > Download) or a better-lit, steadier view.")
    return (f"This model knows {scenes} ({known}) and is unsure about this one. "
            f"For indoor scenes download an ADE20K model: Models > Download.")


class SceneFitMonitor:
    """Feed ``(time_s, confidence)`` per segmented frame; ``feed`` returns the notice text once."""

    def __init__(self, ratio: float = RATIO, hold_s: float = HOLD_S, min_frames: int = MIN_FRAMES):
        self.ratio, self.hold_s, self.min_frames = ratio, hold_s, min_frames
        self._entry: ModelEntry | None = None
        self._expected: float | None = None
        self._samples: deque[tuple[float, float]] = deque()
        self._fired = False

    def reset(self, entry: ModelEntry | None) -> None:
        """A new model or a new source: start watching afresh (and allow one more notice)."""
        self._entry = entry
        self._expected = expected_confidence(entry)
        self._samples.clear()
        self._fired = False

    @property
    def threshold(self) -> float | None:
        return None if self._expected is None else self._expected * self.ratio

    def feed(self, now_s: float, confidence: float | None) -> str | None:
        """The notice text the first time the recent median stays below the threshold, else None."""
        if confidence is None or self._fired or self._entry is None or self._expected is None:
            return None
        self._samples.append((now_s, float(confidence)))
        while self._samples and now_s - self._samples[0][0] > self.hold_s:
            self._samples.popleft()
        if len(self._samples) < self.min_frames or now_s - self._samples[0][0] < 0.8 * self.hold_s:
            return None
        values = sorted(c for _, c in self._samples)
        median = values[len(values) // 2]
        if median >= self.threshold:
            return None
        self._fired = True
        return notice_text(self._entry)
