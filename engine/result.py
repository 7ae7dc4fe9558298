"""`SegResult`: what the engine hands to every caller (app, annotate, compare, CLI).

One typed value instead of a bare array, so callers never look up class names or
palettes on their own and timing travels with the labels it belongs to.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegResult:
    labels: np.ndarray               # uint8 [H, W] class ids at the frame's size
    class_names: tuple[str, ...]     # index = class id
    palette_bgr: np.ndarray          # uint8 [C, 3], OpenCV order
    input_hw: tuple[int, int]        # network input (height, width) used
    inference_ms: float              # prepare + network + labels, wall clock
    confidence: float | None = None  # mean over pixels of the top class probability (low-res logits), if known

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def frame_hw(self) -> tuple[int, int]:
        return int(self.labels.shape[0]), int(self.labels.shape[1])
