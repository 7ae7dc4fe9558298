"""Per-class logit offsets added to the classifier's bias when a run is shipped.

Cross-entropy makes argmax favour frequent classes: a thin pole or sign whose cell is
half building loses to building, while mIoU rewards finding it. Raising the logits of the
thin rare classes by a constant trades a few pixels of the large classes for many of the
thin ones (measured on unseen drives: docs/training.md, "A logit offset for the thin
classes"). A constant added to a class's logit is the same before and after the bilinear
upsample (its weights sum to 1), so it is exact to put it in the last Conv's bias: the
shipped graph, the post-processing and the speed stay as they are.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import StudioError
from .pretrained import SEG_BIAS


def parse_class_bias(specs: Sequence[str] | None, classes: Sequence[str]) -> dict[str, float]:
    """``["pole,sign_symbol=0.5", "fence=0.25"]`` -> ``{"pole": 0.5, "sign_symbol": 0.5, "fence": 0.25}``."""
    offsets: dict[str, float] = {}
    for spec in specs or []:
        names, sep, value = spec.rpartition("=")
        try:
            offset = float(value)
        except ValueError:
            offset = math.nan
        if not sep or not names or not math.isfinite(offset):
            raise StudioError(f"--class-bias: expected CLASS[,CLASS...]=OFFSET (e.g. pole,sign_symbol=0.5), not {spec!r}")
        for name in names.split(","):
            if name not in classes:
                raise StudioError(f"--class-bias: no class {name!r} (classes: {', '.join(classes)})")
            if name in offsets:
                raise StudioError(f"--class-bias: class {name!r} given twice")
            offsets[name] = offset
    return {k: v for k, v in offsets.items() if v != 0.0}


def apply_class_bias(state: dict, offsets: dict[str, float], classes: Sequence[str]) -> dict:
    """A copy of ``state`` whose classifier bias is raised by ``offsets`` (class name -> logit)."""
    if not offsets:
        return state
    bias = state[SEG_BIAS].clone()
    if bias.shape[0] != len(classes):
        raise StudioError(f"--class-bias: the model predicts {bias.shape[0]} classes, the dataset has {len(classes)}")
    for name, offset in offsets.items():
        bias[list(classes).index(name)] += torch.tensor(offset, dtype=bias.dtype)
    return {**state, SEG_BIAS: bias}


def class_bias_flags(offsets: dict[str, float] | None) -> str:
    """The command-line flags that ship these offsets (" --class-bias a,b=0.5"), classes grouped by value."""
    by_value: dict[float, list[str]] = {}
    for name, offset in (offsets or {}).items():
        by_value.setdefault(offset, []).append(name)
    return "".join(f" --class-bias {','.join(names)}={value:g}" for value, names in by_value.items())
