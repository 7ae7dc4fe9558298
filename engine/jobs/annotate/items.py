"""The typed items that pass between the job's threads (reader -> inference -> sinks)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DecodedFrame:
    """Reader -> inference: a frame to segment (``prepared``), or a mask kept from an earlier run."""

    n: int  # position in the selection (0 = first selected frame)
    index: int  # source frame number
    image: np.ndarray | None  # BGR frame; None for a kept mask when no sink needs pixels
    prepared: np.ndarray | None  # network input; None for a kept mask
    mask: np.ndarray | None  # class map kept from an earlier run, else None


@dataclass
class LabeledFrame:
    """Inference -> sinks: a frame's class map; ``is_new`` when it was segmented in this run."""

    n: int
    index: int
    image: np.ndarray | None
    labels: np.ndarray  # uint8 HxW class ids at the video's size
    is_new: bool


@dataclass
class PipelineCounts:
    """What the pipeline got through; read by the progress callback and the summary."""

    done: int = 0  # frames whose outputs were all written
    inferred: int = 0  # frames segmented by the network in this run
    frames: int = 0  # frames in the finished outputs (set once the last frame was written)


@dataclass
class Progress:
    """What the progress callback receives after each frame and at the end of each stage."""

    done: int  # frames finished (all their outputs written)
    total: int
    inferred: int  # frames segmented by the network in this run
    elapsed_s: float
    stage: str = "frames"  # "frames", "finishing", "done"

    @property
    def fps(self) -> float:
        return self.inferred / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (self.total - self.done) / rate if rate > 0 else None
