"""Grow a trained TopFormer-Tiny into a Small or Base (or a Small into a Base) that computes the same function.

No pretrained Small or Base weights are at hand offline, and from scratch on a few hundred
CamVid frames they generalise far worse to unseen drives than the ADE20K-started Tiny
(about 36 against 45 mIoU on drive 0006R0). Widening the Tiny (Net2Net, Chen et al. 2016)
gives the bigger network the Tiny's ADE20K features to start from:

* every wider tensor's channels are copies of the Tiny's (first the originals, then random
  repeats); whoever sums over a widened input divides each original's weight among its copies
  with random positive shares, so the output is unchanged (how far copies then learn apart: below);
* extra attention heads copy whole heads (query/key/value), with the value shares as above;
* the extra 1/32 layer of Small/Base is a residual block whose output BatchNorm starts at 0,
  i.e. the identity; its other weights are layer 9's, so its BatchNorm statistics are sane;
* Tiny's depthwise head fuse becomes the dense fuse of Small/Base (a diagonal matrix).

In eval mode (and with ``--freeze-bn``) the grown model's logits equal the Tiny's to float
precision (``tests/test_grow.py``).

The random shares alone set the copies apart only a little under AdamW: copies see the same
input, so their outgoing weights take the same steps, and AdamW takes the shares' scale out of
their incoming gradients. Measured on a 30-epoch Small stage: 90 % of the copy pairs of the
widened convs still have cosine > 0.999 at the end (mean 0.9961). ``noise``
(``train --grow-noise``) multiplies every weight of a copied channel by 1 + noise x N(0, 1),
drawn from a stream of its own so that the layout (which channel copies which) is the same
as without it; the function then changes a little (0.1: 96.5 % of pixels keep their label).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import StudioError
from ..models.topformer import VARIANTS, TopFormerConfig, create_model

GROWABLE = {("tiny", "small"), ("tiny", "base"), ("small", "base")}
_BN = ("weight", "bias", "running_mean", "running_var")
NOISE_SEED = 1234  # the copies' jitter draws from its own stream; the widening's seed stays apart


@dataclass(frozen=True)
class Widening:
    """How a tensor axis of ``len(index)`` channels is built from a narrower one."""

    index: torch.Tensor  # new channel -> the old channel it copies
    share: torch.Tensor  # its part of the old channel's weight in sums (copies add up to 1)

    @property
    def size(self) -> int:
        return len(self.index)


def identity(n: int) -> Widening:
    return Widening(torch.arange(n), torch.ones(n))


def widening(old: int, new: int, gen: torch.Generator) -> Widening:
    """The ``old`` channels, then ``new - old`` random repeats; random shares per copy group."""
    if new < old:
        raise StudioError(f"cannot grow {old} channels into {new}")
    index = torch.cat([torch.arange(old), torch.randint(old, (new - old,), generator=gen)])
    return Widening(index, random_shares(index, old, gen))


def random_shares(index: torch.Tensor, old: int, gen: torch.Generator) -> torch.Tensor:
    """Positive shares, 0.75..1.25 before normalising, that add up to 1 over each old channel's copies."""
    raw = 0.75 + 0.5 * torch.rand(len(index), generator=gen)
    total = torch.zeros(old).index_add_(0, index, raw)
    return raw / total[index]


def blocks(w: Widening, block: int) -> Widening:
    """Each channel of ``w`` becomes ``block`` consecutive channels (attention heads)."""
    offsets = torch.arange(block)
    index = (w.index[:, None] * block + offsets).reshape(-1)
    return Widening(index, w.share.repeat_interleave(block))


def concat(parts: list[tuple[Widening, int]]) -> Widening:
    """Widenings of consecutive channel ranges (each with its old size) as one axis."""
    index, share, offset = [], [], 0
    for w, old in parts:
        index.append(w.index + offset)
        share.append(w.share)
        offset += old
    return Widening(torch.cat(index), torch.cat(share))


