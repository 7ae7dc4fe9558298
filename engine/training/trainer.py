"""The training loop (torch): CamVid-layout data, AdamW + warm-up + poly, EMA, resumable.

Exact resume: the augmentation RNG and torch's RNG are re-seeded from (seed, epoch) at
the start of every epoch and the learning rate is a pure function of the iteration, so a
run resumed from the checkpoint of epoch k continues bit-for-bit like an uninterrupted
one (same thread count). The checkpoint also stores the RNG states for inspection.

Files in the run folder:
  config.json   the settings and the exact command line
  last.pth      model, EMA, optimizer, iteration, epoch, best score (every epoch)
  best.pth      weights (raw or EMA, whichever scored better) of the best evaluation
  log.jsonl     one JSON object per evaluation: epoch, iter, loss, miou (mixed val),
                per_drive, miou_holdout (with --holdout-drive), the same for EMA, best,
                distance_from_start (with --decay-to-start)

Selection: with a held-out drive, best.pth holds the weights that scored best on that
drive (never trained on); without one, those that scored best on the mixed val split.
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.datasets import dataset_info, list_samples, parse_splits, select_samples
from ..errors import StudioError
from ..fileio import atomic_output, atomic_write_text
from ..models.exposure import brighten, check_target
from ..models.topformer import MEAN_RGB, STD_RGB, VARIANTS, create_model
from . import data as D
from .config import RUN_SETTINGS, TrainConfig, resumed_config
from .anchor import check_anchor, make_anchor
from .ema import EMA
from .pretrained import check_grow_noise, init_weights
from .losses import build_criterion
from .aux_heads import aux_loss, aux_param_groups, make_aux_heads
from .optim import load_optimizer_state, lr_factor, param_groups, saved_param_names
from .distill import add_unlabelled, distill_loss, make_teacher, supervised_loss
from .lwf import guard_param_groups, make_source_guard
from .mixstyle import StyleMixer, check_mixstyle
from .sam import SharpnessStep, check_rho
from .validation import ValFrames, confusion_torch, validate

__all__ = ["EMA", "StepInfo", "TrainConfig", "confusion_torch", "lr_factor", "param_groups", "train"]


@dataclass(frozen=True)
class StepInfo:
    """Progress after one training iteration, for the caller to show (the CLI draws a bar)."""
    iter: int
    total: int
    epoch: int  # 1-based, the epoch this iteration belongs to
    epochs: int
    loss: float  # smoothed
    lr: float


OnStep = Callable[[StepInfo], None]
OnLog = Callable[[str], None]


# --------------------------------------------------------------------------- helpers

def _rng_for_epoch(cfg: TrainConfig, epoch: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, epoch])


def augment_batch(images: list[np.ndarray], labels: list[np.ndarray], idx: np.ndarray, rng: np.random.Generator,
                  aug: D.AugConfig, rare_weight: np.ndarray | None,
                  pool: ThreadPoolExecutor | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Augmented crops of one batch. Each sample draws from its own generator, seeded from
    ``rng`` in batch order, so the crops are the same whether they are made one after the
    other or in parallel (OpenCV releases the GIL: threads feed a GPU on a many-core host)."""
    seeds = rng.integers(0, 2**63 - 1, size=len(idx))

    def one(k: int) -> tuple[np.ndarray, np.ndarray]:
        i = idx[k]
        return D.augment(images[i], labels[i], np.random.default_rng(seeds[k]), aug, rare_weight)

    crops = list(pool.map(one, range(len(idx)))) if pool is not None else [one(k) for k in range(len(idx))]
    if aug.paste > 0 and len(crops) > 1:
        # Its own generator, seeded from the batch's: runs without pasting keep their crops.
        draws = np.random.default_rng(int(seeds[0]) ^ 0x9A57E).random(len(crops))
        crops = [D.paste_classes(crops[k], crops[(k + 1) % len(crops)], aug.paste_classes) if draws[k] < aug.paste
                 else crops[k] for k in range(len(crops))]
    return crops


