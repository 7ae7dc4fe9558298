"""Multi-scale inference: the class probabilities of several input sizes, averaged.

Why: the standard test-time augmentation of segmentation, for footage of one known size.
Measured on three unseen CamVid drives (docs/training.md, "Inference at the best input
size"), its gain is the larger input: 1,2,2.67 is 0.4 mIoU above 2.0 alone (the model's best
size, ``--scale best``), 1,2 is below it. The network runs once per factor (``1,2``: 1 + 4 =
5x the pixels of ``full``), so this is for annotation and evaluation, never the live view.

Each factor's logits are turned into probabilities on one grid (the logit grid of the
largest input, bilinear, align_corners=False), averaged there, and the log of the average
goes through the same exact post-processing as a single input's logits: no full-size
class-probability planes (150 ADE20K classes at 720p would be 0.5 GB each).
"""
from __future__ import annotations

import time
from collections.abc import Sequence

import cv2
import numpy as np

from ..errors import StudioError
from ..result import SegResult
from . import postprocess
from .segmenter import CancelToken, Segmenter


def probabilities_on_grid(logits: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
    """Softmax over classes of ``logits`` [C, h, w] resized (bilinear) to ``grid_hw``: float32 [C, H, W]."""
    c = logits.shape[0]
    hwc = np.ascontiguousarray(logits.transpose(1, 2, 0), dtype=np.float32)
    if hwc.shape[:2] != tuple(grid_hw):
        hwc = cv2.resize(hwc, (grid_hw[1], grid_hw[0]), interpolation=cv2.INTER_LINEAR).reshape(*grid_hw, c)
    hwc = hwc - hwc.max(axis=2, keepdims=True)
    np.exp(hwc, out=hwc)
    hwc /= hwc.sum(axis=2, keepdims=True)
    return hwc.transpose(2, 0, 1)


def check_model(seg: Segmenter) -> None:
    """Refuse a model whose graph computes labels (older layout): there are no logits to average."""
    if seg.legacy:
        raise StudioError(f"--multiscale needs a model whose graph ends in logits; {seg.onnx_path.name} "
                          "computes labels in its graph (older layout): export it again")


def segment_frame(seg: Segmenter, frame_bgr: np.ndarray, scale, factors: Sequence[float] | None) -> SegResult:
    """One frame at ``scale``, or at the averaged ``factors`` when given: the one choice the
    offline commands (eval, segment, annotate's speed check) make per frame."""
    return segment_multiscale(seg, frame_bgr, factors) if factors else seg.segment(frame_bgr, scale)


def segment_multiscale(seg: Segmenter, frame_bgr: np.ndarray, factors: Sequence[float],
                       cancel: CancelToken | None = None) -> SegResult:
    """Labels at the frame's size from the mean class probabilities of the inputs at ``factors``."""
    check_model(seg)
    if frame_bgr is None or frame_bgr.ndim not in (2, 3) or frame_bgr.size == 0:
        raise StudioError("segment_multiscale() needs a non-empty image array")
    t0 = time.perf_counter()
    hw = frame_bgr.shape[:2]
    sizes = [seg.input_size(hw, f) for f in factors]
    largest = max(sizes, key=lambda s: s[0] * s[1])
    outputs = [seg.logits(seg.prepare(frame_bgr, size), cancel) for size in sizes]
    grid = max((o.shape[1:] for o in outputs), key=lambda s: s[0] * s[1])
    mean = sum(probabilities_on_grid(o, grid) for o in outputs) / len(outputs)
    labels, conf = postprocess.labels_and_confidence(np.log(np.maximum(mean, 1e-12)), hw)
    return SegResult(labels=labels, class_names=tuple(seg.entry.classes), palette_bgr=seg.palette_bgr,
                     input_hw=(int(largest[0]), int(largest[1])),
                     inference_ms=(time.perf_counter() - t0) * 1000.0, confidence=conf)
