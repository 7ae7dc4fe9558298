"""What a training run is: its settings (:class:`TrainConfig`) and the named recipes.

The recipes are the rows of the ablation in docs/training.md, each one the previous plus
one change, so that every row is a single command (``main.py train --recipe NAME``) and
the run records which row it was. Flags given next to ``--recipe`` override it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StudioError
from ..paths import DEFAULT_CAMVID

# Cumulative ablation rows: each adds one change to the previous one.
RECIPES: dict[str, dict] = {}
RECIPES["baseline"] = {  # the recipe of the shipped v1 models (tiny-a, small-a, base-a) without EMA
    "lr": 6e-4, "rare_crop": 0.3, "scale_range": (0.5, 2.0), "photometric": "basic", "loss": "ce", "ema": 0.0}
RECIPES["+scale"] = {**RECIPES["baseline"], "scale_range": (0.5, 3.0)}  # 720p/1080p "full" in range
RECIPES["+photometric"] = {**RECIPES["+scale"], "photometric": "strong"}  # + blur, noise, JPEG
RECIPES["+ohem"] = {**RECIPES["+photometric"], "loss": "ohem"}  # thin rare classes
RECIPES["+ema"] = {**RECIPES["+ohem"], "ema": 0.999}
RECIPES["strong"] = dict(RECIPES["+ema"])  # the full recipe under its own name

LOSSES = ("ce", "ohem")
# Where and how a run goes, not what it learns: with --resume, the run's own unless given again.
RUN_SETTINGS = ("device", "threads", "workers", "amp")

# What a run learns: the TrainConfig fields set by the recipe flags of the same name
# (``--rare-crop`` -> rare_crop). A new recipe setting is added here, once (and to
# OPTIONAL_RECIPE_PARTS if the manifest should record it only when used); a test checks that
# each one is a TrainConfig field and a train flag.
RECIPE_FIELDS = ("lr", "head_lr_mult", "weight_decay", "warmup_iters", "poly_power", "scale_range", "scale_sampling",
                 "cat_max_ratio", "rare_crop", "drive_balance", "paste", "paste_classes", "colour_cast",
                 "photometric", "loss", "ohem_thresh", "ohem_min_kept", "class_weight", "label_smoothing", "exposure_target",
                 "lovasz_weight", "lovasz_stride", "aux_weight", "drop_path", "ema", "decay_to_start", "freeze_bn",
                 "teacher", "distill_weight", "distill_temp", "unlabelled", "unlabelled_every", "lwf_weight", "lwf_temp",
                 "lwf_start", "sam_rho", "mixstyle", "mixstyle_at", "grow_noise")

# Recorded only for runs that used them: (the setting that switches the part on, the settings
# recorded). Lovasz term: losses.py; copy-paste, colour cast and drive balance: data.py; anchor: anchor.py;
# distillation: distill.py; learning without forgetting: lwf.py; sharpness-aware steps: sam.py;
# style mixing: mixstyle.py.
OPTIONAL_RECIPE_PARTS = (("lovasz_weight", ("lovasz_weight", "lovasz_stride")),
                         ("paste", ("paste", "paste_classes")),
                         ("decay_to_start", ("decay_to_start",)),
                         ("colour_cast", ("colour_cast",)),
                         ("drive_balance", ("drive_balance",)),
                         ("teacher", ("teacher", "distill_weight", "distill_temp")),
                         ("unlabelled", ("unlabelled", "unlabelled_every")),
                         ("lwf_weight", ("lwf_weight", "lwf_temp", "lwf_start")),
                         ("sam_rho", ("sam_rho",)),
                         ("mixstyle", ("mixstyle", "mixstyle_at")),
                         ("grow_noise", ("grow_noise",)))

# Recorded in every shipped model's manifest entry (``training.recipe``, engine/training/ship.py):
# the run's shape and every recipe setting that is not part of an optional part.
_OPTIONAL = {k for _, fields in OPTIONAL_RECIPE_PARTS for k in fields}
# What a run is, fixed for its life: given again with --resume they must match the run's own
# (an exact resume keeps them; a silently ignored change would mislead).
RUN_IDENTITY = ("variant", "batch", "crop", "seed", "init", "holdout_drive", "train_splits", "val_split", "recipe",
                "limit", "val_limit", *RECIPE_FIELDS)
RECORDED_RECIPE = ("recipe", "batch", "crop", *(k for k in RECIPE_FIELDS if k not in _OPTIONAL),
                   "seed", "device", "amp")


# Where --mixstyle-at puts MixStyle's hooks (mixstyle.py): how many of the stem and the first
# two token layers (1/2, 1/4 and 1/8 of the input); the stem alone holds the least content.
MIX_LAYERS = {"early": 3, "stem": 1}


@dataclass
class TrainConfig:
    variant: str = "tiny"
    data: str = DEFAULT_CAMVID
    out: str = "runs/tiny"
    epochs: int = 200
    batch: int = 8
    crop: tuple[int, int] = (288, 384)
    lr: float = 3e-4
    head_lr_mult: float = 10.0
    weight_decay: float = 0.01
    warmup_iters: int = 300
    poly_power: float = 1.0
    min_lr: float = 0.0
    scale_range: tuple[float, float] = (0.5, 2.0)
    scale_sampling: str = "uniform"  # uniform | log (engine.training.data.random_scale)
    cat_max_ratio: float = 0.75
    rare_crop: float = 0.0
    drive_balance: float = 0.0  # > 0: frames drawn with probability ~ (frames of their drive)^-this (data.drive_weights)
    paste: float = 0.0  # probability that a crop gets the paste_classes pixels of another crop of its batch
    paste_classes: str = "pole,sign_symbol,fence,pedestrian,bicyclist"
    colour_cast: float = 0.0  # > 0: white-balance jitter, red/blue gains in [1/(1+c), 1+c] (engine.training.data)
    photometric: str = "basic"  # none | basic (mmseg colour jitter) | strong (+ blur, noise, JPEG)
    loss: str = "ce"  # ce | ohem
    ohem_thresh: float = 0.7  # OHEM: pixels whose true-class probability is below this are hard
    ohem_min_kept: int = 100_000  # OHEM: at least this many hardest pixels per batch
    class_weight: str = "none"
    label_smoothing: float = 0.0
    exposure_target: float = 0.0  # > 0: frames darker than this mean are brightened to it (engine/models/exposure.py)
    lovasz_weight: float = 0.0  # > 0: + this x the Lovasz-softmax loss (engine.training.losses)
    lovasz_stride: int = 1  # the Lovasz term scores every N-th pixel of each row and column
    aux_weight: float = 0.0  # > 0: auxiliary heads on the 1/16 and 1/32 features (engine.training.aux_heads)
    drop_path: float = 0.1
    ema: float = 0.999  # 0 disables EMA
    eval_every: int = 5
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    workers: int = 0  # augmentation threads (0: in the training thread); results do not depend on it
    amp: bool = False  # bfloat16 autocast for forward and loss (meant for --device cuda)
    channels_last: bool = True  # ~1.5x faster convolutions on CPU
    init: str | None = None  # start from these weights (a run's best.pth/last.pth, or an official checkpoint)
    grow_via: str | None = None  # set from --init: a Small grown into this Base; Tiny states grow through it (grow.py)
    decay_to_start: float = 0.0  # > 0: pull the weights towards the --init start every step (engine.training.anchor)
    freeze_bn: bool = False  # BatchNorm keeps its running statistics (eval mode): fine-tuning a pretrained model
    teacher: str | None = None  # installed model whose probabilities are a second target (engine.training.distill)
    teacher_models_dir: str | None = None  # where the teacher is installed (None: the default models folder)
    distill_weight: float = 1.0  # loss = labelled loss + distill_weight * KL(teacher || student)
    distill_temp: float = 1.0
    unlabelled: tuple[str, ...] = ()  # videos / image folders trained on with the teacher's (or LwF's) targets only
    unlabelled_every: int = 4  # every N-th frame of each unlabelled video (neighbours are near copies)
    unlabelled_height: int = 360  # unlabelled frames are resized to CamVid's height first
    lwf_weight: float = 0.0  # > 0: + this x KL(the start's classes || a kept copy of its classifier) (lwf.py)
    lwf_temp: float = 2.0
    lwf_start: str | None = None  # the checkpoint whose classifier LwF keeps (None: --init)
    sam_rho: float = 0.0  # > 0: sharpness-aware steps within this radius, two passes per step (sam.py)
    mixstyle: float = 0.0  # > 0: per batch, this probability of mixing early feature statistics (mixstyle.py)
    mixstyle_at: str = "early"  # where: "early" (stem and 1/4, 1/8 token layers) or "stem" alone
    grow_noise: float = 0.0  # > 0: a grown start's copied channels jittered apart by this much (grow.py)
    limit: int | None = None  # use only the first N training images (tests)
    val_limit: int | None = None  # validate on only the first N frames of each validation set
    holdout_drive: str | None = None  # train without this drive; it is the selection metric
    train_splits: str = "train"  # splits trained on (with holdout_drive: "train,val")
    val_split: str = "val"  # the mixed validation split, reported for continuity
    recipe: str = ""  # the named recipe (RECIPES) the settings started from, if any
    num_classes: int = 11
    ignore_index: int = 11
    command: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_saved(cls, saved: dict, **override) -> "TrainConfig":
        """A config from a checkpoint's dict (JSON turned tuples into lists; older runs lack
        the newer fields, which then take the defaults that reproduce their behaviour)."""
        known = {k: v for k, v in saved.items() if k in cls.__dataclass_fields__}
        cfg = cls(**{**known, **override})
        cfg.crop, cfg.scale_range, cfg.unlabelled = tuple(cfg.crop), tuple(cfg.scale_range), tuple(cfg.unlabelled)
        if cfg.photometric is True or cfg.photometric is False:  # configs before the modes
            cfg.photometric = "basic" if cfg.photometric else "none"
        return cfg


def resumed_config(saved: dict, epochs_done: int, cfg: TrainConfig, given: dict, new_epochs: int | None,
                   new_eval_every: int | None) -> TrainConfig:
    """The config a run goes on with: the recipe from its checkpoint (``saved``, after
    ``epochs_done`` epochs); only where and how to run (``given``: RUN_SETTINGS), the length
    and the evaluation interval may change, and the resuming command is recorded."""
    out = TrainConfig.from_saved(saved, out=cfg.out, command=cfg.command, **given)
    if not Path(out.data).is_dir():
        raise StudioError(f"the run's dataset folder {out.data} is not there: pass --data DIR where its frames are now")
    if new_epochs is not None and new_epochs != out.epochs:
        if new_epochs <= epochs_done:
            raise StudioError(f"--epochs {new_epochs}: the run has already done {epochs_done} epochs")
        changes = list(saved.get("extra", {}).get("epochs_changed", []))
        changes.append({"at_epoch": epochs_done, "from": out.epochs, "to": new_epochs})
        out.extra = {**out.extra, "epochs_changed": changes}
        out.epochs = new_epochs
    if new_eval_every is not None:
        out.eval_every = new_eval_every
    if out.command and saved.get("command"):
        out.extra = {**saved.get("extra", {}), **out.extra, "resumed_with": out.command}
        out.command = saved["command"]
    return out


def resume_conflicts(saved: dict, given: dict) -> list[str]:
    """The ``given`` RUN_IDENTITY options (name -> value as parsed) that differ from the run's
    ``saved`` config, each as ``--flag VALUE (the run's VALUE)``; empty when the command that
    started the run is simply given again with ``--resume``."""
    run = TrainConfig.from_saved(saved)
    conflicts = []
    for key, value in given.items():
        value = tuple(value) if isinstance(value, list) else value
        if value != getattr(run, key):
            flag = "--" + key.replace("_", "-")
            conflicts.append(f"{flag} {_shown(value)} (the run's {_shown(getattr(run, key))})")
    return conflicts


def _shown(value) -> str:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None or value == "" else str(value)
