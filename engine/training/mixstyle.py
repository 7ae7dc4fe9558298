"""MixStyle (``--mixstyle P``; Zhou et al., ICLR 2021): feature-statistics mixing, for
footage the model never saw.

Why: in early convolutional features, each channel's mean and spread over the image carry
the "style" of a frame (light, colour, contrast, camera), the layout carries its content.
Another drive is mostly another style. With probability P per batch, each crop's early
features are normalised by their own channel statistics and given statistics mixed with
those of another crop of the batch (a Beta(0.1, 0.1) weight), so the network sees the same
content in styles between the drives it trains on. Training only: nothing is added to the
model, so the shipped graph and its speed do not change. Measured in docs/training.md
("MixStyle").
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import StudioError
from .config import MIX_LAYERS

ALPHA = 0.1  # Beta(alpha, alpha): most weights near 0 or 1, some in between (the paper's value)
EPS = 1e-6


def check_mixstyle(p: float, at: str = "early") -> None:
    """A bad ``--mixstyle`` or ``--mixstyle-at`` fails in one line before any data is loaded."""
    if not 0 <= p <= 1:
        raise StudioError(f"--mixstyle {p}: must be a probability per batch from 0 (off) to 1, e.g. 0.5")
    if at not in MIX_LAYERS:
        raise StudioError(f"--mixstyle-at {at}: must be one of {', '.join(MIX_LAYERS)}")
    if at != "early" and p == 0:
        raise StudioError(f"--mixstyle-at {at}: MixStyle is off; add --mixstyle P (e.g. 0.5)")


def mix_styles(x: torch.Tensor, weight: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) with each sample's channel means and spreads replaced by
    ``weight`` x its own + (1 - ``weight``) x those of sample ``partner``. The statistics
    are constants for the gradient (as in the paper): the content path learns, not the style."""
    mu = x.mean(dim=(2, 3), keepdim=True).detach()
    sig = (x.var(dim=(2, 3), keepdim=True) + EPS).sqrt().detach()
    w = weight.to(x.dtype).view(-1, 1, 1, 1)
    mu_mix = w * mu + (1 - w) * mu[partner]
    sig_mix = w * sig + (1 - w) * sig[partner]
    return (x - mu) / sig * sig_mix + mu_mix


class StyleMixer:
    """Forward hooks on the shallow features of a TopFormer's token pyramid, where style
    lives (``MIX_LAYERS[at]`` of: the stem, then the first two token layers). They act only
    while those modules are in training mode; draws come from torch's generator, which the
    trainer seeds per epoch, so a resumed run mixes the same way."""

    def __init__(self, model: nn.Module, p: float, at: str = "early"):
        tpm = model.backbone.tpm
        self.p = p
        layers = [tpm.stem] + [getattr(tpm, tpm.layer_names[i]) for i in tpm.out_indices[:2]]
        self.handles = [m.register_forward_hook(self._hook) for m in layers[:MIX_LAYERS[at]]]

    def _hook(self, module: nn.Module, inputs: tuple, out: torch.Tensor) -> torch.Tensor | None:
        if not module.training or self.p <= 0 or out.shape[0] < 2 or torch.rand(()) >= self.p:
            return None
        n = out.shape[0]
        weight = torch.distributions.Beta(ALPHA, ALPHA).sample((n,)).to(out.device)
        partner = torch.randperm(n).to(out.device)
        return mix_styles(out, weight, partner)