def paste_class_ids(cfg: TrainConfig) -> tuple[int, ...]:
    """The class ids of ``cfg.paste_classes`` (CamVid names); () when pasting is off."""
    if cfg.paste == 0:
        return ()
    if not 0.0 < cfg.paste <= 1.0:
        raise StudioError("--paste must be a probability in [0, 1]")
    classes = dataset_info("camvid").classes
    names = [n for n in cfg.paste_classes.split(",") if n]
    unknown = [n for n in names if n not in classes]
    if unknown or not names:
        what = f"no class {', '.join(unknown)}" if unknown else "give at least one class"
        raise StudioError(f"--paste-classes: {what} (classes: {', '.join(classes)})")
    return tuple(classes.index(n) for n in names)


def atomic_save(obj: dict, path: Path) -> None:
    """Write next to the target then rename (engine.fileio): an interrupt never leaves a broken checkpoint."""
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def set_train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """Training mode; with ``freeze_bn`` every BatchNorm normalises with its running statistics.

    A pretrained model's statistics describe its own training data; batch statistics of
    8 street crops differ enough to wreck it at the first step (the ADE20K Tiny's loss on
    CamVid crops: 1.2 with frozen BN, 5.8 with batch statistics). Scale and shift still learn.
    """
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def build_model(cfg: TrainConfig) -> nn.Module:
    if cfg.variant not in VARIANTS:
        raise StudioError(f"unknown variant {cfg.variant!r}; known: {', '.join(VARIANTS)}")
    return create_model(cfg.variant, cfg.num_classes, drop_path_rate=cfg.drop_path)


def select_data(cfg: TrainConfig) -> tuple[list, list, dict[str, int]]:
    """(training samples, validation samples, training frames per drive).

    Without a held-out drive: train on ``train_splits``, validate on ``val_split``. With
    one: train on ``train_splits`` minus that drive; validate on the mixed val split and
    on every frame of that drive (in any of the splits), which no training step sees."""
    holdout = cfg.holdout_drive
    train_samples = select_samples(cfg.data, cfg.train_splits, exclude_drives=[holdout] if holdout else None)
    train_samples = train_samples[:cfg.limit]
    val_samples = list_samples(cfg.data, cfg.val_split)[:cfg.val_limit]
    if holdout:
        splits = list(dict.fromkeys(parse_splits(cfg.train_splits) + [cfg.val_split]))
        held = select_samples(cfg.data, splits, drives=[holdout])[:cfg.val_limit]
        names = {s.name for s in val_samples}
        val_samples = val_samples + [s for s in held if s.name not in names]
        assert not {s.name for s in train_samples} & {s.name for s in held}
    return train_samples, val_samples, dict(sorted(Counter(s.drive for s in train_samples).items()))


def _eval_message(done: int, record: dict, holdout: str | None) -> str:
    msg = f"epoch {done}: loss {record['loss']:.3f} val mIoU {record['miou'] * 100:.2f}"
    if "miou_ema" in record:
        msg += f" (EMA {record['miou_ema'] * 100:.2f})"
    if holdout:
        msg += f" | held-out {holdout} {record['miou_holdout'] * 100:.2f}"
        if "miou_holdout_ema" in record:
            msg += f" (EMA {record['miou_holdout_ema'] * 100:.2f})"
    drives = ", ".join(f"{d} {v * 100:.2f}" for d, v in record["per_drive"].items())
    return msg + f" | per drive: {drives}"


# --------------------------------------------------------------------------- main loop

