"""Exponential moving average of a model's weights (torch)."""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    """EMA of all float parameters and buffers (BN statistics too); integer buffers are
    copied. Warms up as min(decay, (1+n)/(10+n)) so early averages are not dominated by the
    random initialisation. The averages live on the model's device."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay of the next update."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        self.updates += 1
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "state": self.state}

    def load_state_dict(self, sd: dict) -> None:
        """Restore saved averages onto the device the averages are kept on now (a run saved
        on CPU resumes on CUDA and the other way round)."""
        self.decay, self.updates = sd["decay"], sd["updates"]
        self.state = {k: v.to(self.state[k].device if k in self.state else "cpu").clone()
                      for k, v in sd["state"].items()}
