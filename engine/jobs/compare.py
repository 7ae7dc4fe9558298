"""Comparing (model, scale) panes on the same frames: specs, agreement, timing, side-by-side pictures.

Shared by ``main.py compare`` and the app's compare window, so both count agreement and
latency the same way. No Qt here.

CPU sharing: the panes of one frame run one after another, each ONNX Runtime session with
all intra-op threads. On a CPU that is as fast as the models run one after another (it is
exactly that), never slower, and no pane starves another: concurrent sessions that each
want every core only fight over them.
"""
from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import StudioError
from ..models.registry import ModelEntry, Registry
from ..result import SegResult
from ..scales import parse_scale, scale_name

MAX_PANES = 4
DEFAULT_PANES = "tiny:half,tiny:full,base:full"  # what the app's menu opens
LABEL_BG = (20, 20, 20)


@dataclass(frozen=True)
class PaneSpec:
    """One pane: an installed model at one scale (``scale`` spelled as scale_name gives it)."""

    model: str
    scale: str

    @property
    def label(self) -> str:
        return f"{self.model} {self.scale}"

    @property
    def factor(self) -> float:
        return parse_scale(self.scale)


def parse_pane_spec(text: str, registry: Registry, default_scale: str = "full") -> PaneSpec:
    """``MODEL:SCALE`` (or ``MODEL``, at ``default_scale``) -> a checked PaneSpec."""
    raw = text.strip()
    model, sep, scale = raw.partition(":")
    if not model.strip() or (sep and not scale.strip()) or ":" in scale:
        raise StudioError(f"bad pane {text!r}: write MODEL:SCALE, e.g. camvid-tiny:half")
    try:
        scale = scale_name(scale if sep else default_scale)
    except StudioError as exc:
        raise StudioError(f"bad pane {text!r}: {exc}") from None
    return PaneSpec(registry.resolve(model).name, scale)


def parse_pane_specs(text: str, registry: Registry, min_panes: int = 1, max_panes: int = MAX_PANES) -> list[PaneSpec]:
    """A comma-separated list of ``MODEL:SCALE``, with the count checked."""
    items = [t for t in (text or "").split(",")]
    if any(not t.strip() for t in items):
        raise StudioError(f"bad pane list {text!r}: write MODEL:SCALE,MODEL:SCALE (no empty items)")
    specs = [parse_pane_spec(t, registry) for t in items]
    if not min_panes <= len(specs) <= max_panes:
        raise StudioError(f"{len(specs)} panes given ({text}); compare wants {min_panes} to {max_panes}")
    return specs


def cross_specs(models: str, scales: str, registry: Registry) -> list[PaneSpec]:
    """``--models A,B --scales full,half`` -> panes in the order given, models outer, scales inner.

    An item that already names its scale (``A:half``) is taken as it is.
    """
    scale_list = [s for s in (scales or "full").split(",")]
    if any(not s.strip() for s in scale_list):
        raise StudioError(f"bad scale list {scales!r}: write e.g. full,half")
    specs: list[PaneSpec] = []
    for item in (models or "").split(","):
        if not item.strip():
            raise StudioError(f"bad model list {models!r}: write e.g. camvid-tiny,camvid-base")
        if ":" in item:
            specs.append(parse_pane_spec(item, registry))
        else:
            specs.extend(parse_pane_spec(f"{item}:{s}", registry) for s in scale_list)
    return specs


