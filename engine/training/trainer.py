"""The training loop (torch): CamVid-layout data, AdamW + warm-up + poly, EMA, resumable.

Exact resume: the augmentation RNG and torch's RNG are re-seeded from (seed, epoch) at
the start of every epoch and the learning rate is a pure function of the iteration, so a
run resumed from the checkpoint of epoch k continues bit-for-bit like an uninterrupted
one (same thread count). The checkpoint also stores the RNG states for inspection.

Files in the run folder:
  config.json   the settings and the exact command line
  last.pth      model, EMA, optimizer, iteration, epoch, best score (every epoch)
  best.pth      weights (raw or EMA, whichever scored better) of the best evaluation
  log.jsonl     one JSON object per evaluation: epoch, iter, miou, miou_ema, ...
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StudioError
from ..topformer import MEAN_RGB, STD_RGB, VARIANTS, create_model
from . import data as D


@dataclass
class TrainConfig:
    variant: str = "tiny"
    data: str = "../shared/datasets/camvid"
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
    cat_max_ratio: float = 0.75
    rare_crop: float = 0.0
    class_weight: str = "none"
    label_smoothing: float = 0.0
    drop_path: float = 0.1
    ema: float = 0.999  # 0 disables EMA
    eval_every: int = 5
    seed: int = 0
    device: str = "cpu"
    threads: int = 2
    channels_last: bool = True  # ~1.5x faster convolutions on CPU
    init: str | None = None  # start from these weights (a run's best.pth/last.pth): fine-tuning
    limit: int | None = None  # use only the first N training images (tests)
    val_limit: int | None = None
    num_classes: int = 11
    ignore_index: int = 11
    command: str = ""
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers

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


def _saved_param_names(ckpt: dict, model: nn.Module, cfg: TrainConfig) -> list[str]:
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


class EMA:
    """Exponential moving average of all float parameters and buffers (BN statistics too);
    integer buffers are copied. Warms up as min(decay, (1+n)/(10+n)) so early averages
    are not dominated by the random initialisation."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "state": self.state}

    def load_state_dict(self, sd: dict) -> None:
        self.decay, self.updates = sd["decay"], sd["updates"]
        self.state = {k: v.clone() for k, v in sd["state"].items()}


def confusion_torch(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> np.ndarray:
    """Confusion matrix (rows: ground truth, cols: prediction), ignoring labels >= C."""
    keep = label < num_classes
    idx = label[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).numpy()


@torch.no_grad()
def validate(model: nn.Module, images: list[np.ndarray], labels: list[np.ndarray], cfg: TrainConfig,
             device: torch.device) -> dict:
    """mIoU at the native size rounded to multiples of 32 (resize in, bilinear logits
    back to the label size, argmax): a fast in-loop estimate; ``main.py eval`` through the
    ONNX Segmenter is the number that gets reported."""
    from ..evaluate import metrics_from_confusion  # torch-free metric code, one implementation

    model.eval()
    conf = np.zeros((cfg.num_classes, cfg.num_classes), np.int64)
    for img, lbl in zip(images, labels):
        h, w = lbl.shape
        ih, iw = D.round_to_multiple(h), D.round_to_multiple(w)
        x = img if (ih, iw) == (h, w) else __import__("cv2").resize(img, (iw, ih), interpolation=1)
        t = torch.from_numpy(D.normalise(x[None], MEAN_RGB, STD_RGB)).to(device).contiguous(memory_format=torch.channels_last)
        logits = model(t)
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        pred = logits.argmax(1)[0].cpu()
        conf += confusion_torch(pred, torch.from_numpy(lbl), cfg.num_classes)
    model.train()
    return metrics_from_confusion(conf)


def _rng_for_epoch(cfg: TrainConfig, epoch: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, epoch])


