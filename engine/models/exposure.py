"""Exposure normalisation: a dark frame is brightened to a target mean before the network.

Why: footage darker than what a model trained on (CamVid's dusk drive 0001TP has a mean pixel
value of about 60, the other drives 100 to 137) loses accuracy the network cannot win back,
and a camera's exposure is not something the user's scene should decide. A single gain
``max(1, target / frame mean)`` on all three channels (colour balance kept, bright frames
untouched) brings a dark frame into the brightness range the network knows. Measured on
unseen drives in docs/training.md ("Exposure normalisation"). The shipped graph computes it
(engine/models/export.py, ``DeployGraph``), so the app, eval and bench get it with the model;
training brightens its frames the same way (``brighten``) when a run asks for it.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import StudioError


def check_target(target: float | None) -> float | None:
    """``target`` as a float in (0, 255], or None for none (0 and None both mean off)."""
    if target is None or target == 0:
        return None
    if not math.isfinite(target) or not 0 < target <= 255:
        raise StudioError(f"--exposure-target must be a mean pixel value above 0 and at most 255, not {target:g}")
    return float(target)


def exposure_gain(mean: float, target: float) -> float:
    """The factor a frame of this mean pixel value is multiplied by: at least 1 (never darkened)."""
    return max(1.0, target / max(float(mean), 1.0))


def brighten(image: np.ndarray, target: float | None) -> np.ndarray:
    """``image`` (uint8) with the graph's gain applied (rounded, clipped at 255); the same array when none."""
    if not target:
        return image
    gain = exposure_gain(image.mean(), target)
    if gain == 1.0:
        return image
    table = np.clip(np.round(np.arange(256, dtype=np.float64) * gain), 0, 255).astype(np.uint8)
    return table[image]
