"""`main.py train`: train a TopFormer variant on a CamVid-layout folder, resume, or ship.

  train --variant tiny --data DIR --out runs/NAME [--epochs N] ... [--resume]
  train --variant tiny --holdout-drive 0006R0 --recipe +ohem --out runs/NAME
  train --export-only runs/NAME --name camvid-tiny [--models-dir DIR] [--data DIR]
  train --export-only runs/a,runs/b --name camvid-tiny --selection-run runs/ho-a,runs/ho-b ...

The progress bar is drawn here from the trainer's callbacks (the engine draws nothing).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ..errors import StudioError
from ..training.config import (MIX_LAYERS, RECIPE_FIELDS, RECIPES, RUN_IDENTITY, RUN_SETTINGS, TrainConfig,
                               resume_conflicts)
from . import add_models_dir
from ..paths import DEFAULT_CAMVID


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 288x384, not {text!r}") from None
    if h < 32 or w < 32 or h % 32 or w % 32:
        raise argparse.ArgumentTypeError("crop sides must be multiples of 32")
    return h, w


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI, e.g. 0.5,2.0, not {text!r}") from None
    return lo, hi


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--variant", choices=["tiny", "small", "base"], default=None, help="default tiny")
    parser.add_argument("--data", default=None,
                        help=f"CamVid-layout folder (default {DEFAULT_CAMVID}; with --resume: the run's own, or where "
                             "its frames are now)")
    parser.add_argument("--out", help="run folder (checkpoints, log.jsonl), e.g. runs/tiny-a")
    parser.add_argument("--epochs", type=int, default=None,
                        help="planned epochs (default 200; with --resume: change the plan of the run)")
    parser.add_argument("--batch", type=int, default=None, help="default 8")
    parser.add_argument("--crop", type=_hw, default=None, help="training crop HxW (default 288x384)")
    # Where and how a run goes: defaults for a new run; with --resume, those of the run unless given.
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default cpu (--resume: the run's)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2; --resume: the run's)")
    parser.add_argument("--workers", type=int, default=None,
                        help="augmentation threads (default 0: in the training thread; same crops either way; "
                             "--resume: the run's)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="bfloat16 autocast, for --device cuda (default off; --resume: the run's)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last epoch, with its own recipe (options of the "
                             "recipe given again must be the run's; --epochs, --eval-every, --data and the "
                             "settings above may change)")
    parser.add_argument("--holdout-drive", default=None, metavar="DRIVE",
                        help="train on all labelled frames (--train-splits) except this drive (e.g. 0006R0) and "
                             "select the best checkpoint on it")
    parser.add_argument("--train-splits", default=None,
                        help="splits to train on (default train; with --holdout-drive: train,val)")
    parser.add_argument("--val-split", default=None, help="the mixed validation split, logged for continuity (default val)")
    recipe = parser.add_argument_group("recipe (flags override --recipe; defaults are those of TrainConfig)")
    recipe.add_argument("--recipe", choices=list(RECIPES), default=None,
                        help="a named ablation row, each the previous plus one change: " + ", ".join(RECIPES))
    recipe.add_argument("--lr", type=float, default=None, help="AdamW base lr (head x --head-lr-mult; default 3e-4)")
    recipe.add_argument("--head-lr-mult", type=float, default=None)
    recipe.add_argument("--weight-decay", type=float, default=None)
    recipe.add_argument("--warmup-iters", type=int, default=None)
    recipe.add_argument("--poly-power", type=float, default=None)
    recipe.add_argument("--scale-range", type=_range, default=None, help="random scale LO,HI (default 0.5,2.0)")
    recipe.add_argument("--scale-sampling", choices=["uniform", "log"], default=None,
                        help="how the random scale is drawn in its range (default uniform; log: log-uniform, "
                             "centred on the geometric mean)")
    recipe.add_argument("--cat-max-ratio", type=float, default=None)
    recipe.add_argument("--rare-crop", type=float, default=None,
                        help="probability of centring a crop on a rare-class pixel (default 0 = off)")
    recipe.add_argument("--drive-balance", type=float, default=None, metavar="P",
                        help="draw training frames with probability ~ (frames of their drive)^-P: 1 draws every drive "
                             "equally often (CamVid: 0016E5 is most frames), 0 is the plain shuffle (default 0)")
    recipe.add_argument("--paste", type=float, default=None,
                        help="probability that a training crop gets the --paste-classes pixels of another crop of its "
                             "batch, image and label (copy-paste; default 0 = off)")
    recipe.add_argument("--paste-classes", default=None,
                        help="comma-separated classes pasted (default pole,sign_symbol,fence,pedestrian,bicyclist)")
    recipe.add_argument("--colour-cast", type=float, default=None, metavar="C",
                        help="white-balance jitter: red and blue gains drawn in [1/(1+C), 1+C] before the colour "
                             "jitter (e.g. 0.2; default 0 = off)")
    recipe.add_argument("--photometric", choices=["none", "basic", "strong"], default=None,
                        help="colour jitter (basic, default) or + blur, noise, JPEG (strong)")
    recipe.add_argument("--loss", choices=["ce", "ohem"], default=None, help="cross-entropy or OHEM (default ce)")
    recipe.add_argument("--ohem-thresh", type=float, default=None,
                        help="OHEM: true-class probability below which a pixel is hard (default 0.7)")
    recipe.add_argument("--ohem-min-kept", type=int, default=None,
                        help="OHEM: at least this many hardest pixels per batch (default 100000)")
    recipe.add_argument("--class-weight", choices=["none", "sqrt", "enet"], default=None)
    recipe.add_argument("--label-smoothing", type=float, default=None)
    recipe.add_argument("--exposure-target", type=float, default=None, metavar="MEAN",
                        help="brighten frames darker than this mean pixel value to it (one gain, never darkening; "
                             "e.g. 100), in training and in the shipped graph; with --export-only: the shipped graph "
                             "only (default: the run's own, else off)")
    recipe.add_argument("--lovasz-weight", type=float, default=None,
                        help="add this x the Lovasz-softmax loss, a per-class IoU surrogate (default 0 = off)")
    recipe.add_argument("--lovasz-stride", type=int, default=None,
                        help="the Lovasz term scores every N-th pixel of each row and column (default 1)")
    recipe.add_argument("--aux-weight", type=float, default=None,
                        help="weight of the auxiliary heads' loss on the 1/16 and 1/32 features, training only (default 0 = off)")
    recipe.add_argument("--drop-path", type=float, default=None)
    recipe.add_argument("--sam-rho", type=float, default=None, metavar="RHO",
                        help="sharpness-aware minimisation: step with the gradient at the worst point within "
                             "this radius (e.g. 0.05; two passes per step; default 0 = off; engine/training/sam.py)")
    recipe.add_argument("--mixstyle", type=float, default=None, metavar="P",
                        help="MixStyle: with this probability per batch, mix the channel statistics of early features "
                             "between crops (e.g. 0.5; default 0 = off; engine/training/mixstyle.py)")
    recipe.add_argument("--mixstyle-at", choices=list(MIX_LAYERS), default=None,
                        help="where MixStyle acts: early = the stem and the 1/4 and 1/8 token layers, "
                             "stem = the stem alone (default early)")
    recipe.add_argument("--grow-noise", type=float, default=None, metavar="S",
                        help="an --init grown into a wider variant: multiply its copied channels' weights by "
                             "1 + S x N(0, 1) so that they learn apart (e.g. 0.1; default 0; engine/training/grow.py)")
    recipe.add_argument("--ema", type=float, default=None, help="EMA decay per iteration (0 = off; default 0.999)")
    recipe.add_argument("--eval-every", type=int, default=None,
                        help="validate every N epochs (default 5; may be changed on --resume)")
    recipe.add_argument("--seed", type=int, default=None, help="default 0")
    recipe.add_argument("--init", default=None,
                        help="start from a run's checkpoint (e.g. runs/x/best.pth), an installed model's FP32 ONNX "
                             "(e.g. models/camvid-tiny.onnx; BatchNorm comes folded: use --freeze-bn) or an official mmseg checkpoint "
                             "of the same variant (ADE20K: classifier rows mapped to the dataset's classes); a Tiny is grown "
                             "into a Small or Base that computes the same function (engine/training/grow.py)")
    recipe.add_argument("--decay-to-start", type=float, default=None, metavar="S",
                        help="after every step pull each weight lr x S of the way back to its --init start "
                             "(L2-SP; default 0 = off; engine/training/anchor.py)")
    recipe.add_argument("--freeze-bn", action="store_true", default=None,
                        help="keep BatchNorm statistics fixed (fine-tuning a pretrained model)")
    distill = parser.add_argument_group("distillation (engine/training/distill.py)")
    distill.add_argument("--teacher", default=None, metavar="MODEL",
                         help="installed model (in --models-dir) whose class probabilities are a second target")
    distill.add_argument("--distill-weight", type=float, default=None, help="weight of the teacher's loss (default 1.0)")
    distill.add_argument("--distill-temp", type=float, default=None, help="softmax temperature (default 1.0)")
    distill.add_argument("--unlabelled", nargs="+", default=None, metavar="PATH",
                         help="videos or image folders trained on with the teacher's or the --lwf-start's targets only")
    distill.add_argument("--unlabelled-every", type=int, default=None, help="every N-th video frame (default 4)")
    lwf = parser.add_argument_group("learning without forgetting (engine/training/lwf.py)")
    lwf.add_argument("--lwf-weight", type=float, default=None,
                     help="keep the --lwf-start (default --init) checkpoint's own classifier (e.g. ADE20K's "
                          "150 classes) predicting what the frozen start predicts, with this weight (default 0 = off)")
    lwf.add_argument("--lwf-temp", type=float, default=None, help="softmax temperature of that term (default 2.0)")
    lwf.add_argument("--lwf-start", default=None, metavar="CHECKPOINT",
                     help="the official checkpoint whose classifier is kept, when --init is another run "
                          "(e.g. a Small grown from a CamVid Tiny keeps the ADE20K Tiny's; default: --init)")
    recipe.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    recipe.add_argument("--val-limit", type=int, default=None, help="validate on only the first N frames of each validation set")
    recipe.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--report", nargs="+", metavar="RUN",
                        help="print the ablation table (Markdown) of these run folders, no training")
    ship = parser.add_argument_group("shipping")
    ship.add_argument("--export-only", metavar="RUN[,RUN]",
                      help="export RUN/best.pth into the models folder, no training; RUN,RUN,...: the mean of "
                           "their weights (a model soup of runs of one recipe that differ in --seed)")
    ship.add_argument("--ship", "--name", dest="name", metavar="NAME",
                      help="model name to install (with --export-only, or after training)")
    ship.add_argument("--checkpoint", default="best.pth", help="file in the run folder to ship (default best.pth)")
    ship.add_argument("--eval-split", default="val", help="split measured for the manifest (default val)")
    ship.add_argument("--selection-run", metavar="RUN[,RUN]", action="append", default=None,
                      help="the held-out-drive run that chose this recipe and schedule (a refit on every frame has "
                           "no unseen drive left): its held-out figures go into the manifest; give it once per "
                           "held-out drive for their mean (training.unseen_drives; several runs of one drive, e.g. seeds, "
                           "are averaged first); RUN,RUN for a soup, as shipped")
    ship.add_argument("--blend-init", metavar="W", type=float, default=None,
                      help="ship W x the trained weights + (1 - W) x the weights the run started from (--init): "
                           "WiSE-FT, more robust on unseen drives; with --selection-run that run is blended alike "
                           "and its held-out drive measured again")
    ship.add_argument("--blend-start", metavar="CKPT", default=None,
                      help="with --blend-init: blend with these weights instead of the run's --init (an official "
                           "checkpoint is mapped and grown as --init would be), e.g. the pretrained root of a run "
                           "that started from another run")
    ship.add_argument("--class-bias", metavar="CLASS[,CLASS]=OFFSET", action="append", default=None,
                      help="add OFFSET to these classes' logits in the shipped model (its classifier's bias), e.g. "
                           "pole,sign_symbol,fence,pedestrian,bicyclist=0.5: argmax then gives the thin rare classes "
                           "more pixels; with --selection-run those runs are shipped alike and measured again")
    ship.add_argument("--holdout-estimate", metavar="RUN", default=None,
                      help="record RUN (the recipe of installed model --name, run again with --holdout-drive) "
                           "as that model's held-out-drive estimate in the manifest, no training")
    add_models_dir(parser)


def _command_line(args: argparse.Namespace) -> str:
    """The exact command as typed when run from a shell, else (called in-process, e.g. by
    tests) an equivalent one rebuilt from the parsed options."""
    if sys.argv[1:2] == ["train"]:
        return "python main.py train " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    parts = []
    for key, value in vars(args).items():
        if value is None or value is False or key in ("export_only", "name", "checkpoint", "eval_split", "models_dir",
                                                       "selection_run", "holdout_estimate", "blend_init", "blend_start", "class_bias",
                                                       "report"):
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif key == "crop":
            parts += [flag, f"{value[0]}x{value[1]}"]
        elif isinstance(value, list):
            parts += [flag, *(shlex.quote(str(v)) for v in value)]
        elif key == "scale_range":
            parts += [flag, f"{value[0]},{value[1]}"]
        else:
            parts += [flag, shlex.quote(str(value))]
    return "python main.py train " + " ".join(parts)


def _shipped_figures(entry: dict) -> str:
    text = f"val mIoU {entry['miou'] * 100:.2f}"
    if entry.get("holdout_miou") is not None:
        text += f", held-out drive {entry['training']['holdout_drive']} mIoU {entry['holdout_miou'] * 100:.2f}"
    return text


def run(args: argparse.Namespace) -> int:
    _refuse_training_options(args)
    if args.report:
        from ..training.report import format_table, summarise_run
        print(format_table([summarise_run(r) for r in args.report]))
        return 0
    if args.holdout_estimate:
        return _record_holdout_estimate(Path(args.holdout_estimate), args.name, args.models_dir)
    for flag, given in (("--blend-init", args.blend_init is not None), ("--class-bias", bool(args.class_bias))):
        if given and not args.name:
            raise StudioError(f"{flag} applies to the shipped model: give --name NAME (with --export-only RUN or after training)")
    from ..models.datasets import dataset_info
    from ..training.class_bias import parse_class_bias
    from ..training.run_weights import check_blend_options
    check_blend_options(args.blend_init, args.blend_start)
    class_bias = parse_class_bias(args.class_bias, dataset_info("camvid").classes)
    if args.export_only:
        if not args.name:
            raise StudioError("--export-only needs --name NAME (e.g. camvid-tiny)")
        from ..training.ship import ship_run
        entry = ship_run(args.export_only, args.name, models_dir=args.models_dir, data=args.data or DEFAULT_CAMVID,
                         split=args.eval_split, checkpoint=args.checkpoint, selection_run=args.selection_run,
                         blend_init=args.blend_init, blend_start=args.blend_start, class_bias=class_bias,
                         exposure_target=args.exposure_target)
        print(f"installed {entry['name']}: {_shipped_figures(entry)}  ({entry['onnx']})")
        return 0
    if not args.out:
        raise StudioError("--out RUN_FOLDER is required (e.g. --out runs/tiny-a)")
    shown_variant = _check_resume_options(args) if args.resume else None
    for key in ("variant", "batch", "crop", "seed", "val_split"):  # a new run's defaults (--resume: the run's)
        if getattr(args, key) is None:
            setattr(args, key, TrainConfig.__dataclass_fields__[key].default)
    command = _command_line(args)
    new_epochs = args.epochs if args.resume else None
    new_eval_every = args.eval_every if args.resume else None
    args.epochs = args.epochs or 200
    args.eval_every = args.eval_every or 5
    if args.epochs < 1 or args.batch < 1:
        raise StudioError("--epochs and --batch must be at least 1")
    data = args.data or DEFAULT_CAMVID
    if (args.data is not None or not args.resume) and not Path(data).is_dir():
        raise StudioError(f"dataset folder not found: {data}")
    run_settings = {k: getattr(args, k) for k in RUN_SETTINGS if getattr(args, k) is not None}
    from ..training.trainer import train

    recipe = dict(RECIPES[args.recipe]) if args.recipe else {}
    recipe.update({k: getattr(args, k) for k in RECIPE_FIELDS if getattr(args, k) is not None})
    if "scale_range" in recipe:
        recipe["scale_range"] = tuple(recipe["scale_range"])
    if "unlabelled" in recipe:
        recipe["unlabelled"] = tuple(recipe["unlabelled"])
    if args.teacher:
        recipe["teacher_models_dir"] = str(args.models_dir) if args.models_dir else None
    train_splits = args.train_splits or ("train,val" if args.holdout_drive else "train")
    cfg = TrainConfig(
        variant=args.variant, data=data, out=args.out, epochs=args.epochs, batch=args.batch,
        crop=tuple(args.crop), eval_every=args.eval_every, seed=args.seed, init=args.init, **run_settings,
        limit=args.limit, val_limit=args.val_limit, holdout_drive=args.holdout_drive,
        train_splits=train_splits, val_split=args.val_split, recipe=args.recipe or "", command=command, **recipe,
    )
    bar = None

    def on_step(info) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm
            bar = tqdm(total=info.total, initial=info.iter - 1, unit="it", dynamic_ncols=True, file=sys.stderr,
                       mininterval=2.0)
        bar.set_description(f"{shown_variant or args.variant} ep {info.epoch}/{info.epochs}", refresh=False)
        bar.set_postfix(loss=f"{info.loss:.3f}", lr=f"{info.lr:.2e}", refresh=False)
        bar.update(info.iter - bar.n)

    def on_log(line: str) -> None:
        (bar.write if bar is not None else print)(line)

    try:
        summary = train(cfg, resume=args.resume, on_step=None if args.no_progress else on_step, on_log=on_log,
                        new_epochs=new_epochs, new_eval_every=new_eval_every,
                        resume_overrides={**run_settings, **({"data": data} if args.data else {})})
    finally:
        if bar is not None:
            bar.close()
    best = summary["best"]
    print(f"done: {summary['iter']} iterations, best {best.get('metric', 'val')} mIoU {best['miou'] * 100:.2f} "
          f"(epoch {best['epoch']}, {best['source']}) -> {Path(args.out) / 'best.pth'}")
    if args.name:
        from ..training.ship import ship_run
        entry = ship_run(Path(args.out), args.name, models_dir=args.models_dir, data=summary["data"],
                         split=args.eval_split, checkpoint=args.checkpoint, blend_init=args.blend_init,
                         blend_start=args.blend_start, class_bias=class_bias)
        print(f"installed {entry['name']}: {_shipped_figures(entry)}")
    return 0


# Options that only shape or drive a training run; the modes that train nothing would ignore them.
_TRAINING_OPTIONS = (*RUN_IDENTITY, "out", "epochs", "eval_every", "resume", *RUN_SETTINGS)


def _refuse_training_options(args: argparse.Namespace) -> None:
    """--export-only, --holdout-estimate and --report train nothing: a training option given with
    them (``--export-only r --lr 1e-4``) would change nothing, so it is one clear error rather
    than silently ignored. --export-only still takes --exposure-target (the shipped graph's)."""
    mode = ("--export-only" if args.export_only else "--holdout-estimate" if args.holdout_estimate
            else "--report" if args.report else None)
    if mode is None:
        return
    kept = ("exposure_target",) if mode == "--export-only" else ()
    given = ["--" + k.replace("_", "-") for k in _TRAINING_OPTIONS
             if k not in kept and getattr(args, k, None) not in (None, False)]
    if given:
        raise StudioError(f"{mode} trains nothing, so these training options would be ignored: {', '.join(given)}: "
                          "drop them (a run keeps the recipe it was trained with)")


def _check_resume_options(args: argparse.Namespace) -> str | None:
    """A resumed run keeps its recipe (an exact resume): options of it given again must be the
    run's own, so that a changed one is an error rather than silently ignored. Returns the run's
    variant (shown on the progress bar), or None when --out holds no run (the trainer says so)."""
    path = Path(args.out) / "config.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StudioError(f"cannot read the run's settings {path}: {exc}") from None
    given = {k: getattr(args, k) for k in RUN_IDENTITY if getattr(args, k) is not None}
    conflicts = resume_conflicts(saved, given)
    if conflicts:
        raise StudioError(f"--resume continues {args.out} with its own recipe; given: " + "; ".join(conflicts)
                          + ": drop these options, or start a new run with another --out")
    return saved.get("variant")


def _record_holdout_estimate(run_dir: Path, name: str | None, models_dir) -> int:
    """A model trained on every drive has no unseen drive left; the same recipe run again with
    one drive held out estimates how it does on footage it never saw."""
    if not name:
        raise StudioError("--holdout-estimate needs --name NAME (the installed model it estimates)")
    from ..models.registry import Registry
    from ..training.ship import selection_figures

    figures = selection_figures(run_dir)
    figures["what"] = f"the recipe of {name} run again with drive {figures['holdout_drive']} held out (an estimate)"
    Registry(models_dir).update_training(name, holdout_estimate=figures)
    last, best = figures["last"], figures["best"]
    ema = "" if last["miou_holdout_ema"] is None else f" (EMA {100 * last['miou_holdout_ema']:.2f})"
    print(f"recorded for {name}: held-out {figures['holdout_drive']} mIoU {100 * last['miou_holdout']:.2f}{ema} at the "
          f"last epoch ({last['epoch']}), best {100 * best['miou_holdout']:.2f} at epoch {best['epoch']}, from {run_dir}")
    return 0
