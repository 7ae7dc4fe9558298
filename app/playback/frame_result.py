"""What the worker's threads pass on: the compose job of one frame, the finished frame, helpers.

Kept apart from worker.py so the worker holds only its threads; importable from
``app.playback.worker`` as before.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from PySide6.QtGui import QImage

from engine.run.segmenter import Segmenter

from .frame_reader import Packet, SourceInfo
from ..measure.stats import StatsSnapshot


@dataclass
class DisplayOptions:
    opacity: float = 0.5
    boundaries: bool = False
    mask_only: bool = False


@dataclass
class ComposeJob:
    """What the inference thread hands to the compose thread for one frame."""

    packet: Packet
    redo: bool
    segmenter: Segmenter | None
    scale: str
    display: DisplayOptions
    view: tuple[int, int]
    labels: np.ndarray | None
    input_size: tuple[int, int]
    infer_ms: float | None
    confidence: float | None
    palette_mode: str


@dataclass
class FrameResult:
    """One finished frame: the picture to paint plus what the side panel and captures need."""

    image: QImage  # overlay scaled to the view, ready to paint
    frame_bgr: np.ndarray  # the original frame (for snapshots)
    overlay_bgr: np.ndarray  # full-resolution overlay (for snapshots)
    labels: np.ndarray | None  # class map at frame size, None without a model
    class_names: list[str]
    palette_rgb: np.ndarray
    legend: list[tuple[int, str, float]]  # (class id, name, % of area), largest first
    frame_index: int
    source: SourceInfo
    stats: StatsSnapshot
    model: str
    infer_ms: float | None  # this frame's inference time; None when reused or without a model
    is_new: bool  # False when an earlier frame was drawn again (display, model or size changed)
    confidence: float | None = None  # SegResult.confidence of this frame, when the engine reports it
    read_at: float = 0.0  # monotonic time the frame left the source (for capture-to-display latency)
    shown_at: float = field(default_factory=time.monotonic)

    def class_at(self, x: int, y: int) -> str:
        """``(x, y) name`` of the class at a frame pixel; empty outside the frame or without a model."""
        if x < 0 or y < 0 or self.labels is None or y >= self.labels.shape[0] or x >= self.labels.shape[1]:
            return ""
        class_id = int(self.labels[y, x])
        name = self.class_names[class_id] if class_id < len(self.class_names) else f"class {class_id}"
        return f"({x}, {y}) {name}"


def to_qimage(bgr: np.ndarray) -> QImage:
    """A deep-copied QImage of a BGR array (safe to hand to another thread).

    Converted to 32-bit BGRA here, on the worker: that is QImage's native RGB32 layout on
    little-endian machines, so painting it on the UI thread is a plain copy, not a conversion.
    """
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    h, w = bgra.shape[:2]
    fmt = QImage.Format.Format_RGB32 if sys.byteorder == "little" else QImage.Format.Format_BGR888
    if fmt != QImage.Format.Format_RGB32:
        bgra = np.ascontiguousarray(bgr)
    return QImage(bgra.data, w, h, bgra.strides[0], fmt).copy()


def fit_size(frame_wh: tuple[int, int], box_wh: tuple[int, int]) -> tuple[int, int]:
    """Largest (w, h) with the frame's aspect ratio inside the box."""
    fw, fh = frame_wh
    bw, bh = box_wh
    if fw <= 0 or fh <= 0 or bw <= 0 or bh <= 0:
        return fw, fh
    k = min(bw / fw, bh / fh)
    return max(1, int(round(fw * k))), max(1, int(round(fh * k)))
