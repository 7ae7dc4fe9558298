"""The weights a training run ships: one run's checkpoint, or the mean of several (a soup).

A run spec is a run folder, or several separated by commas (``runs/a,runs/b``). Several
runs of one recipe from one start that differ only in their seed end in one basin, so the
mean of their weights is a working network that is usually more accurate than each
("model soups", Wortsman et al., ICML 2022): a free ensemble, no slower at run time.
``blend_init`` then mixes the result with the start (``pretrained.blend_with_init``).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import StudioError
from ..models.topformer import create_model


def run_folders(spec: str | Path) -> list[Path]:
    """The run folders of a run spec: ``RUN`` or ``RUN,RUN,...`` (a soup)."""
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise StudioError(f"no run folder in {spec!r}")
    if len(set(parts)) != len(parts):
        raise StudioError(f"a run appears twice in {spec!r}")
    return [Path(p) for p in parts]


def spec_name(spec: str | Path) -> str:
    """A run spec as folder names, e.g. ``a + b`` for a soup of runs/a and runs/b."""
    return " + ".join(p.name for p in run_folders(spec))


def read_checkpoint(path: Path) -> tuple[dict, dict, dict]:
    """(weights, checkpoint dict, run config) of RUN/best.pth or RUN/last.pth; last.pth's EMA
    weights when it kept them (they generalise better)."""
    if not path.is_file():
        raise StudioError(f"no checkpoint {path}: train first (python main.py train --out {path.parent} ...)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or not a torch file
        raise StudioError(f"cannot read {path}: {exc}") from None
    if not isinstance(ckpt, dict):
        raise StudioError(f"{path} is not a training checkpoint of this project")
    if "state_dict" in ckpt:
        state = ckpt["state_dict"]
    elif "model" in ckpt:
        state = ckpt["ema"]["state"] if ckpt.get("ema") else ckpt["model"]
    else:
        raise StudioError(f"{path} is not a training checkpoint of this project")
    return state, ckpt, ckpt.get("config") or {}


# What runs must share to be averaged, and why it is refused when they do not.
SOUP_NEEDS = {"variant": "of one network", "num_classes": "of one network", "init": "from one start",
              "holdout_drive": "trained on the same frames", "train_splits": "trained on the same frames"}


def soup(states: list[dict], configs: list[dict], runs: list[Path]) -> dict:
    """The mean of the float tensors of ``states`` (integer buffers: the first run's).

    Only runs of one variant that started from the same weights share a basin; anything
    else averages into noise, so it is refused, as are runs trained on different frames."""
    first = configs[0]
    for run, cfg, state in zip(runs[1:], configs[1:], states[1:]):
        for key, needs in SOUP_NEEDS.items():
            if cfg.get(key) != first.get(key):
                raise StudioError(f"cannot average {runs[0]} and {run}: their {key} differs "
                                  f"({first.get(key)} vs {cfg.get(key)}); a soup needs runs {needs}")
        if set(state) != set(states[0]):
            raise StudioError(f"cannot average {runs[0]} and {run}: different layers")
    return {k: (sum(s[k] for s in states) / len(states)) if v.is_floating_point() else v
            for k, v in states[0].items()}


def check_blend_options(blend_init: float | None, blend_start: str | Path | None) -> None:
    """``--blend-start`` only says what ``--blend-init W`` blends with: alone it would be ignored."""
    if blend_start is not None and blend_init is None:
        raise StudioError("--blend-start names what --blend-init W blends with: give --blend-init too")


def load_run_weights(spec: str | Path, checkpoint: str = "best.pth", blend_init: float | None = None,
                     blend_start: str | Path | None = None, class_bias: dict[str, float] | None = None,
                     classes: Sequence[str] = ()) -> tuple[torch.nn.Module, dict, dict]:
    """(model in eval mode, first run's checkpoint dict, first run's config) for a run spec:
    one run's weights or the soup of several, blended with the start (the run's --init, or
    ``blend_start``) when ``blend_init``, then ``class_bias`` (class name -> logit offset, names
    from ``classes``) added to the classifier's bias (``class_bias.py``)."""
    check_blend_options(blend_init, blend_start)
    runs = run_folders(spec)
    read = [read_checkpoint(run / checkpoint) for run in runs]
    states, ckpt, cfg = [r[0] for r in read], read[0][1], read[0][2]
    state = states[0] if len(runs) == 1 else soup(states, [r[2] for r in read], runs)
    variant = ckpt.get("variant") or cfg.get("variant")
    num_classes = ckpt.get("num_classes") or cfg.get("num_classes")
    if blend_init is not None:
        from .pretrained import blend_with_init
        state = blend_with_init(state, cfg, blend_init, blend_start)
    if class_bias:
        from .class_bias import apply_class_bias
        state = apply_class_bias(state, class_bias, classes)
    model = create_model(variant, num_classes)
    model.load_state_dict(state, strict=True)
    return model.eval(), ckpt, cfg
