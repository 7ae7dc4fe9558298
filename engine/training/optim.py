"""The optimizer side of a run: the learning-rate curve, parameter groups, and optimizer
state matched by parameter name on ``--resume``.

Why by name: the model may register its modules in another order than the run that saved
the checkpoint (and auxiliary heads add groups of their own), while AdamW's saved state is
indexed by position; matching names keeps a resumed run bit-identical.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import StudioError
from .config import TrainConfig


def lr_factor(it: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of the base lr at iteration ``it``: linear warm-up from 1e-6, then poly."""
    poly = (1.0 - min(it, total) / max(total, 1)) ** cfg.poly_power
    f = poly * (1.0 - cfg.min_lr / cfg.lr) + cfg.min_lr / cfg.lr if cfg.lr > 0 else poly
    if it < cfg.warmup_iters:
        k = it / cfg.warmup_iters
        f *= 1e-6 + (1.0 - 1e-6) * k
    return f


def _group_key(name: str, p_ndim: int) -> tuple[bool, bool]:
    return name.startswith("decode_head."), p_ndim > 1


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Backbone and head (lr x head_lr_mult) groups; norms and biases get no weight decay.
    Each group also carries its parameter names (``names``) so optimizer state can be
    matched by name on resume, whatever order the model registers its modules in."""
    groups: dict[tuple[bool, bool], list] = {(h, d): [] for h in (False, True) for d in (False, True)}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[_group_key(name, p.ndim)].append((name, p))
    out = []
    for (head, decay), items in groups.items():
        if items:
            out.append({"params": [p for _, p in items], "names": [n for n, _ in items],
                        "lr_mult": cfg.head_lr_mult if head else 1.0,
                        "weight_decay": cfg.weight_decay if decay else 0.0})
    return out


def side_param_groups(module: nn.Module, prefix: str, lr_mult: float, weight_decay: float) -> list[dict]:
    """Groups of a training-only module beside the model (auxiliary heads, LwF's kept
    classifier): named ``prefix.*`` for resume, biases and norms without weight decay."""
    named = [(f"{prefix}.{n}", p) for n, p in module.named_parameters()]
    no_decay, decay = [i for i in named if i[1].ndim <= 1], [i for i in named if i[1].ndim > 1]
    return [{"params": [p for _, p in items], "names": [n for n, _ in items], "lr_mult": lr_mult,
             "weight_decay": wd} for items, wd in ((no_decay, 0.0), (decay, weight_decay)) if items]


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict, saved_names: list[str]) -> None:
    """Load AdamW state saved under another parameter order: indices are remapped by name."""
    new_names = [n for g in optimizer.param_groups for n in g["names"]]
    if sorted(saved_names) != sorted(new_names):
        raise StudioError("the checkpoint's optimizer does not match this model's parameters")
    old_index = {n: i for i, n in enumerate(saved_names)}
    remapped = {"state": {}, "param_groups": []}
    new_i = 0
    for g_new, g_old in zip(optimizer.param_groups, saved["param_groups"]):
        ids = []
        for n in g_new["names"]:
            if old_index[n] in saved["state"]:
                remapped["state"][new_i] = saved["state"][old_index[n]]
            ids.append(new_i)
            new_i += 1
        remapped["param_groups"].append({**g_old, "params": ids, "names": list(g_new["names"])})
    optimizer.load_state_dict(remapped)


def saved_param_names(ckpt: dict, model: nn.Module, cfg: TrainConfig) -> list[str]:
    """Flat optimizer parameter order of a checkpoint. Checkpoints written before names were
    stored: rebuilt from the saved state_dict's key order (= that model's registration order)."""
    if ckpt.get("param_names"):
        return list(ckpt["param_names"])
    params = dict(model.named_parameters())
    groups: dict[tuple[bool, bool], list[str]] = {(h, d): [] for h in (False, True) for d in (False, True)}
    for name in ckpt["model"]:
        if name in params:
            groups[_group_key(name, params[name].ndim)].append(name)
    return [n for names in groups.values() for n in names]
