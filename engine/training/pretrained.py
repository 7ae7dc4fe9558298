"""Start a run from another dataset's TopFormer, e.g. the official ADE20K Tiny.

From scratch on 2 CPU cores a model sees a few hundred street frames; a network that first
learned 20k ADE20K scenes generalises far better to drives it never saw. Every tensor but the
classifier is copied; each target class's classifier row is the row of the source class it
corresponds to (``CLASS_MAP``), so training starts from a model that already segments
streets roughly (ADE20K Tiny zero-shot on CamVid drive 0006R0: 44.6 mIoU, 0001TP: 34.7)
instead of from a random classifier. Averaging the rows of several source classes (building + house +
wall, ...) scored lower (32), so each target class takes exactly one. A Tiny checkpoint
given to a Small or Base run is first grown into that variant (``grow.py``).

``blend_with_init`` mixes a finished run's weights with the weights it started from
(WiSE-FT), for shipping: fine-tuning on three drives trades some of what ADE20K taught for
CamVid's look, and part of the start brings it back on drives the run never saw.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import StudioError
from ..models.checkpoint import detect_variant, read_state_dict
from ..models.datasets import dataset_info
from .config import TrainConfig
from .grow import GROWABLE, grow_state

SEG_WEIGHT, SEG_BIAS = "decode_head.conv_seg.weight", "decode_head.conv_seg.bias"

# (source dataset, target dataset) -> target class -> the source class it corresponds to.
CLASS_MAP: dict[tuple[str, str], dict[str, str]] = {
    ("ade20k", "camvid"): {
        "sky": "sky", "building": "building", "pole": "pole", "road": "road", "pavement": "sidewalk",
        "tree": "tree", "sign_symbol": "signboard", "fence": "fence", "car": "car",
        "pedestrian": "person", "bicyclist": "bicycle",
    },
}


def dataset_with_classes(num_classes: int) -> str | None:
    """The known dataset with exactly this many classes (ADE20K: 150), if any."""
    for name in ("ade20k", "cityscapes", "camvid"):
        if dataset_info(name).num_classes == num_classes:
            return name
    return None


def mapped_classifier(weight: torch.Tensor, bias: torch.Tensor, source: str, target: str
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier rows for the target classes, each its source class's row."""
    mapping = CLASS_MAP.get((source, target))
    if mapping is None:
        raise StudioError(f"--init: no class map from {source} to {target}")
    src = {name: i for i, name in enumerate(dataset_info(source).classes)}
    try:
        rows = [src[mapping[cls]] for cls in dataset_info(target).classes]
    except KeyError as exc:
        raise StudioError(f"--init: the {source} -> {target} class map lacks {exc}") from None
    return weight[rows].clone(), bias[rows].clone()


def official_init(path, variant: str, target: str = "camvid", via: str | None = None,
                  noise: float = 0.0) -> tuple[dict, str]:
    """Weights for a ``variant`` model of ``target``'s classes from an official mmseg checkpoint
    (grown through ``via`` when the run's own start was grown that way, ``grow.grow_state``).

    Returns the state_dict and a one-line description for the run's log and manifest.
    """
    state = read_state_dict(path)
    found, num_classes = detect_variant(state)
    target_classes = dataset_info(target).num_classes
    if num_classes == target_classes:
        state, how = state, f"all weights of {path}"
    else:
        source = dataset_with_classes(num_classes)
        if source is None:
            raise StudioError(f"--init: {path} predicts {num_classes} classes, a dataset this project does not know")
        state = dict(state)
        state[SEG_WEIGHT], state[SEG_BIAS] = mapped_classifier(state[SEG_WEIGHT], state[SEG_BIAS], source, target)
        how = f"{source} TopFormer-{found} ({path}); classifier rows mapped {source} -> {target}"
    return matched_variant(state, found, variant, target_classes, path, how, via, noise)


def matched_variant(state: dict, found: str, variant: str, num_classes: int, path, how: str,
                    via: str | None = None, noise: float = 0.0) -> tuple[dict, str]:
    """``state`` as a ``variant`` model: as is, or grown from a Tiny or Small (``grow.grow_state``;
    ``noise``: its copies jittered apart)."""
    if found == variant:
        if noise:
            raise StudioError(f"--grow-noise: {path} is already a TopFormer-{variant}; nothing is grown")
        return state, how
    if (found, variant) not in GROWABLE:
        raise StudioError(f"--init: {path} is a TopFormer-{found}, not {variant}, and cannot be grown into one")
    via = via if via not in (found, variant) else None
    grown = grow_state(state, found, variant, num_classes, via=via, noise=noise)
    steps = f"{found} -> {via} -> {variant}" if via else f"{found} -> {variant}"
    kind = f"widening, copies jittered x{noise:g}" if noise else "function-preserving widening"
    return grown, f"{how}; grown {steps} ({kind})"


def note_growth(cfg: TrainConfig, found: str) -> None:
    """A run that starts from a Small grown into a Base records it: a Tiny state that must line
    up with this run channel by channel (LwF's classifier, the blend start) then grows the same way."""
    if found not in ("tiny", cfg.variant):
        cfg.grow_via = found


