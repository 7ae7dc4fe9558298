"""TopFormer (CVPR 2022) in PyTorch, laid out exactly like the official mmseg checkpoints.

Module names mirror hustvl/TopFormer so that ``state_dict()`` keys and shapes equal
an official checkpoint's (``backbone.tpm.*``, ``backbone.trans.*``, ``backbone.SIM.*``,
``decode_head.*``): official weights load with ``strict=True``. The variants are data
(:data:`VARIANTS`), not copies of code.

Only training and export import this module; the run-time app never needs torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# (kernel, expand ratio, output channels, stride) per inverted-residual layer.
_TINY_LAYERS = (
    (3, 1, 16, 1), (3, 4, 16, 2), (3, 3, 16, 1), (5, 3, 32, 2), (5, 3, 32, 1),
    (3, 3, 64, 2), (3, 3, 64, 1), (5, 6, 96, 2), (5, 6, 96, 1),
)


def _wider_layers(c1: int, c2: int, c3: int, c4: int) -> tuple[tuple[int, int, int, int], ...]:
    """Small/Base token pyramids: Tiny's shape with wider stages and one more 1/32 layer."""
    return (
        (3, 1, 16, 1), (3, 4, c1, 2), (3, 3, c1, 1), (5, 3, c2, 2), (5, 3, c2, 1),
        (3, 3, c3, 2), (3, 3, c3, 1), (5, 6, c4, 2), (5, 6, c4, 1), (3, 6, c4, 1),
    )


@dataclass(frozen=True)
class TopFormerConfig:
    """Hyper-parameters of one TopFormer variant (official local_configs/topformer/*)."""

    layers: tuple[tuple[int, int, int, int], ...]
    embed_out_indices: tuple[int, ...]  # TPM layers whose outputs become tokens
    channels: tuple[int, ...]  # channels of those outputs
    head_channels: int  # width of the SIM outputs and of the SimpleHead
    num_heads: int
    depthwise_fuse: bool  # Tiny's head fuses with a depthwise 1x1 conv
    depths: int = 4
    key_dim: int = 16
    attn_ratio: int = 2
    mlp_ratio: int = 2
    c2t_stride: int = 2
    decode_out_indices: tuple[int, ...] = field(default=(1, 2, 3))


VARIANTS: dict[str, TopFormerConfig] = {
    "tiny": TopFormerConfig(_TINY_LAYERS, (2, 4, 6, 8), (16, 32, 64, 96), 128, 4, True),
    "small": TopFormerConfig(_wider_layers(24, 48, 96, 128), (2, 4, 6, 9), (24, 48, 96, 128), 192, 6, False),
    "base": TopFormerConfig(_wider_layers(32, 64, 128, 160), (2, 4, 6, 9), (32, 64, 128, 160), 256, 8, False),
    # The official Cityscapes Base keeps Base's backbone but a 128-wide head.
    "base-cityscapes": TopFormerConfig(_wider_layers(32, 64, 128, 160), (2, 4, 6, 9), (32, 64, 128, 160), 128, 8, False),
}

# Official input normalisation (RGB order, 0..255 pixels).
MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)


