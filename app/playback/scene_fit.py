"""Scene-fit hint (Qt-free): notice when the model is much less sure than on its own data.

A model trained on street scenes still paints an indoor scene with street classes (the floor
becomes "tree"), but it is far less confident doing so. The engine reports a per-frame
confidence (mean over pixels of the top class probability); each manifest entry records the
model's mean confidence on its own validation frames (``accuracy.confidence``). When the live
value stays well below that for a few seconds, the user is told what the model knows and what
to try. Kept free of Qt so the policy is tested with fed numbers.

Measured on the shipped CamVid models (mean confidence on the clips / on CamVid val): the
indoor clip drops clearly below the validation mean at half scale (Tiny 0.87, Small 0.89,
Base 0.81 of it) while street clips stay above 0.92 of it; at full scale Tiny's indoor ratio
(0.93) is no lower than a 720p highway's (0.93), so confidence alone cannot tell them apart.
There the classes painted decide: a street model on an indoor scene paints mostly "tree" and
"sky", far from the class shares it predicts on its own validation frames
(``accuracy.class_shares``; overlap 0.38 indoors against 0.60-0.69 on street clips).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from engine.models.registry import ModelEntry

RATIO = 0.91  # "well below": live confidence under 91 % of the validation mean ...
SOFT_RATIO = 0.94  # ... or under 94 % of it while the classes painted overlap the validation ones by less
MIN_OVERLAP = 0.5  # than half (sum over classes of min(live share, validation share))
HOLD_S = 3.0  # for this long (medians over the window), so a few odd frames say nothing
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


def expected_shares(entry: ModelEntry | None) -> dict[str, float] | None:
    """Fraction of pixels per class the model predicts on its validation frames, if recorded."""
    shares = (entry.accuracy or {}).get("class_shares") if entry is not None else None
    return {str(k): float(v) for k, v in shares.items()} if isinstance(shares, dict) and shares else None


def overlap(live: dict[str, float], expected: dict[str, float]) -> float:
    """Histogram intersection of two class-share maps: 1 = the same mix of classes, 0 = none shared."""
    return sum(min(share, expected.get(name, 0.0)) for name, share in live.items())


def broader_model(installed: Sequence[ModelEntry], entry: ModelEntry | None) -> str | None:
    """An installed ADE20K model to suggest instead of ``entry`` (of its variant if there is one),
    so that a user who has one is told to switch rather than to download another."""
    if entry is None or entry.dataset == "ade20k":
        return None
    broad = [e for e in installed if e.dataset == "ade20k"]
    same_variant = [e for e in broad if e.variant == entry.variant]
    return (same_variant or broad)[0].name if broad else None


def notice_text(entry: ModelEntry, switch_to: str | None = None) -> str:
    """What the model knows and what to try, in plain words."""
    scenes, examples = SCENE_WORDS.get(entry.dataset, (f"{entry.dataset} scenes", tuple(entry.classes[:5])))
    known = ", ".join(examples) + "..."
    if entry.dataset == "ade20k":
        return (f"The model is unsure about this scene. It knows {entry.num_classes} classes of {scenes} "
                f"({known}). Try a larger model (Models > Download) or a better-lit, steadier view.")
    advice = (f"switch to {switch_to}, the installed ADE20K model." if switch_to
              else "download an ADE20K model: Models > Download.")
    return f"This model knows {scenes} ({known}) and is unsure about this one. For indoor scenes {advice}"


class SceneFitMonitor:
    """Feed ``(time_s, confidence)`` per segmented frame; ``feed`` returns the notice text once."""

    def __init__(self, ratio: float = RATIO, hold_s: float = HOLD_S, min_frames: int = MIN_FRAMES):
        self.ratio, self.hold_s, self.min_frames = ratio, hold_s, min_frames
        self._entry: ModelEntry | None = None
        self._expected: float | None = None
        self._shares: dict[str, float] | None = None
        self._samples: deque[tuple[float, float, float | None]] = deque()  # time, confidence, overlap
        self._fired = False
        self.switch_to: str | None = None

    def reset(self, entry: ModelEntry | None, installed: Sequence[ModelEntry] = ()) -> None:
        """A new model or a new source: start watching afresh (and allow one more notice)."""
        self._entry = entry
        self.switch_to = broader_model(installed, entry)  # the notice's suggestion, if one is installed
        self._expected = expected_confidence(entry)
        self._shares = expected_shares(entry)
        self._samples.clear()
        self._fired = False

    @property
    def threshold(self) -> float | None:
        return None if self._expected is None else self._expected * self.ratio

    def feed(self, now_s: float, confidence: float | None, shares: dict[str, float] | None = None) -> str | None:
        """The notice text the first time the recent medians say "wrong scene", else None.

        ``shares``: fraction of the frame per class painted (optional; sharpens the decision)."""
        if confidence is None or self._fired or self._entry is None or self._expected is None:
            return None
        fit = overlap(shares, self._shares) if shares is not None and self._shares is not None else None
        self._samples.append((now_s, float(confidence), fit))
        while self._samples and now_s - self._samples[0][0] > self.hold_s:
            self._samples.popleft()
        if len(self._samples) < self.min_frames or now_s - self._samples[0][0] < 0.8 * self.hold_s:
            return None
        ratio = _median([c for _, c, _ in self._samples]) / self._expected
        fits = [f for _, _, f in self._samples if f is not None]
        wrong_mix = len(fits) * 2 > len(self._samples) and _median(fits) < MIN_OVERLAP
        if ratio >= self.ratio and not (ratio < SOFT_RATIO and wrong_mix):
            return None
        self._fired = True
        return notice_text(self._entry, self.switch_to)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
