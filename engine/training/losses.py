"""Training losses (torch): cross-entropy, optionally class-weighted, OHEM, and a
Lovasz-softmax term.

Thin rare classes (pole, sign, fence) lose under plain cross-entropy: their few pixels
are outvoted by the many easy building/road/sky pixels around them. OHEM averages the
loss over the hard pixels only, so those few pixels carry real weight. The Lovasz-softmax
term (Berman et al., CVPR 2018) is a convex surrogate of each class's Jaccard loss, the
quantity mIoU averages, so every class counts alike whatever its pixel count.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import StudioError
from .config import LOSSES, TrainConfig


def _kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest (1-based) of a flat tensor; numpy's partition on CPU (20x faster
    than torch.kthvalue there), torch on other devices."""
    if values.device.type == "cpu":
        v = values.numpy()
        return torch.tensor(np.partition(v, k - 1)[k - 1], dtype=values.dtype)
    return torch.kthvalue(values, k).values


def _hard_pixels(prob: torch.Tensor, valid: torch.Tensor, thresh: float, min_kept: int) -> torch.Tensor:
    """Pixels with true-class probability below ``thresh``, or, if those are fewer than
    ``min_kept``, the ``min_kept`` of lowest probability (the union of both rules)."""
    n_valid = int(valid.sum())
    if n_valid == 0:
        return valid
    hard = valid & (prob < thresh)
    k = min(max(min_kept, 1), n_valid)
    if int(hard.sum()) >= k:
        return hard
    p = torch.where(valid, prob, torch.full_like(prob, 2.0))  # ignored pixels sort last
    return valid & (p <= _kth_smallest(p.flatten(), k))


def _pixel_ce(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(unweighted cross-entropy per pixel [N, H, W], valid mask); 0 at ignored pixels."""
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    return F.cross_entropy(logits, safe, reduction="none") * valid, valid


def ohem_mask(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, thresh: float,
              min_kept: int) -> torch.Tensor:
    """Boolean [N, H, W]: the hard pixels (mmseg's OHEMPixelSampler): those whose predicted
    probability of the true class is below ``thresh``, and at least the ``min_kept`` of
    lowest probability. Ignored pixels are never kept."""
    with torch.no_grad():
        ce, valid = _pixel_ce(logits.float(), target, ignore_index)
        return _hard_pixels(torch.exp(-ce), valid, thresh, min_kept)


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, thresh: float,
                       min_kept: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy averaged over the OHEM-selected pixels (weighted mean if ``weight``,
    as ``F.cross_entropy`` averages). One per-pixel cross-entropy gives both the selection
    (p = exp(-ce)) and the loss: no separate softmax pass."""
    ce, valid = _pixel_ce(logits.float(), target, ignore_index)
    keep = _hard_pixels(torch.exp(-ce.detach()), valid, thresh, min_kept)
    w = keep.to(ce.dtype)
    if weight is not None:
        w = w * weight.to(ce.dtype)[torch.where(valid, target, torch.zeros_like(target))]
    denom = w.sum()
    return (ce * w).sum() / denom if float(denom) > 0 else logits.sum() * 0.0


def _lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Jaccard loss's Lovasz extension at errors sorted in decreasing order:
    the increments of 1 - IoU as the pixels are counted wrong one by one."""
    gts = fg_sorted.sum()
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


def lovasz_softmax(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, stride: int = 1) -> torch.Tensor:
    """Lovasz-softmax loss over the batch's valid pixels, averaged over the classes present
    in the labels. ``stride`` > 1 scores every stride-th pixel of each row and column (the
    per-class sort is the cost; 2 makes it 4x cheaper)."""
    if stride > 1:
        logits, target = logits[:, :, ::stride, ::stride], target[:, ::stride, ::stride]
    c = logits.shape[1]
    probs = torch.softmax(logits.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, c)
    labels = target.reshape(-1)
    valid = labels != ignore_index
    probs, labels = probs[valid], labels[valid]
    losses = []
    for k in torch.unique(labels).tolist():
        fg = (labels == k).to(probs.dtype)
        errors = (fg - probs[:, k]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[order])))
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


def build_criterion(cfg: TrainConfig, weight: torch.Tensor | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The run's loss: (logits [N, C, H, W], labels [N, H, W]) -> scalar."""
    if cfg.loss not in LOSSES:
        raise StudioError(f"unknown loss {cfg.loss!r} ({', '.join(LOSSES)})")
    base = _base_criterion(cfg, weight)
    if cfg.lovasz_weight < 0 or cfg.lovasz_stride < 1:
        raise StudioError("--lovasz-weight must be 0 or more and --lovasz-stride at least 1")
    if cfg.lovasz_weight == 0:
        return base
    return lambda logits, y: (base(logits, y) + cfg.lovasz_weight
                              * lovasz_softmax(logits, y, cfg.ignore_index, cfg.lovasz_stride))


def _base_criterion(cfg: TrainConfig, weight: torch.Tensor | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy or OHEM, as --loss says."""
    if cfg.loss == "ohem":
        if not 0.0 < cfg.ohem_thresh <= 1.0 or cfg.ohem_min_kept < 1:
            raise StudioError("--ohem-thresh must be in (0, 1] and --ohem-min-kept at least 1")
        if cfg.label_smoothing:
            raise StudioError("--label-smoothing is not supported with --loss ohem")
        return lambda logits, y: ohem_cross_entropy(logits, y, cfg.ignore_index, cfg.ohem_thresh,
                                                    cfg.ohem_min_kept, weight)
    ce = torch.nn.CrossEntropyLoss(weight=weight, ignore_index=cfg.ignore_index, label_smoothing=cfg.label_smoothing)
    return ce
