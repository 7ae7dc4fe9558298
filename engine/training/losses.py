"""Training losses (torch): cross-entropy, optionally class-weighted, and OHEM.

Thin rare classes (pole, sign, fence) lose under plain cross-entropy: their few pixels
are outvoted by the many easy building/road/sky pixels around them. OHEM averages the
loss over the hard pixels only, so those few pixels carry real weight.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import StudioError
from .config import LOSSES, TrainConfig


def ohem_mask(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, thresh: float,
              min_kept: int) -> torch.Tensor:
    """Boolean [N, H, W]: the hard pixels (mmseg's OHEMPixelSampler): those whose predicted
    probability of the true class is below ``thresh``, and at least the ``min_kept`` of
    lowest probability. Ignored pixels are never kept."""
    valid = target != ignore_index
    n_valid = int(valid.sum())
    if n_valid == 0:
        return valid
    with torch.no_grad():
        prob = logits.detach().float().softmax(1)
        safe = torch.where(valid, target, torch.zeros_like(target))
        p = prob.gather(1, safe.unsqueeze(1)).squeeze(1)
        p = torch.where(valid, p, torch.full_like(p, 2.0))  # ignored pixels sort last
        k = min(max(min_kept, 1), n_valid)
        kth = torch.kthvalue(p.flatten(), k).values
        return valid & ((p < thresh) | (p <= kth))


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, thresh: float,
                       min_kept: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy averaged over the OHEM-selected pixels (weighted mean if ``weight``)."""
    keep = ohem_mask(logits, target, ignore_index, thresh, min_kept)
    masked = torch.where(keep, target, torch.full_like(target, ignore_index))
    return F.cross_entropy(logits, masked, weight=weight, ignore_index=ignore_index) if keep.any() \
        else logits.sum() * 0.0


def build_criterion(cfg: TrainConfig, weight: torch.Tensor | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The run's loss: (logits [N, C, H, W], labels [N, H, W]) -> scalar."""
    if cfg.loss not in LOSSES:
        raise StudioError(f"unknown loss {cfg.loss!r} ({', '.join(LOSSES)})")
    if cfg.loss == "ohem":
        if not 0.0 < cfg.ohem_thresh <= 1.0 or cfg.ohem_min_kept < 1:
            raise StudioError("--ohem-thresh must be in (0, 1] and --ohem-min-kept at least 1")
        if cfg.label_smoothing:
            raise StudioError("--label-smoothing is not supported with --loss ohem")
        return lambda logits, y: ohem_cross_entropy(logits, y, cfg.ignore_index, cfg.ohem_thresh,
                                                    cfg.ohem_min_kept, weight)
    ce = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=cfg.ignore_index, label_smoothing=cfg.label_smoothing)
    return ce
