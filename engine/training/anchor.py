"""Weight decay towards the start (L2-SP): a fine-tune pulled back to its pretrained weights.

Why: shipping a blend of the fine-tuned weights with the start (``--blend-init 0.75``,
WiSE-FT) is worth about a point on unseen drives, i.e. the ADE20K start generalises better
than CamVid's 300-odd frames alone teach. This is the same idea inside training: after
every optimizer step each trained weight moves back towards its start,

    w <- w - lr_t * strength * (w - w_start)

with ``lr_t`` the base learning rate of that iteration (the head's x10 is not applied: the
pull is one uniform spring in weight space, like the blend). Plain AdamW decay pulls to
zero instead; at lr 2e-4 and decay 0.01 it moves a weight by 0.1 % over a whole run.
A strength S halves a weight's distance to its start in about ln 2 / (lr * S) iterations of
no gradient (lr 2e-4, S 30: about 115).

The start is whatever ``--init`` gave (an ADE20K Tiny grown into a Base is computed again
on ``--resume``: growing is seeded, so the same start comes back). Measured on the Base
with two drives held out (docs/training.md, "Weight decay towards the start"): no gain at
scale 1.0, so it is off by default and the shipped models do not use it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import StudioError
from .config import TrainConfig


def check_anchor(cfg: TrainConfig) -> None:
    """A bad ``--decay-to-start`` is one line, before the data is loaded."""
    if cfg.decay_to_start < 0:
        raise StudioError(f"--decay-to-start {cfg.decay_to_start}: must be 0 (off) or more")
    if cfg.decay_to_start > 0 and not cfg.init:
        raise StudioError("--decay-to-start needs --init: the weights to pull towards")


def make_anchor(model: nn.Module, cfg: TrainConfig, start_state: dict | None) -> "StartAnchor | None":
    """The run's anchor (``cfg.decay_to_start`` > 0, checked by :func:`check_anchor`), or None."""
    if cfg.decay_to_start == 0 or start_state is None:
        return None
    return StartAnchor(model, cfg.decay_to_start, start_state)


class StartAnchor:
    """Each trainable parameter of one model, with its start value, and the pull towards it.
    The pairs are made once: the training loop's model keeps its parameter objects."""

    def __init__(self, model: nn.Module, strength: float, start_state: dict):
        self.strength = strength
        self.pairs = [(p, start_state[n].detach().to(p.device, p.dtype).clone())
                      for n, p in model.named_parameters() if p.requires_grad]

    @torch.no_grad()
    def pull(self, lr: float) -> None:
        """After ``optimizer.step()``: move each parameter ``lr * strength`` of the way back."""
        k = min(lr * self.strength, 1.0)
        if k <= 0:
            return
        for p, w0 in self.pairs:
            p.sub_(p - w0, alpha=k)

    @torch.no_grad()
    def distance(self) -> float:
        """Mean absolute distance of the trainable weights from the start (log.jsonl's
        ``distance_from_start`` at each evaluation)."""
        total = sum(float((p - w0).abs().sum()) for p, w0 in self.pairs)
        return total / max(sum(p.numel() for p, _ in self.pairs), 1)
