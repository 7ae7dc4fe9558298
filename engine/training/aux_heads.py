"""Auxiliary heads: deep supervision of the coarser injected features, for training only.

Why: the SimpleHead sums the 1/8, 1/16 and 1/32 features before it classifies, so the
coarse levels (where the global semantics enter) learn only through that sum. An extra
classifier on each coarse level gives them a loss of their own, as mmseg's auxiliary
FCN heads do for other networks (loss weight 0.4). The heads are not part of the
TopFormer: they live beside it, are trained with the head's learning rate, saved in
``last.pth`` for ``--resume``, and dropped at export, so the shipped graph and its speed
do not change. Measured in docs/training.md ("Auxiliary heads").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StudioError
from ..models.topformer import VARIANTS
from .config import TrainConfig
from .optim import side_param_groups


class AuxHeads(nn.Module):
    """One conv3x3-BN-ReLU-dropout-classifier per injected feature after the first (1/16, 1/32)."""

    def __init__(self, variant: str, num_classes: int, dropout: float = 0.1):
        super().__init__()
        c = VARIANTS[variant].head_channels
        levels = len(VARIANTS[variant].decode_out_indices) - 1
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                          nn.Dropout2d(dropout), nn.Conv2d(c, num_classes, 1))
            for _ in range(levels))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits of each coarse level, at that level's own size."""
        return [head(f) for head, f in zip(self.heads, feats[1:])]


def make_aux_heads(cfg: TrainConfig) -> AuxHeads | None:
    """The run's auxiliary heads, or None when ``--aux-weight`` is 0 (the default)."""
    if cfg.aux_weight < 0:
        raise StudioError("--aux-weight must be at least 0")
    return AuxHeads(cfg.variant, cfg.num_classes) if cfg.aux_weight > 0 else None


def aux_loss(heads: AuxHeads, feats: list[torch.Tensor], labels: torch.Tensor, loss_fn) -> torch.Tensor:
    """Mean of ``loss_fn(logits upsampled to the labels, labels)`` over the auxiliary heads."""
    losses = [loss_fn(F.interpolate(low, size=labels.shape[1:], mode="bilinear", align_corners=False), labels)
              for low in heads(feats)]
    return torch.stack(losses).mean()


def aux_param_groups(heads: AuxHeads, lr_mult: float, weight_decay: float) -> list[dict]:
    """Optimizer groups of the heads (named ``aux.*``, at the decode head's learning rate)."""
    return side_param_groups(heads, "aux", lr_mult, weight_decay)
