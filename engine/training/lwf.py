"""Learning without forgetting: the start's own classifier kept alive during the fine-tune.

Why: the ADE20K Tiny learned 150 classes from 20k scenes; a fine-tune on a few hundred
frames of three drives overwrites what CamVid does not ask for, and some of that (signs,
facades, people in odd light) is what an unseen drive needs. Li and Hoiem's LwF (TPAMI
2018) keeps a copy of the start's classifier on the student's fused features and asks it to
go on predicting what the frozen start predicts on the same crops: KL at temperature T.
Unlike pulling the weights back (``anchor.py``, L2-SP: no gain), this constrains what the
features say, not where they sit. Training only: the extra classifier and the frozen start
are dropped at export, so the shipped graph and its speed do not change. Measured in
docs/training.md ("Learning without forgetting").
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import StudioError
from ..models.checkpoint import detect_variant, read_state_dict
from ..models.topformer import TopFormer, create_model
from .config import TrainConfig
from .distill import distill_loss
from .grow import GROWABLE, grow_state
from .optim import side_param_groups
from .pretrained import SEG_BIAS, SEG_WEIGHT


class SourceGuard(nn.Module):
    """The frozen start network and a trainable copy of its classifier for the student's features."""

    def __init__(self, source: TopFormer, classifier: nn.Conv2d):
        super().__init__()
        self.source = source.eval()
        self.source.requires_grad_(False)
        self.classifier = classifier

    def train(self, mode: bool = True) -> "SourceGuard":
        """The start stays in eval mode (its BatchNorm statistics and no dropout)."""
        self.classifier.train(mode)
        return self

    def loss(self, fused: torch.Tensor, x: torch.Tensor, temperature: float) -> torch.Tensor:
        """KL(start's prediction on ``x`` || the kept classifier on the student's ``fused`` features)."""
        with torch.no_grad():
            target = self.source(x)
        return distill_loss(self.classifier(fused), target, temperature)


def make_source_guard(cfg: TrainConfig) -> SourceGuard | None:
    """The run's guard (None when ``--lwf-weight`` is 0). The start (``--lwf-start``, else
    ``--init``) must be an official checkpoint of another dataset (ADE20K), whose classifier is
    the one to keep. A Tiny start for a Small or Base run (grown from a CamVid Tiny that began
    at that start) keeps its classifier grown by the same seeded widening as ``--init`` was
    (grow.py), so its channel i reads what the student's channel i grew from; the frozen start
    itself stays a Tiny (the grown one computes the same logits, slower)."""
    if cfg.lwf_weight < 0 or cfg.lwf_temp <= 0:
        raise StudioError("--lwf-weight must be at least 0 and --lwf-temp above 0")
    if cfg.lwf_weight == 0:
        return None
    start = cfg.lwf_start or cfg.init
    if not start:
        raise StudioError("--lwf-weight needs --lwf-start or --init with the official checkpoint of another dataset "
                          "(e.g. the ADE20K Tiny): its classifier is what the run keeps")
    if not Path(start).is_file():
        raise StudioError(f"--lwf-weight: the start {start} is not there (the frozen start runs beside the run)")
    state = read_state_dict(Path(start))
    variant, num_classes = detect_variant(state)  # raises for anything but an official TopFormer checkpoint
    if num_classes == cfg.num_classes:
        raise StudioError(f"--lwf-weight: {start} predicts this run's own {num_classes} classes; "
                          "there is no other task to keep")
    kept = state
    if variant != cfg.variant:
        if (variant, cfg.variant) not in GROWABLE:
            raise StudioError(f"--lwf-weight: {start} is a {variant.title()}, this run a {cfg.variant.title()}: "
                              "the kept classifier reads the run's own features, and cannot be grown into them")
        kept = grow_state(state, variant, cfg.variant, num_classes, via=cfg.grow_via)
    source = create_model(variant, num_classes)
    source.load_state_dict(state, strict=True)
    weight = kept[SEG_WEIGHT]
    classifier = nn.Conv2d(weight.shape[1], num_classes, 1)
    with torch.no_grad():
        classifier.weight.copy_(weight)
        classifier.bias.copy_(kept[SEG_BIAS])
    return SourceGuard(source, classifier)


def guard_param_groups(guard: SourceGuard, lr_mult: float, weight_decay: float) -> list[dict]:
    """Optimizer groups of the kept classifier (named ``lwf.*``, at the decode head's learning rate)."""
    return side_param_groups(guard.classifier, "lwf", lr_mult, weight_decay)