def check_grow_noise(cfg: TrainConfig) -> None:
    """--grow-noise acts on a start that is grown; a run from scratch has none (one line, exit 2)."""
    if not 0.0 <= cfg.grow_noise <= 0.5:
        raise StudioError(f"--grow-noise must be between 0 and 0.5 (e.g. 0.1), not {cfg.grow_noise:g}")
    if cfg.grow_noise and not cfg.init:
        raise StudioError("--grow-noise: the run starts from scratch; it acts on an --init that is grown "
                          "(a Tiny into a Small or Base)")


def is_onnx(path: str | Path) -> bool:
    """An installed model's file (weights with BatchNorm folded) rather than a checkpoint."""
    return Path(path).suffix.lower() == ".onnx"


def init_weights(path: Path, cfg: TrainConfig) -> dict:
    """Model weights to start from: a run's checkpoint (best.pth: its weights; last.pth: EMA if
    any), an installed model's FP32 ONNX file (``onnx_weights``: run folders stay on the machine
    that trained, models/ travels) or an official mmseg checkpoint (``{"meta", "state_dict"}``,
    e.g. ADE20K), whose classifier is mapped to this dataset's classes (``official_init``); an
    official or ONNX file records how in ``cfg.extra['init_from']``."""
    if is_onnx(path):  # an installed model: its weights with BatchNorm folded in
        from .onnx_weights import onnx_state
        if not cfg.freeze_bn:  # batch statistics would undo the folding: another network
            raise StudioError(f"--init {path}: an ONNX start has its BatchNorm folded into the convs: add --freeze-bn")
        state, found, num_classes = onnx_state(path)
        if num_classes != cfg.num_classes:
            raise StudioError(f"--init: {path} predicts {num_classes} classes, this run {cfg.num_classes}")
        note_growth(cfg, found)
        state, how = matched_variant(state, found, cfg.variant, num_classes, path,
                                     f"the weights of {path} (ONNX, BatchNorm folded)", cfg.grow_via, cfg.grow_noise)
        cfg.extra["init_from"] = how
        return state
    if not path.is_file():
        raise StudioError(f"--init: no checkpoint {path}")
    try:  # tensors only: an official (downloaded) file must never run code when read
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - this project's run checkpoints also hold RNG states and configs
        ckpt = None
    if isinstance(ckpt, dict) and "meta" in ckpt and "state_dict" in ckpt:
        state, how = official_init(path, cfg.variant, dataset_with_classes(cfg.num_classes) or "camvid", cfg.grow_via,
                                   cfg.grow_noise)
        cfg.extra["init_from"] = how
        return state
    if ckpt is None:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "state_dict" in ckpt:
        state = ckpt["state_dict"]
    elif ckpt.get("ema"):
        state = ckpt["ema"]["state"]
    elif "model" in ckpt:
        state = ckpt["model"]
    else:
        raise StudioError(f"--init: {path} is not a training checkpoint of this project")
    found, num_classes = detect_variant(state)
    if num_classes != cfg.num_classes:
        raise StudioError(f"--init: {path} predicts {num_classes} classes, this run {cfg.num_classes}")
    note_growth(cfg, found)
    state, how = matched_variant(state, found, cfg.variant, num_classes, path, f"the weights of {path}", cfg.grow_via,
                                 cfg.grow_noise)
    if found != cfg.variant:
        cfg.extra["init_from"] = how
    return state


def blend_with_init(state: dict, run_config: dict, weight: float, start: str | Path | None = None) -> dict:
    """``weight`` x the trained ``state`` + (1 - ``weight``) x the run's ``--init`` weights, or
    those of ``start`` (``--blend-start``): a run that started from another CamVid run can be
    blended with the pretrained weights at the root of the chain instead.

    Weight-space ensembling of a fine-tuned model with its pretrained start (WiSE-FT,
    Wortsman et al., CVPR 2022): both lie in one basin, so the mean of the weights is a
    working network that keeps more of the start's robustness. Integer buffers (BatchNorm
    counters) keep their trained values. The start is rebuilt exactly as training built it
    (same class map, same seeded widening), so the run's ``init`` file must still be readable."""
    if not 0.0 < weight <= 1.0:
        raise StudioError(f"--blend-init must be above 0 and at most 1, not {weight}")
    cfg = TrainConfig.from_saved({**run_config, "extra": {}})
    path = start or cfg.init
    if not path:
        raise StudioError("--blend-init: the run did not start from --init weights, so there is nothing to blend with")
    if start and is_onnx(start) != is_onnx(cfg.init or ""):
        # BatchNorm folded on one side only: the same network, other coordinates, so a weight mean means nothing.
        raise StudioError("--blend-start: an ONNX start blends only with a run that started from an ONNX file, "
                          "and a checkpoint start only with a run that started from a checkpoint")
    try:
        weights = init_weights(Path(path), cfg)
    except StudioError as exc:
        whose = "--blend-start" if start else "run's start"
        raise StudioError(f"--blend-init needs the {whose} weights: {exc}") from None
    if set(weights) != set(state) or any(weights[k].shape != state[k].shape for k in state):
        raise StudioError(f"--blend-init: {path} does not have the trained model's layout")
    return {k: (weight * v + (1.0 - weight) * weights[k].to(v.dtype)) if v.is_floating_point() else v
            for k, v in state.items()}