class _Grower:
    """Copies one tensor group at a time from the Tiny's state into the wider one."""

    def __init__(self, src: dict, dst: dict, noise: float = 0.0, noise_gen: torch.Generator | None = None):
        self.src, self.dst, self.noise = src, dst, noise
        self.noise_gen = noise_gen or torch.Generator().manual_seed(NOISE_SEED)

    def conv(self, key: str, out: Widening, inp: Widening | None) -> None:
        """``inp=None``: a depthwise conv (one input per output channel)."""
        w = self.src[key].index_select(0, out.index)
        if inp is not None:
            w = w.index_select(1, inp.index) * inp.share.view(1, -1, 1, 1)
        if self.noise > 0:
            w = self.jitter_copies(w, out)
        self.put(key, w)

    def jitter_copies(self, w: torch.Tensor, out: Widening) -> torch.Tensor:
        """Each weight of an output channel that has a copy, times 1 + noise x N(0, 1)."""
        eps = torch.randn(w.shape, generator=self.noise_gen)  # drawn for every conv: a fixed sequence
        copied = torch.bincount(out.index)[out.index] > 1
        return torch.where(copied.view(-1, 1, 1, 1), w * (1 + self.noise * eps), w)

    def bn(self, prefix: str, out: Widening) -> None:
        for name in _BN:
            self.put(f"{prefix}.{name}", self.src[f"{prefix}.{name}"].index_select(0, out.index))
        self.put(f"{prefix}.num_batches_tracked", self.src[f"{prefix}.num_batches_tracked"])

    def conv_bn(self, prefix: str, out: Widening, inp: Widening | None, conv: str = "c") -> None:
        self.conv(f"{prefix}.{conv}.weight", out, inp)
        self.bn(f"{prefix}.bn", out)

    def put(self, key: str, value: torch.Tensor) -> None:
        if tuple(value.shape) != tuple(self.dst[key].shape):
            raise StudioError(f"growing {key}: built {tuple(value.shape)}, need {tuple(self.dst[key].shape)}")
        self.dst[key] = value.clone()


def _grow_pyramid(g: _Grower, src: TopFormerConfig, dst: TopFormerConfig, gen: torch.Generator) -> list[Widening]:
    """Token pyramid layers; returns the widening of each layer's output."""
    stream, outs, cin_old = identity(16), [], 16
    g.conv_bn("backbone.tpm.stem.0", stream, identity(3))
    for i, ((_, t, c_old, s), (_, _, c_new, _)) in enumerate(zip(src.layers, dst.layers)):
        p = f"backbone.tpm.layer{i + 1}.conv"
        residual = s == 1 and c_old == cin_old
        out = stream if residual else widening(c_old, c_new, gen)
        if t == 1:
            g.conv_bn(f"{p}.0", stream, None)
            g.conv_bn(f"{p}.2", out, stream)
        else:
            hidden = widening(cin_old * t, stream.size * t, gen)
            g.conv_bn(f"{p}.0", hidden, stream)
            g.conv_bn(f"{p}.2", hidden, None)
            g.conv_bn(f"{p}.4", out, hidden)
        outs.append(out)
        stream, cin_old = out, c_old
    for i in range(len(src.layers), len(dst.layers)):
        _identity_layer(g, len(src.layers), i + 1, stream, gen)
        outs.append(stream)
    return outs


def _identity_layer(g: _Grower, like: int, number: int, stream: Widening, gen: torch.Generator) -> None:
    """An extra residual layer: layer ``like``'s weights, output BatchNorm zero (= identity)."""
    src_p, p = f"backbone.tpm.layer{like}.conv", f"backbone.tpm.layer{number}.conv"
    hidden_old = g.src[f"{src_p}.0.c.weight"].shape[0]
    hidden = widening(hidden_old, g.dst[f"{p}.0.c.weight"].shape[0], gen)
    alias = _Grower({k.replace(src_p, p): v for k, v in g.src.items() if k.startswith(src_p)}, g.dst,
                    g.noise, g.noise_gen)
    alias.conv_bn(f"{p}.0", hidden, stream)
    k_new, k_old = g.dst[f"{p}.2.c.weight"].shape[-1], g.src[f"{src_p}.2.c.weight"].shape[-1]
    crop = (k_old - k_new) // 2
    alias.src[f"{p}.2.c.weight"] = alias.src[f"{p}.2.c.weight"][..., crop:crop + k_new, crop:crop + k_new]
    alias.conv_bn(f"{p}.2", hidden, None)
    alias.conv_bn(f"{p}.4", stream, hidden)
    g.dst[f"{p}.4.bn.weight"] = torch.zeros_like(g.dst[f"{p}.4.bn.weight"])
    g.dst[f"{p}.4.bn.bias"] = torch.zeros_like(g.dst[f"{p}.4.bn.bias"])