class ConvBN(nn.Sequential):
    """Bias-free conv + BatchNorm, named ``c``/``bn`` like the official ``Conv2d_BN``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, bn_init: float = 1.0):
        super().__init__()
        self.add_module("c", nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(cout))
        nn.init.constant_(self.bn.weight, bn_init)
        nn.init.zeros_(self.bn.bias)


class ConvNormAct(nn.Module):
    """1x1 conv + BN (+ optional ReLU), named ``conv``/``bn`` like mmcv's ``ConvModule``."""

    def __init__(self, cin: int, cout: int, groups: int = 1, relu: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block; ``conv`` indices match the official layout (acts occupy slots)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [ConvBN(cin, hidden), nn.ReLU(inplace=True)]
        layers += [ConvBN(hidden, hidden, kernel, stride, groups=hidden), nn.ReLU(inplace=True), ConvBN(hidden, cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class TokenPyramid(nn.Module):
    """Stem + inverted residuals; returns the outputs of the token layers (1/4 .. 1/32)."""

    def __init__(self, cfg: TopFormerConfig):
        super().__init__()
        self.out_indices = cfg.embed_out_indices
        self.stem = nn.Sequential(ConvBN(3, 16, 3, 2), nn.ReLU(inplace=True))
        cin = 16
        self.layer_names = []
        for i, (k, t, c, s) in enumerate(cfg.layers):
            name = f"layer{i + 1}"
            self.add_module(name, InvertedResidual(cin, c, k, s, t))
            self.layer_names.append(name)
            cin = c

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for i, name in enumerate(self.layer_names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


class Attention(nn.Module):
    """Multi-head attention over the pooled tokens (1x1 convs; no 1/sqrt(d) scale, as official)."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, attn_ratio: int):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.value_dim = attn_ratio * key_dim
        self.to_q = ConvBN(dim, key_dim * num_heads)
        self.to_k = ConvBN(dim, key_dim * num_heads)
        self.to_v = ConvBN(dim, self.value_dim * num_heads)
        self.proj = nn.Sequential(nn.ReLU6(), ConvBN(self.value_dim * num_heads, dim, bn_init=0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q = self.to_q(x).reshape(b, self.num_heads, self.key_dim, h * w).transpose(2, 3)
        k = self.to_k(x).reshape(b, self.num_heads, self.key_dim, h * w)
        v = self.to_v(x).reshape(b, self.num_heads, self.value_dim, h * w).transpose(2, 3)
        out = torch.matmul(torch.matmul(q, k).softmax(dim=-1), v)
        out = out.transpose(2, 3).reshape(b, self.num_heads * self.value_dim, h, w)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = ConvBN(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=True)
        self.act = nn.ReLU6()
        self.fc2 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


def _drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the whole residual branch for a random subset of samples."""
    if p == 0.0 or not training:
        return x
    keep = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device) >= p
    return x * keep / (1 - p)


class Block(nn.Module):
    def __init__(self, dim: int, cfg: TopFormerConfig, drop_path: float):
        super().__init__()
        self.attn = Attention(dim, cfg.key_dim, cfg.num_heads, cfg.attn_ratio)
        self.mlp = Mlp(dim, dim * cfg.mlp_ratio)
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + _drop_path(self.attn(x), self.drop_path, self.training)
        return x + _drop_path(self.mlp(x), self.drop_path, self.training)


class BasicLayer(nn.Module):
    def __init__(self, dim: int, cfg: TopFormerConfig, drop_path_rate: float):
        super().__init__()
        rates = torch.linspace(0, drop_path_rate, cfg.depths).tolist()
        self.transformer_blocks = nn.ModuleList(Block(dim, cfg, r) for r in rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.transformer_blocks:
            x = block(x)
        return x


def adaptive_avg_pool(x: torch.Tensor, out_h, out_w) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` that also exports to ONNX with dynamic sizes.

    ONNX has no adaptive pooling for sizes that do not divide evenly (e.g. a 7x9 map
    pooled to 4x5). During export the same bins (start=floor(i*n/p), end=ceil((i+1)*n/p))
    are averaged from running sums, which traces into shape-generic ops.
    """
    if not torch.onnx.is_in_onnx_export():
        return F.adaptive_avg_pool2d(x, (int(out_h), int(out_w)))
    return _pool_axis(_pool_axis(x, out_h, 2), out_w, 3)


def _pool_axis(x: torch.Tensor, p, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    i = torch.arange(p, device=x.device)
    start = torch.div(i * n, p, rounding_mode="floor")
    end = torch.div((i + 1) * n + p - 1, p, rounding_mode="floor")
    zeros = torch.zeros_like(x.narrow(dim, 0, 1))
    sums = torch.cat([zeros, torch.cumsum(x, dim)], dim)
    total = sums.index_select(dim, end) - sums.index_select(dim, start)
    count = (end - start).to(x.dtype)
    shape = [1, 1, 1, 1]
    shape[dim] = -1
    return total / count.reshape(shape)


class PyramidPoolAgg(nn.Module):
    """Pools every token level to the size of the 1/32 map divided by ``stride`` and concatenates."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        h, w = inputs[-1].shape[2:]
        h, w = (h - 1) // self.stride + 1, (w - 1) // self.stride + 1
        return torch.cat([adaptive_avg_pool(t, h, w) for t in inputs], dim=1)


class InjectionMultiSum(nn.Module):
    """Semantic injection: local tokens gated by, and summed with, upsampled global semantics."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.local_embedding = ConvNormAct(cin, cout)
        self.global_embedding = ConvNormAct(cin, cout)
        self.global_act = ConvNormAct(cin, cout)

    def forward(self, local: torch.Tensor, global_: torch.Tensor) -> torch.Tensor:
        size = local.shape[2:]
        gate = F.interpolate(F.hardsigmoid(self.global_act(global_)), size=size, mode="bilinear", align_corners=False)
        feat = F.interpolate(self.global_embedding(global_), size=size, mode="bilinear", align_corners=False)
        return self.local_embedding(local) * gate + feat


class TopFormerBackbone(nn.Module):
    def __init__(self, cfg: TopFormerConfig, drop_path_rate: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.tpm = TokenPyramid(cfg)
        self.ppa = PyramidPoolAgg(cfg.c2t_stride)
        self.trans = BasicLayer(sum(cfg.channels), cfg, drop_path_rate)
        self.SIM = nn.ModuleList(
            InjectionMultiSum(c, cfg.head_channels) if i in cfg.decode_out_indices else nn.Identity()
            for i, c in enumerate(cfg.channels)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        tokens = self.tpm(x)
        semantics = self.trans(self.ppa(tokens)).split(list(self.cfg.channels), dim=1)
        return [self.SIM[i](tokens[i], semantics[i]) for i in self.cfg.decode_out_indices]


class SimpleHead(nn.Module):
    """Sum of the injected features at 1/8, fuse (1x1 conv-BN-ReLU), dropout, classifier."""

    def __init__(self, channels: int, num_classes: int, depthwise: bool, dropout: float = 0.1):
        super().__init__()
        # Registration order = official state_dict order (mmseg's base head makes conv_seg first).
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        self.dropout = nn.Dropout2d(dropout)
        self.linear_fuse = ConvNormAct(channels, channels, groups=channels if depthwise else 1, relu=True)

    def fuse(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The features the classifier reads (training reads them too: engine/training/lwf.py)."""
        x = feats[0]
        for f in feats[1:]:
            x = x + F.interpolate(f, size=x.shape[2:], mode="bilinear", align_corners=False)
        return self.dropout(self.linear_fuse(x))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.conv_seg(self.fuse(feats))


class TopFormer(nn.Module):
    """Backbone + SimpleHead; ``forward`` returns logits at 1/8 of the (normalised) input."""

    def __init__(self, variant: str, num_classes: int, drop_path_rate: float = 0.0):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown TopFormer variant {variant!r}; known: {', '.join(VARIANTS)}")
        cfg = VARIANTS[variant]
        self.variant, self.num_classes = variant, num_classes
        self.backbone = TopFormerBackbone(cfg, drop_path_rate)
        self.decode_head = SimpleHead(cfg.head_channels, num_classes, cfg.depthwise_fuse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_head(self.backbone(x))


def create_model(variant: str, num_classes: int, drop_path_rate: float = 0.0) -> TopFormer:
    """The one factory for TopFormer models (raises on unknown variants)."""
    return TopFormer(variant, num_classes, drop_path_rate)