def train(cfg: TrainConfig, resume: bool = False, on_step: OnStep | None = None, on_log: OnLog | None = None,
          stop_after_epochs: int | None = None, new_epochs: int | None = None,
          new_eval_every: int | None = None, resume_overrides: dict | None = None) -> dict:
    """Train (or resume) a run; returns the final summary. ``on_step`` is called after
    every iteration and ``on_log`` with a line per evaluation (the CLI draws them).
    ``stop_after_epochs`` ends this call early after that many epochs (tests interrupt a
    run this way). ``new_epochs`` on resume changes the planned length: the poly schedule
    is a function of (iteration, total), so the lr simply follows the new curve from the
    current iteration on; used to fit a run into the CPU time that is really available
    (recorded in the config). ``resume_overrides``: on resume, the settings given again (the
    data folder, device, threads, workers, amp); the others are the run's own, so a GPU run
    goes on on the GPU. None takes device, threads, workers and amp from ``cfg``."""
    out = Path(cfg.out)
    last = out / "last.pth"
    device_from_run = False  # resumed on the device the run was trained on, not one given again
    if resume:
        if not last.is_file():
            raise StudioError(f"nothing to resume: {last} does not exist")
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        given = ({k: getattr(cfg, k) for k in RUN_SETTINGS} if resume_overrides is None
                 else dict(resume_overrides))
        cfg = resumed_config(ckpt["config"], ckpt["epoch"], cfg, given, new_epochs, new_eval_every)
        device_from_run = "device" not in given
    elif last.is_file():
        raise StudioError(f"{out} already holds a run: pass --resume to continue it or choose another --out")

    torch.set_num_threads(cfg.threads)
    if cfg.device == "cuda":
        if not torch.cuda.is_available():
            raise StudioError("--device cuda: no CUDA device is available"
                              + ("; the run was trained on one: give --device cpu to continue it on the CPU"
                                 if device_from_run else ""))
        torch.backends.cudnn.benchmark = True
    device = torch.device(cfg.device)
    D.photometric_mode(cfg.photometric)  # a bad mode fails before the data is loaded
    make_aux_heads(cfg)  # so does a negative --aux-weight
    check_grow_noise(cfg)  # a bad --grow-noise or one without --init (a start not grown: init_weights)
    # The start first: a Small grown into this Base sets cfg.grow_via, which the LwF guard follows.
    # On resume it is computed again only when the anchor pulls towards it.
    start_state = (init_weights(Path(cfg.init), cfg)
                   if cfg.init and (not resume or cfg.decay_to_start > 0) else None)
    guard = make_source_guard(cfg)  # and a bad --lwf-weight, or one without an official start of other classes
    D.check_colour_cast(cfg.colour_cast)  # and a cast beyond gains of 0.5-2
    check_anchor(cfg)  # and a negative --decay-to-start, or one without --init
    check_rho(cfg.sam_rho)  # and a negative --sam-rho
    check_mixstyle(cfg.mixstyle, cfg.mixstyle_at)  # and a --mixstyle outside 0-1, or --mixstyle-at without it
    exposure = check_target(cfg.exposure_target)  # and a bad target; the shipped graph does the same to frames

    train_samples, val_samples, train_frames = select_data(cfg)
    if not resume:
        cfg.extra = {**cfg.extra, "train_frames": train_frames}
    images, labels = D.load_samples(train_samples)
    unlabelled = add_unlabelled(cfg, images, labels)
    draw_p = D.drive_weights([s.drive for s in train_samples] + ["unlabelled"] * unlabelled, cfg.drive_balance)
    images = [brighten(im, exposure) for im in images]
    if unlabelled and not resume:
        cfg.extra = {**cfg.extra, "unlabelled_frames": unlabelled}
    teacher = make_teacher(cfg)
    if teacher is not None and not resume:
        cfg.extra = {**cfg.extra, "teacher": teacher.record}
    val_images, val_labels = D.load_samples(val_samples)
    val_images = [brighten(im, exposure) for im in val_images]
    val_names = {s.name for s in list_samples(cfg.data, cfg.val_split)}
    frames = ValFrames([s.name for s in val_samples], [s.drive for s in val_samples], val_images, val_labels,
                       in_val=[s.name in val_names for s in val_samples],
                       in_holdout=[s.drive == cfg.holdout_drive for s in val_samples])
    freq = D.class_frequencies(labels, cfg.num_classes)
    rare_weight = (1.0 / np.sqrt(np.maximum(freq, 1e-6))).astype(np.float64)
    aug = D.AugConfig(crop=tuple(cfg.crop), scale_range=tuple(cfg.scale_range), scale_sampling=cfg.scale_sampling,
                      cat_max_ratio=cfg.cat_max_ratio,
                      rare_crop=cfg.rare_crop, photometric=cfg.photometric, ignore_index=cfg.ignore_index,
                      paste=cfg.paste, paste_classes=paste_class_ids(cfg), colour_cast=cfg.colour_cast)
    weights = D.class_weights(freq, cfg.class_weight)
    criterion = build_criterion(cfg, None if weights is None else torch.from_numpy(weights).to(device))

    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    if start_state is not None and not resume:
        model.load_state_dict(start_state, strict=True)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    anchor = make_anchor(model, cfg, start_state)
    if cfg.mixstyle > 0:  # hooks on the training model only (validation and export see none)
        StyleMixer(model, cfg.mixstyle, cfg.mixstyle_at)
    groups = param_groups(model, cfg)
    aux = make_aux_heads(cfg)
    if aux is not None:
        aux = aux.to(device).to(memory_format=fmt)
        groups += aux_param_groups(aux, cfg.head_lr_mult, cfg.weight_decay)
    if guard is not None:
        guard = guard.to(device).to(memory_format=fmt)
        groups += guard_param_groups(guard, cfg.head_lr_mult, cfg.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999))
    ema = EMA(model, cfg.ema) if cfg.ema > 0 else None
    sam = SharpnessStep([p for g in groups for p in g["params"]], cfg.sam_rho) if cfg.sam_rho > 0 else None
    iters_per_epoch = len(D.make_batches(len(images), cfg.batch, np.random.default_rng(0)))
    if iters_per_epoch == 0:
        raise StudioError(f"batch {cfg.batch} is larger than the {len(images)} training images")
    total_iters = iters_per_epoch * cfg.epochs
    metric = f"holdout {cfg.holdout_drive}" if cfg.holdout_drive else f"mixed {cfg.val_split}"
    start_epoch, it, best = 0, 0, {"miou": -1.0, "epoch": -1, "source": "", "metric": metric}
    train_s_before = 0.0  # wall time of earlier sessions of this run (resumes add up)

    if resume:
        model.load_state_dict(ckpt["model"])
        load_optimizer_state(optimizer, ckpt["optimizer"], saved_param_names(ckpt, model, cfg))
        if ema is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
        if aux is not None:
            aux.load_state_dict(ckpt["aux"])
        if guard is not None:
            guard.classifier.load_state_dict(ckpt["lwf"])
        start_epoch, it, best = ckpt["epoch"], ckpt["iter"], ckpt["best"]
        train_s_before = float(ckpt.get("train_s", 0.0))
        torch.set_rng_state(ckpt["torch_rng"])
    else:
        out.mkdir(parents=True, exist_ok=True)
    # Rewritten on resume too: a re-planned length (--epochs) and the resuming command are
    # part of the run's record, and ``train --report`` reads them from here.
    atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2) + "\n")

    log_path = out / "log.jsonl"
    pool = ThreadPoolExecutor(cfg.workers) if cfg.workers > 0 else None
    set_train_mode(model, cfg.freeze_bn)
    t_start = time.time()
    epochs_done = 0
    loss_avg = math.nan
    for epoch in range(start_epoch, cfg.epochs):
        rng = _rng_for_epoch(cfg, epoch)
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        epoch_loss, nb = 0.0, 0
        for idx in D.make_batches(len(images), cfg.batch, rng, draw_p):
            crops = augment_batch(images, labels, idx, rng, aug, rare_weight if cfg.rare_crop > 0 else None, pool)
            x = torch.from_numpy(D.normalise(np.stack([c[0] for c in crops]), MEAN_RGB, STD_RGB)).to(device)
            x = x.contiguous(memory_format=fmt)
            y = torch.from_numpy(np.stack([c[1] for c in crops]).astype(np.int64)).to(device)
            f = lr_factor(it, total_iters, cfg)
            for g in optimizer.param_groups:
                g["lr"] = cfg.lr * f * g["lr_mult"]
            soft = teacher.logits([c[0] for c in crops]).to(device) if teacher is not None else None

            def batch_loss() -> torch.Tensor:  # called twice per step with --sam-rho
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.amp):
                    feats = model.backbone(x)
                    fused = model.decode_head.fuse(feats)
                    low = model.decode_head.conv_seg(fused)
                    logits = F.interpolate(low, size=y.shape[1:], mode="bilinear", align_corners=False)
                    loss = supervised_loss(criterion, logits, y, cfg.ignore_index)
                    if aux is not None:
                        loss = loss + cfg.aux_weight * aux_loss(
                            aux, feats, y, lambda out, lab: supervised_loss(criterion, out, lab, cfg.ignore_index))
                    if guard is not None:
                        loss = loss + cfg.lwf_weight * guard.loss(fused, x, cfg.lwf_temp)
                    if soft is not None:
                        loss = loss + cfg.distill_weight * distill_loss(low, soft, cfg.distill_temp)
                return loss

            loss = batch_loss()
            if not torch.isfinite(loss):
                raise StudioError(f"loss became {loss.item()} at iteration {it}: lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if sam is not None:
                sam.second_pass(batch_loss)
            optimizer.step()
            if anchor is not None:
                anchor.pull(cfg.lr * f)
            if ema is not None:
                ema.update(model)
            it += 1
            nb += 1
            epoch_loss += loss.item()
            loss_avg = loss.item() if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * loss.item()
            if on_step is not None:
                on_step(StepInfo(it, total_iters, epoch + 1, cfg.epochs, loss_avg, cfg.lr * f))
        done = epoch + 1
        if done % cfg.eval_every == 0 or done == cfg.epochs:
            t0 = time.time()
            m = validate(model, frames, cfg.num_classes, device, cfg.holdout_drive, cfg.channels_last)
            record = {"epoch": done, "iter": it, "loss": epoch_loss / max(nb, 1), "miou": m["miou"],
                      "pixel_acc": m["pixel_acc"], "per_drive": m["per_drive"]}
            if cfg.holdout_drive:
                record.update(miou_holdout=m["miou_holdout"], pixel_acc_holdout=m["pixel_acc_holdout"])
            candidates = [("model", m, model.state_dict())]
            if ema is not None:
                ema_model = build_model(cfg).to(device)
                ema_model.load_state_dict(ema.state)
                ema_model = ema_model.to(memory_format=fmt)
                me = validate(ema_model, frames, cfg.num_classes, device, cfg.holdout_drive, cfg.channels_last)
                record.update(miou_ema=me["miou"], pixel_acc_ema=me["pixel_acc"], per_drive_ema=me["per_drive"])
                if cfg.holdout_drive:
                    record.update(miou_holdout_ema=me["miou_holdout"], pixel_acc_holdout_ema=me["pixel_acc_holdout"])
                candidates.append(("ema", me, ema.state))
            if anchor is not None:  # how far --decay-to-start let the raw weights move
                record["distance_from_start"] = anchor.distance()
            record["select"] = metric
            record["eval_s"] = round(time.time() - t0, 1)
            record["train_s"] = round(train_s_before + time.time() - t_start, 1)
            record["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            for source, mm, sd in candidates:
                if mm["score"] > best["miou"]:
                    best = {"miou": mm["score"], "epoch": done, "source": source, "metric": metric,
                            "miou_val": mm["miou"]}
                    per_class = mm["per_class_holdout"] if cfg.holdout_drive else mm["per_class"]
                    atomic_save({"variant": cfg.variant, "num_classes": cfg.num_classes, "state_dict": sd,
                                 "epoch": done, "miou": mm["score"], "metric": metric, "miou_val": mm["miou"],
                                 "per_class": per_class, "per_drive": mm["per_drive"],
                                 "source": source, "config": asdict(cfg)}, out / "best.pth")
            record["best"] = dict(best)
            with log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            if on_log is not None:
                on_log(_eval_message(done, record, cfg.holdout_drive))
        atomic_save({"config": asdict(cfg), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "ema": ema.state_dict() if ema is not None else None, "epoch": done,
                     "aux": aux.state_dict() if aux is not None else None, "iter": it,
                     "lwf": guard.classifier.state_dict() if guard is not None else None,
                     "param_names": [n for g in optimizer.param_groups for n in g["names"]],
                     "best": best, "train_s": train_s_before + time.time() - t_start, "torch_rng": torch.get_rng_state(),
                     "np_rng": _rng_for_epoch(cfg, done).bit_generator.state}, last)
        epochs_done += 1
        if stop_after_epochs is not None and epochs_done >= stop_after_epochs and done < cfg.epochs:
            break
    if pool is not None:
        pool.shutdown()
    return {"epochs": cfg.epochs, "iter": it, "best": best, "wall_s": time.time() - t_start, "data": cfg.data,
            "train_s": train_s_before + time.time() - t_start, "out": str(out)}