def _grow_transformer(g: _Grower, src: TopFormerConfig, dst: TopFormerConfig, dim: Widening,
                      gen: torch.Generator) -> None:
    heads = widening(src.num_heads, dst.num_heads, gen)
    qk = blocks(heads, src.key_dim)
    v = blocks(heads, src.key_dim * src.attn_ratio)
    v = Widening(v.index, random_shares(v.index, src.num_heads * src.key_dim * src.attn_ratio, gen))  # apart per channel
    dim_old = sum(src.channels)
    for b in range(src.depths):
        p = f"backbone.trans.transformer_blocks.{b}"
        g.conv_bn(f"{p}.attn.to_q", qk, dim)
        g.conv_bn(f"{p}.attn.to_k", qk, dim)
        g.conv_bn(f"{p}.attn.to_v", v, dim)
        g.conv_bn(f"{p}.attn.proj.1", dim, v)
        hidden = widening(dim_old * src.mlp_ratio, dim.size * dst.mlp_ratio, gen)
        g.conv_bn(f"{p}.mlp.fc1", hidden, dim)
        g.conv(f"{p}.mlp.dwconv.weight", hidden, None)
        g.put(f"{p}.mlp.dwconv.bias", g.src[f"{p}.mlp.dwconv.bias"].index_select(0, hidden.index))
        g.conv_bn(f"{p}.mlp.fc2", dim, hidden)


def grow_state(state: dict, source: str, target: str, num_classes: int, seed: int = 0,
               via: str | None = None, noise: float = 0.0) -> dict:
    """A ``target`` state_dict computing what the ``source`` state computes (see module doc).

    ``via``: grow into that variant first. A Base grown from a Small that was itself grown from
    a Tiny has the channel layout of Tiny -> Small -> Base, not of Tiny -> Base, so a Tiny state
    that must line up with it channel by channel (the LwF classifier, the blend start) takes the
    same two seeded steps. ``noise``: the copies' jitter (module doc), at each step."""
    if via is not None and via not in (source, target):
        return grow_state(grow_state(state, source, via, num_classes, seed, noise=noise), via, target, num_classes,
                          seed, noise=noise)
    if (source, target) not in GROWABLE:
        raise StudioError(f"cannot grow a TopFormer-{source} into a {target}; growable: "
                          + ", ".join(f"{a} -> {b}" for a, b in sorted(GROWABLE)))
    src, dst = VARIANTS[source], VARIANTS[target]
    gen = torch.Generator().manual_seed(seed)
    out = create_model(target, num_classes).state_dict()
    g = _Grower(state, out, noise)
    layer_outs = _grow_pyramid(g, src, dst, gen)
    tokens = [layer_outs[i] for i in dst.embed_out_indices]
    dim = concat(list(zip(tokens, src.channels)))
    _grow_transformer(g, src, dst, dim, gen)
    head = widening(src.head_channels, dst.head_channels, gen)
    for i in dst.decode_out_indices:
        for part in ("local_embedding", "global_embedding", "global_act"):
            g.conv_bn(f"backbone.SIM.{i}.{part}", head, tokens[i], conv="conv")
    fuse = "decode_head.linear_fuse"
    w = state[f"{fuse}.conv.weight"]
    if src.depthwise_fuse:  # a depthwise 1x1 conv is a diagonal dense one
        w = torch.diag_embed(w.flatten()).view(w.shape[0], w.shape[0], 1, 1)
    g.src = {**state, f"{fuse}.conv.weight": w}
    g.conv_bn(fuse, head, head, conv="conv")
    g.conv("decode_head.conv_seg.weight", identity(num_classes), head)
    g.put("decode_head.conv_seg.bias", state["decode_head.conv_seg.bias"])
    return out