# -- agreement ---------------------------------------------------------------------------------------
def confusion(reference: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [C, C] counts: rows = reference class, columns = this pane's class."""
    if reference.shape != labels.shape:
        raise ValueError(f"label maps differ in size: {reference.shape} vs {labels.shape}")
    c = int(num_classes)
    if c * c <= 256 and reference.dtype == np.uint8 and labels.dtype == np.uint8 and reference.size < (1 << 24):
        # OpenCV path (CamVid: 11 classes): the pair code ref*C+label fits a byte; these calls release
        # the GIL, so the compare worker does not stall the UI thread (numpy's bincount holds it).
        ref8 = cv2.min(np.ascontiguousarray(reference), c - 1)
        lab8 = cv2.min(np.ascontiguousarray(labels), c - 1)
        codes = cv2.scaleAdd(ref8, float(c), lab8)
        hist = cv2.calcHist([codes], [0], None, [256], [0, 256]).reshape(-1)[: c * c]
        return np.rint(hist).astype(np.int64).reshape(c, c)
    ref = np.minimum(reference.reshape(-1), c - 1).astype(np.int32)
    lab = np.minimum(labels.reshape(-1), c - 1).astype(np.int32)
    return np.bincount(ref * c + lab, minlength=c * c).reshape(c, c).astype(np.int64)


def agreement_pct(matrix: np.ndarray) -> float:
    """Percent of pixels where the pane and the reference give the same class."""
    total = int(matrix.sum())
    return 100.0 * float(np.trace(matrix)) / total if total else 0.0


def miou_pct(matrix: np.ndarray) -> float:
    """mIoU (percent) of the pane's labels against the reference's, over classes either one uses."""
    inter = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - inter
    used = union > 0
    return 100.0 * float(np.mean(inter[used] / union[used])) if used.any() else 0.0


class AgreementMeter:
    """Agreement with the reference over the last ``window`` frames (or all, window=None)."""

    def __init__(self, num_classes: int, window: int | None = 30):
        self.num_classes = num_classes
        self._recent: deque[np.ndarray] = deque(maxlen=window) if window else deque()
        self._sum = np.zeros((num_classes, num_classes), np.int64)
        self._window = window
        self.last = np.zeros_like(self._sum)  # the newest frame's matrix alone

    def add(self, reference: np.ndarray, labels: np.ndarray) -> None:
        m = confusion(reference, labels, self.num_classes)
        self.last = m
        if self._window and len(self._recent) == self._window:
            self._sum -= self._recent[0]
        self._recent.append(m)
        self._sum += m

    @property
    def agreement_pct(self) -> float:
        return agreement_pct(self._sum)

    @property
    def miou_pct(self) -> float:
        return miou_pct(self._sum)

    @property
    def last_agreement_pct(self) -> float:
        return agreement_pct(self.last)

    @property
    def frames(self) -> int:
        return len(self._recent)


class MsWindow:
    """Median of the last ``n`` inference times: what a pane shows as its speed."""

    def __init__(self, n: int = 30):
        self._values: deque[float] = deque(maxlen=n)

    def add(self, ms: float) -> None:
        self._values.append(float(ms))

    @property
    def median(self) -> float:
        return float(statistics.median(self._values)) if self._values else 0.0

    @property
    def fps(self) -> float:
        """Frames per second this pane's model alone would reach at the median latency."""
        m = self.median
        return 1000.0 / m if m > 0 else 0.0

    def __len__(self) -> int:
        return len(self._values)


# -- running panes -----------------------------------------------------------------------------------
@dataclass
class PaneState:
    """One pane's model and running numbers; ``error`` set when its model failed (others go on)."""

    spec: PaneSpec
    segmenter: object | None = None  # engine.run.segmenter.Segmenter
    entry: ModelEntry | None = None
    error: str = ""
    ms: MsWindow = field(default_factory=MsWindow)
    all_ms: list[float] = field(default_factory=list)
    agreement: AgreementMeter | None = None
    last: SegResult | None = None
    frames: int = 0


class PaneSet:
    """The panes of one comparison; ``segment(frame)`` runs every live pane on that one frame.

    Segmenters are loaded once per model and shared between its scales (sessions are thread-safe).
    With ``strict`` a model that cannot load raises; without it the pane keeps the error and the
    others go on (the app shows a banner in that pane). ``errors[i]`` marks pane i failed up front
    (e.g. its spec did not parse), so a window keeps its layout.
    """

    def __init__(self, specs: list[PaneSpec], models_dir: Path | str | None = None, strict: bool = True,
                 threads: int | None = None, agreement_window: int | None = 30, ms_window: int = 30,
                 loader: Callable[..., object] | None = None, errors: list[str] | None = None):
        from ..run.segmenter import Segmenter

        if not specs:
            raise StudioError("compare needs at least one MODEL:SCALE pane")
        load = loader or Segmenter.load
        self.panes = [PaneState(s, ms=MsWindow(ms_window)) for s in specs]
        cache: dict[str, object] = {}
        for pane, error in zip(self.panes, errors or [""] * len(self.panes)):
            if error:
                pane.error = error
                continue
            try:
                if pane.spec.model not in cache:
                    cache[pane.spec.model] = load(pane.spec.model, models_dir, threads=threads)
                pane.segmenter = cache[pane.spec.model]
                pane.entry = pane.segmenter.entry
                pane.agreement = AgreementMeter(pane.entry.num_classes, agreement_window)
            except StudioError as exc:
                if strict:
                    raise
                pane.error = str(exc)
        self.frame_ms = MsWindow(ms_window)
        self.all_frame_ms: list[float] = []

    @property
    def reference(self) -> PaneState | None:
        """The first pane whose model works: what the others are compared against."""
        return next((p for p in self.panes if p.segmenter is not None and not p.error), None)

    def comparable(self, pane: PaneState) -> bool:
        """Agreement means something only between models with the same classes (same dataset)."""
        ref = self.reference
        return (ref is not None and pane.agreement is not None and pane.entry is not None
                and ref.entry is not None and list(pane.entry.classes) == list(ref.entry.classes))

    def warm_up(self, frame_bgr: np.ndarray) -> None:
        """One untimed run per pane: the first run of a session allocates and is not representative."""
        for pane in self.panes:
            if pane.segmenter is not None and not pane.error:
                pane.segmenter.segment(frame_bgr, pane.spec.scale)

    def segment(self, frame_bgr: np.ndarray, record: bool = True) -> list[SegResult | None]:
        """Every live pane on this frame, one after another; None for failed panes."""
        t0 = time.perf_counter()
        results: list[SegResult | None] = []
        for pane in self.panes:
            result = None
            if pane.segmenter is not None and not pane.error:
                try:
                    result = pane.segmenter.segment(frame_bgr, pane.spec.scale)
                except StudioError as exc:
                    pane.error = str(exc)
                except Exception as exc:  # noqa: BLE001 - one broken pane must not stop the others
                    pane.error = f"{pane.spec.label} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            results.append(result)
        frame_ms = (time.perf_counter() - t0) * 1000.0
        if record:
            self._record(results, frame_ms)
        return results

    def _record(self, results: list[SegResult | None], frame_ms: float) -> None:
        self.frame_ms.add(frame_ms)
        self.all_frame_ms.append(frame_ms)
        ref_pane = self.reference
        ref = results[self.panes.index(ref_pane)] if ref_pane is not None else None
        for pane, result in zip(self.panes, results):
            if result is None:
                continue
            pane.last = result
            pane.frames += 1
            pane.ms.add(result.inference_ms)
            pane.all_ms.append(result.inference_ms)
            if ref is not None and self.comparable(pane) and result.labels.shape == ref.labels.shape:
                pane.agreement.add(ref.labels, result.labels)


# -- side-by-side pictures ----------------------------------------------------------------------------
def label_pane(image: np.ndarray, lines: Iterable[str]) -> np.ndarray:
    """Write ``lines`` in a dark box at the top left of ``image`` (in place; returned for chaining)."""
    lines = list(lines)
    scale = max(0.45, image.shape[0] / 900.0)
    thick = 1 if scale < 0.8 else 2
    sizes = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0] for t in lines]
    if not sizes:
        return image
    line_h = max(h for _, h in sizes) + int(10 * scale)
    width = max(w for w, _ in sizes) + 16
    cv2.rectangle(image, (6, 6), (6 + width, 6 + 10 + line_h * len(lines)), LABEL_BG, thickness=-1)
    for i, text in enumerate(lines):
        y = 6 + 6 + line_h * (i + 1) - int(5 * scale)
        cv2.putText(image, text, (14, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (240, 240, 240), thick, cv2.LINE_AA)
    return image


def side_by_side(panes: list[np.ndarray]) -> np.ndarray:
    """Panes of the same height, left to right (width = sum of widths)."""
    if not panes:
        raise ValueError("side_by_side needs at least one pane")
    return np.ascontiguousarray(cv2.hconcat(panes))


def failed_pane(shape: tuple[int, ...], message: str) -> np.ndarray:
    """A grey pane carrying an error, so a side-by-side video keeps its layout."""
    image = np.full(shape, 48, np.uint8)
    return label_pane(image, ["model failed:", message[:60]])
