"""Sharpness-aware minimisation (``--sam-rho``; Foret et al., ICLR 2021), for footage the
model never saw.

Why: a minimum whose loss stays low in a small ball around the weights tends to hold up
better under a shift of the input distribution (another drive, another camera) than a sharp
one. Each step takes two gradients: one at the weights, then one at the weights moved
``rho`` along that gradient's direction (the worst nearby point to first order); the
optimiser steps with the second from the original weights. It costs a second forward and
backward pass per step. Measured in docs/training.md ("Sharpness-aware minimisation").
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ..errors import StudioError


def check_rho(rho: float) -> None:
    """A bad ``--sam-rho`` fails in one line before any data is loaded."""
    if not rho >= 0:
        raise StudioError(f"--sam-rho {rho}: must be 0 (off) or a positive radius, e.g. 0.05")


class SharpnessStep:
    """Replaces the gradients that ``loss.backward()`` left in ``params`` by the gradients
    at the worst point within radius ``rho`` (one global L2 ball over all of them)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], rho: float):
        self.params = [p for p in params if p.requires_grad]
        self.rho = rho

    def second_pass(self, compute_loss: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Move the weights up the gradient, take the gradient there with ``compute_loss``
        (the same batch), and move them back; returns the loss at the moved weights."""
        with_grad = [p for p in self.params if p.grad is not None]
        with torch.no_grad():
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in with_grad]))
            scale = self.rho / (norm + 1e-12)
            kept = [p.detach().clone() for p in with_grad]  # restored exactly, not by subtracting
            for p in with_grad:
                p.add_(p.grad * scale)
        for p in self.params:
            p.grad = None
        loss = compute_loss()
        loss.backward()
        with torch.no_grad():
            for p, k in zip(with_grad, kept):
                p.copy_(k)
        return loss.detach()
