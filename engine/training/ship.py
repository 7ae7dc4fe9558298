"""Ship a training run: export its checkpoint to ONNX into a models folder, then measure it.

The accuracy written into the manifest is measured by the same code as
``python main.py eval`` (ONNX through the Segmenter), after installation, so the number
in the manifest is exactly what ``eval`` reproduces from a clean clone.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from ..models.datasets import dataset_info
from ..errors import StudioError
from ..models.registry import ModelEntry, Registry
from ..models.topformer import create_model
from ..paths import DEFAULT_CAMVID

CHECK_IMAGES = 10  # images of the quick reproduction check recorded with every shipped model


def load_run_weights(run_dir: Path, checkpoint: str = "best.pth", blend_init: float | None = None
                     ) -> tuple[torch.nn.Module, dict, dict]:
    """(model in eval mode, checkpoint dict, run config) from RUN/best.pth or RUN/last.pth.

    best.pth holds the best-scoring weights (raw or EMA); last.pth holds both, and its EMA
    weights are used when present (they are the ones that generalise better). ``blend_init``
    mixes them with the weights the run started from (``pretrained.blend_with_init``)."""
    path = run_dir / checkpoint
    if not path.is_file():
        raise StudioError(f"no checkpoint {path}: train first (python main.py train --out {run_dir} ...)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt or not a torch file
        raise StudioError(f"cannot read {path}: {exc}") from None
    cfg = ckpt.get("config") or {}
    if "state_dict" in ckpt:
        state = ckpt["state_dict"]
    elif "model" in ckpt:
        state = ckpt["ema"]["state"] if ckpt.get("ema") else ckpt["model"]
    else:
        raise StudioError(f"{path} is not a training checkpoint of this project")
    variant = ckpt.get("variant") or cfg.get("variant")
    num_classes = ckpt.get("num_classes") or cfg.get("num_classes")
    if blend_init is not None:
        from .pretrained import blend_with_init
        state = blend_with_init(state, cfg, blend_init)
    model = create_model(variant, num_classes)
    model.load_state_dict(state, strict=True)
    return model.eval(), ckpt, cfg


def selection_figures(run_dir: Path) -> dict:
    """What the held-out-drive run that chose the recipe measured on its unseen drive:
    its best evaluation and its last one (the schedule a refit repeats)."""
    from .report import describe_recipe, summarise_run

    best = summarise_run(run_dir)
    if not best["holdout"]:
        raise StudioError(f"--selection-run {run_dir} held out no drive (train it with --holdout-drive)")
    cfg = json.loads((run_dir / "config.json").read_text())
    last = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    pick = lambda r, k: None if r.get(k) is None else round(r[k], 6)  # noqa: E731
    replans = (cfg.get("extra") or {}).get("epochs_changed")
    return {"run": run_dir.name, "holdout_drive": best["holdout"], "recipe": describe_recipe(cfg),
            "command": cfg.get("command"), "epochs": cfg.get("epochs"), **({"epochs_changed": replans} if replans else {}),
            "best": {"epoch": best["epoch"], "weights": best["source"],
                                                    "miou_holdout": round(best["score"], 6)},
            "last": {"epoch": last["epoch"], "miou_holdout": pick(last, "miou_holdout"),
                     "miou_holdout_ema": pick(last, "miou_holdout_ema")},
            "measured_by": "in-loop validation (the protocol of main.py eval) on every frame of the held-out drive"}


def blended_selection_figures(run_dir: Path, weight: float, data: str | Path = DEFAULT_CAMVID) -> dict:
    """``selection_figures`` of a run shipped with ``--blend-init``: its in-loop figures are of
    unblended weights, so the held-out figure of its last EMA weights, blended as the shipped
    model is, is measured here by eval (ONNX through the Segmenter) and recorded as the last one."""
    from ..jobs.evaluate import evaluate_model

    figures = selection_figures(run_dir)
    model, _, cfg = load_run_weights(run_dir, "last.pth", blend_init=weight)
    splits = cfg.get("train_splits", "train,val")
    with tempfile.TemporaryDirectory(prefix="studio-blend-") as tmp:
        _install(model, "selection", "camvid", tmp, made_by=f"{run_dir} blended", notes="", training={})
        held = evaluate_model("selection", data, splits, models_dir=tmp, drives=[figures["holdout_drive"]])
    last = figures["last"]
    figures["last"] = {"epoch": last["epoch"], "miou_holdout": round(held.metrics["miou"], 6),
                       "weights": f"last (EMA where kept), blended with the start (--blend-init {weight})",
                       "unblended": {"miou_holdout": last["miou_holdout"], "miou_holdout_ema": last["miou_holdout_ema"]}}
    figures["last_measured_by"] = (f"python main.py train --export-only {run_dir} --checkpoint last.pth --blend-init "
                                   f"{weight} --name M, then python main.py eval --model M --split {splits} "
                                   f"--drive {figures['holdout_drive']}")
    return figures


def _install(model: torch.nn.Module, name: str, dataset: str, models_dir: str | Path | None, made_by: str,
             notes: str, training: dict) -> Registry:
    """Export ``model`` to ONNX and install it as ``name`` (manifest entry without accuracy)."""
    from ..models.export import export_onnx

    info = dataset_info(dataset)
    registry = Registry(models_dir)
    registry.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=registry.dir, prefix=".ship-") as tmp:
        onnx_tmp = export_onnx(model, Path(tmp) / "model.onnx", metadata={"name": name, "dataset": dataset})
        entry = ModelEntry(name=name, variant=model.variant, dataset=dataset, classes=list(info.classes),
                           palette=[list(c) for c in info.palette], onnx="", sha256="",
                           made_by=made_by, notes=notes, training=training)
        registry.add(entry, onnx_tmp, move=True)
    return registry


def ship_run(run_dir: Path, name: str, models_dir: str | Path | None = None, data: str | Path = DEFAULT_CAMVID,
             split: str = "val", checkpoint: str = "best.pth", dataset: str = "camvid", limit: int | None = None,
             selection_run: str | Path | None = None, blend_init: float | None = None) -> dict:
    """Export RUN/checkpoint as model ``name``, evaluate it on ``data``/``split`` through the
    Segmenter and record command, epochs and measured accuracy in the manifest.
    Returns a summary dict (name, onnx, miou, pixel_acc)."""
    from ..jobs.evaluate import evaluate_model

    run_dir = Path(run_dir)
    model, ckpt, cfg = load_run_weights(run_dir, checkpoint, blend_init)
    info = dataset_info(dataset)
    if model.num_classes != info.num_classes:
        raise StudioError(f"{run_dir} predicts {model.num_classes} classes, dataset {dataset!r} has {info.num_classes}")
    last = run_dir / "last.pth"
    state = torch.load(last, map_location="cpu", weights_only=False) if last.is_file() else {}
    epochs_done, epochs_planned = state.get("epoch"), cfg.get("epochs")
    train_s = state.get("train_s")
    best_epoch = ckpt.get("epoch", epochs_done)
    source = ckpt.get("source", "ema" if ckpt.get("ema") else "model")
    command = cfg.get("command") or ""
    extra = (state.get("config") or {}).get("extra") or cfg.get("extra") or {}
    training = {
        "run": run_dir.name, "command": command, "resumed_with": extra.get("resumed_with"),
        "epochs_changed": extra.get("epochs_changed"),
        "epochs": epochs_planned, "epochs_done": epochs_done, "weights_epoch": best_epoch, "weights": source,
        "train_s": round(train_s, 1) if train_s else None,
        "recipe": {k: cfg.get(k) for k in ("recipe", "batch", "crop", "lr", "head_lr_mult", "weight_decay",
                                            "warmup_iters", "scale_range", "cat_max_ratio", "rare_crop",
                                            "photometric", "loss", "ohem_thresh", "ohem_min_kept", "class_weight",
                                            "label_smoothing", "drop_path", "ema", "freeze_bn", "seed", "device", "amp")},
        "train_splits": cfg.get("train_splits", "train"), "holdout_drive": cfg.get("holdout_drive"),
        "train_frames": extra.get("train_frames"), "init": cfg.get("init"), "init_from": extra.get("init_from"),
        "selected_on": ckpt.get("metric", f"mixed {cfg.get('val_split', 'val')}"),
    }
    if cfg.get("teacher"):  # distillation settings (engine/training/distill.py)
        training["recipe"].update({k: cfg.get(k) for k in ("teacher", "distill_weight", "distill_temp", "unlabelled",
                                                           "unlabelled_every")})
        training.update(teacher=extra.get("teacher"), unlabelled_frames=extra.get("unlabelled_frames"))
    if blend_init is not None:
        source = training["weights"] = f"{blend_init:g} x {source} + {1 - blend_init:g} x start"
        training["blend_init"] = {
            "weight": blend_init, "start": cfg.get("init"),
            "what": f"{blend_init:g} x the trained weights + {1 - blend_init:g} x the weights the run started from "
                    "(WiSE-FT weight-space ensembling, engine/training/pretrained.py)"}
    if selection_run:
        training["selection"] = (blended_selection_figures(Path(selection_run), blend_init, data) if blend_init is not None
                                 else selection_figures(Path(selection_run)))
    trained_on = cfg.get("train_splits", "train").replace(",", "+")
    if cfg.get("holdout_drive"):
        trained_on += f" without drive {cfg['holdout_drive']}"
    start = f"fine-tuned from {extra['init_from']}" if extra.get("init_from") else "trained from scratch"
    if extra.get("teacher"):
        start += f", distilled from {extra['teacher']['name']}"
    notes = (f"TopFormer-{model.variant} {start} on CamVid {trained_on} by this project: "
             f"{source} weights of epoch {best_epoch} ({epochs_done} of {epochs_planned} epochs done)")
    registry = _install(model, name, dataset, models_dir, notes=notes, training=training,
                        made_by=command or f"python main.py train --export-only {run_dir} --name {name}")
    t0 = time.time()
    res = evaluate_model(name, data, split, models_dir=registry.dir, limit=limit)
    accuracy = {
        "split": split, "miou": round(res.metrics["miou"], 6), "pixel_acc": round(res.metrics["pixel_acc"], 6),
        "per_class": {k: (None if v is None else round(v, 6)) for k, v in res.metrics["per_class"].items()},
        "images": res.images, "scale": res.scale,
        "measured_by": f"python main.py eval --model {name} --split {split} --json"
                       + (f" --limit {limit}" if limit else ""),
        "epochs": epochs_planned, "epochs_done": epochs_done,
    }
    # The same measurement on the first few images: small enough for CI to re-run on every
    # shipped model (tests/test_evaluate.py), so a change to export, Segmenter or eval that
    # shifts accuracy cannot land unnoticed.
    if limit is None or limit > CHECK_IMAGES:
        small = evaluate_model(name, data, split, models_dir=registry.dir, limit=CHECK_IMAGES)
        accuracy["check"] = {
            "images": small.images, "miou": round(small.metrics["miou"], 6),
            "pixel_acc": round(small.metrics["pixel_acc"], 6),
            "measured_by": f"python main.py eval --model {name} --split {split} --limit {CHECK_IMAGES} --json"}
    # What the app's scene-fit notice compares live footage with (app/playback/scene_fit.py).
    if res.confidence is not None:
        accuracy["confidence"] = round(res.confidence, 4)
        accuracy["class_shares"] = res.class_shares
        accuracy["confidence_measured_by"] = (
            f"mean over CamVid {split} ({res.images} images, full scale) of the per-frame mean top-class softmax "
            "probability of the low-resolution logits; class_shares: predicted pixel shares (main.py eval, same run)")
    # Per drive, and on the drive the run never trained on (the figure that predicts footage
    # the model has not seen); measured by eval on the installed ONNX like the rest.
    accuracy["per_drive"] = {d: round(m["miou"], 6) for d, m in res.per_drive.items()}
    holdout = cfg.get("holdout_drive")
    if holdout:
        splits = ",".join(dict.fromkeys(cfg.get("train_splits", "train").split(",") + [split]))
        held = evaluate_model(name, data, splits, models_dir=registry.dir, drives=[holdout], limit=limit)
        accuracy["holdout"] = {
            "drive": holdout, "split": splits, "images": held.images, "miou": round(held.metrics["miou"], 6),
            "pixel_acc": round(held.metrics["pixel_acc"], 6),
            "per_class": {k: (None if v is None else round(v, 6)) for k, v in held.metrics["per_class"].items()},
            "measured_by": f"python main.py eval --model {name} --split {splits} --drive {holdout} --json"
                           + (f" --limit {limit}" if limit else "")}
    registry.update_accuracy(name, accuracy)
    return {"name": name, "onnx": str(registry.dir / f"{name}.onnx"), "miou": res.metrics["miou"],
            "pixel_acc": res.metrics["pixel_acc"], "eval_s": time.time() - t0, "training": training,
            "holdout_miou": accuracy.get("holdout", {}).get("miou")}