def make_batches(n: int, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled index batches of one epoch; the last incomplete batch is dropped (BN)."""
    perm = rng.permutation(n)
    return [perm[i:i + batch] for i in range(0, n - batch + 1, batch)]


def atomic_save(obj: dict, path: Path) -> None:
    """Write next to the target then rename: an interrupt never leaves a broken checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _init_weights(path: Path) -> dict:
    """Model weights of a training checkpoint (best.pth: its weights; last.pth: EMA if any)."""
    if not path.is_file():
        raise StudioError(f"--init: no checkpoint {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "state_dict" in ckpt:
        return ckpt["state_dict"]
    if ckpt.get("ema"):
        return ckpt["ema"]["state"]
    if "model" in ckpt:
        return ckpt["model"]
    raise StudioError(f"--init: {path} is not a training checkpoint of this project")


def build_model(cfg: TrainConfig) -> nn.Module:
    if cfg.variant not in VARIANTS:
        raise StudioError(f"unknown variant {cfg.variant!r}; known: {', '.join(VARIANTS)}")
    return create_model(cfg.variant, cfg.num_classes, drop_path_rate=cfg.drop_path)


# --------------------------------------------------------------------------- main loop

def train(cfg: TrainConfig, resume: bool = False, progress: bool = True, stop_after_epochs: int | None = None,
          new_epochs: int | None = None, new_eval_every: int | None = None) -> dict:
    """Train (or resume) a run; returns the final summary. ``stop_after_epochs`` ends this
    call early after that many epochs (tests interrupt a run this way). ``new_epochs`` on
    resume changes the planned length: the poly schedule is a function of (iteration,
    total), so the lr simply follows the new curve from the current iteration on; used to
    fit a run into the CPU time that is really available (recorded in the config)."""
    out = Path(cfg.out)
    last = out / "last.pth"
    if resume:
        if not last.is_file():
            raise StudioError(f"nothing to resume: {last} does not exist")
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        saved = ckpt["config"]
        # The recipe comes from the checkpoint; only where/how to run may change.
        keep = {k: getattr(cfg, k) for k in ("device", "threads", "out", "command")}
        cfg = TrainConfig(**{**saved, **keep, "crop": tuple(saved["crop"]), "scale_range": tuple(saved["scale_range"])})
        if new_epochs is not None and new_epochs != cfg.epochs:
            if new_epochs <= ckpt["epoch"]:
                raise StudioError(f"--epochs {new_epochs}: the run has already done {ckpt['epoch']} epochs")
            changes = list(saved.get("extra", {}).get("epochs_changed", []))
            changes.append({"at_epoch": ckpt["epoch"], "from": cfg.epochs, "to": new_epochs})
            cfg.extra = {**cfg.extra, "epochs_changed": changes}
            cfg.epochs = new_epochs
        if new_eval_every is not None:
            cfg.eval_every = new_eval_every
        if cfg.command and saved.get("command"):
            cfg.extra = {**saved.get("extra", {}), **cfg.extra, "resumed_with": cfg.command}
            cfg.command = saved["command"]
    elif last.is_file():
        raise StudioError(f"{out} already holds a run: pass --resume to continue it or choose another --out")

    torch.set_num_threads(cfg.threads)
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise StudioError("--device cuda: no CUDA device is available")
    device = torch.device(cfg.device)

    images, labels = D.load_split(cfg.data, "train", cfg.limit)
    val_images, val_labels = D.load_split(cfg.data, "val", cfg.val_limit)
    freq = D.class_frequencies(labels, cfg.num_classes)
    rare_weight = (1.0 / np.sqrt(np.maximum(freq, 1e-6))).astype(np.float64)
    aug = D.AugConfig(crop=tuple(cfg.crop), scale_range=tuple(cfg.scale_range), cat_max_ratio=cfg.cat_max_ratio,
                      rare_crop=cfg.rare_crop, ignore_index=cfg.ignore_index)
    weights = D.class_weights(freq, cfg.class_weight)
    criterion = nn.CrossEntropyLoss(weight=None if weights is None else torch.from_numpy(weights).to(device),
                                    ignore_index=cfg.ignore_index, label_smoothing=cfg.label_smoothing)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    if cfg.init and not resume:
        model.load_state_dict(_init_weights(Path(cfg.init)), strict=True)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    groups = param_groups(model, cfg)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999))
    ema = EMA(model, cfg.ema) if cfg.ema > 0 else None
    iters_per_epoch = len(make_batches(len(images), cfg.batch, np.random.default_rng(0)))
    if iters_per_epoch == 0:
        raise StudioError(f"batch {cfg.batch} is larger than the {len(images)} training images")
    total_iters = iters_per_epoch * cfg.epochs
    start_epoch, it, best = 0, 0, {"miou": -1.0, "epoch": -1, "source": ""}
    train_s_before = 0.0  # wall time of earlier sessions of this run (resumes add up)

    if resume:
        model.load_state_dict(ckpt["model"])
        load_optimizer_state(optimizer, ckpt["optimizer"], _saved_param_names(ckpt, model, cfg))
        if ema is not None and ckpt.get("ema"):
            ema.load_state_dict(ckpt["ema"])
        start_epoch, it, best = ckpt["epoch"], ckpt["iter"], ckpt["best"]
        train_s_before = float(ckpt.get("train_s", 0.0))
        torch.set_rng_state(ckpt["torch_rng"])
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")

    log_path = out / "log.jsonl"
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total_iters, initial=it, desc=f"{cfg.variant} ep {start_epoch}/{cfg.epochs}",
                   unit="it", dynamic_ncols=True, file=sys.stderr, mininterval=2.0)
    model.train()
    t_start = time.time()
    epochs_done = 0
    loss_avg = math.nan
    for epoch in range(start_epoch, cfg.epochs):
        rng = _rng_for_epoch(cfg, epoch)
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        epoch_loss, nb = 0.0, 0
        for idx in make_batches(len(images), cfg.batch, rng):
            crops = [D.augment(images[i], labels[i], rng, aug, rare_weight if cfg.rare_crop > 0 else None) for i in idx]
            x = torch.from_numpy(D.normalise(np.stack([c[0] for c in crops]), MEAN_RGB, STD_RGB)).to(device)
            x = x.contiguous(memory_format=fmt)
            y = torch.from_numpy(np.stack([c[1] for c in crops]).astype(np.int64)).to(device)
            f = lr_factor(it, total_iters, cfg)
            for g in optimizer.param_groups:
                g["lr"] = cfg.lr * f * g["lr_mult"]
            logits = model(x)
            logits = F.interpolate(logits, size=y.shape[1:], mode="bilinear", align_corners=False)
            loss = criterion(logits, y)
            if not torch.isfinite(loss):
                raise StudioError(f"loss became {loss.item()} at iteration {it}: lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update(model)
            it += 1
            nb += 1
            epoch_loss += loss.item()
            loss_avg = loss.item() if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * loss.item()
            if bar is not None:
                bar.set_description(f"{cfg.variant} ep {epoch + 1}/{cfg.epochs}", refresh=False)
                bar.set_postfix(loss=f"{loss_avg:.3f}", lr=f"{cfg.lr * f:.2e}", refresh=False)
                bar.update(1)
        done = epoch + 1
        record = None
        if done % cfg.eval_every == 0 or done == cfg.epochs:
            t0 = time.time()
            m = validate(model, val_images, val_labels, cfg, device)
            record = {"epoch": done, "iter": it, "loss": epoch_loss / max(nb, 1), "miou": m["miou"],
                      "pixel_acc": m["pixel_acc"]}
            candidates = [("model", m, model.state_dict())]
            if ema is not None:
                ema_model = build_model(cfg).to(device)
                ema_model.load_state_dict(ema.state)
                ema_model = ema_model.to(memory_format=fmt)
                me = validate(ema_model, val_images, val_labels, cfg, device)
                record.update(miou_ema=me["miou"], pixel_acc_ema=me["pixel_acc"])
                candidates.append(("ema", me, ema.state))
            record["eval_s"] = round(time.time() - t0, 1)
            record["train_s"] = round(train_s_before + time.time() - t_start, 1)
            record["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            for source, mm, sd in candidates:
                if mm["miou"] > best["miou"]:
                    best = {"miou": mm["miou"], "epoch": done, "source": source}
                    atomic_save({"variant": cfg.variant, "num_classes": cfg.num_classes, "state_dict": sd,
                                 "epoch": done, "miou": mm["miou"], "per_class": mm["per_class"],
                                 "source": source, "config": asdict(cfg)}, out / "best.pth")
            record["best"] = dict(best)
            with log_path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
            msg = f"epoch {done}: loss {record['loss']:.3f} val mIoU {m['miou'] * 100:.2f}"
            if "miou_ema" in record:
                msg += f" (EMA {record['miou_ema'] * 100:.2f})"
            (bar.write if bar is not None else print)(msg)
        atomic_save({"config": asdict(cfg), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "ema": ema.state_dict() if ema is not None else None, "epoch": done, "iter": it,
                     "param_names": [n for g in optimizer.param_groups for n in g["names"]],
                     "best": best, "train_s": train_s_before + time.time() - t_start, "torch_rng": torch.get_rng_state(),
                     "np_rng": _rng_for_epoch(cfg, done).bit_generator.state}, last)
        epochs_done += 1
        if stop_after_epochs is not None and epochs_done >= stop_after_epochs and done < cfg.epochs:
            break
    if bar is not None:
        bar.close()
    return {"epochs": cfg.epochs, "iter": it, "best": best, "wall_s": time.time() - t_start,
            "train_s": train_s_before + time.time() - t_start, "out": str(out)}
