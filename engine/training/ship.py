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
from ..paths import DEFAULT_CAMVID
from ..models.exposure import check_target
from .class_bias import class_bias_flags
from .config import OPTIONAL_RECIPE_PARTS, RECORDED_RECIPE
from .run_weights import load_run_weights, run_folders, spec_name

CHECK_IMAGES = 10  # images of the quick reproduction check recorded with every shipped model


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


def ship_flags(weight: float | None, start: str | Path | None, class_bias: dict[str, float] | None = None,
               exposure_target: float | None = None) -> str:
    """The command-line flags that ship a run as asked (" --blend-init W [--blend-start S] [--class-bias C=V]
    [--exposure-target T]")."""
    flags = "" if weight is None else f" --blend-init {weight:g}" + (f" --blend-start {start}" if start else "")
    return flags + class_bias_flags(class_bias) + (f" --exposure-target {exposure_target:g}" if exposure_target else "")


def measured_selection_figures(spec: str | Path, weight: float | None, data: str | Path = DEFAULT_CAMVID,
                               figures: dict | None = None, start: str | Path | None = None,
                               class_bias: dict[str, float] | None = None, exposure_target: float | None = None) -> dict:
    """``selection_figures`` of a selection run (or soup of runs) shipped as the model is:
    blended with the start (``--blend-init``, ``--blend-start``) and/or averaged. The in-loop figures are of one
    run's own weights, so the held-out figure of the shipped-alike weights (last EMA) is measured
    here by eval (ONNX through the Segmenter) and recorded as the last one. ``figures``: the
    first run's ``selection_figures`` when the caller has them already; ``class_bias`` and
    ``exposure_target`` as shipped."""
    from ..jobs.evaluate import evaluate_model

    runs = run_folders(spec)
    figures = dict(figures or selection_figures(runs[0]))
    if len(runs) > 1:
        figures.update(run=spec_name(spec), soup=[str(r) for r in runs])
    model, _, cfg = load_run_weights(spec, "last.pth", blend_init=weight, blend_start=start, class_bias=class_bias,
                                     classes=dataset_info("camvid").classes)
    splits = cfg.get("train_splits", "train,val")
    with tempfile.TemporaryDirectory(prefix="studio-selection-") as tmp:
        _install(model, "selection", "camvid", tmp, made_by=f"{spec} as shipped", notes="", training={},
                 exposure_target=exposure_target)
        held = evaluate_model("selection", data, splits, models_dir=tmp, drives=[figures["holdout_drive"]])
    last = figures["last"]
    flags = ship_flags(weight, start, class_bias, exposure_target)
    how = [] if weight is None else [f"blended with the start ({ship_flags(weight, start).strip()})"]
    if class_bias:
        how.append(f"logit offsets ({class_bias_flags(class_bias).strip()})")
    if exposure_target:
        how.append(f"exposure target {exposure_target:g}")
    if len(runs) > 1:
        how.insert(0, f"averaged over {len(runs)} runs (a soup)")
    figures["last"] = {"epoch": last["epoch"], "miou_holdout": round(held.metrics["miou"], 6),
                       "per_class": {k: (None if v is None else round(v, 6)) for k, v in held.metrics["per_class"].items()},
                       "weights": "last (EMA where kept)" + (", " + ", ".join(how) if how else ""),
                       "in_loop": {"miou_holdout": last["miou_holdout"], "miou_holdout_ema": last["miou_holdout_ema"]}}
    figures["last_measured_by"] = (f"python main.py train --export-only {spec} --checkpoint last.pth{flags} --name M, "
                                   f"then python main.py eval --model M --split {splits} --drive {figures['holdout_drive']}")
    return figures


def unseen_drives_summary(selections: list[dict]) -> dict:
    """The last held-out figure of each selection run, averaged per drive (runs of several seeds),
    and the mean of the drives: several unseen drives predict footage a model never saw better
    than one (they disagree by up to 7 points), and one seed's figure moves by up to 1.4."""
    runs: dict[str, dict[str, float]] = {}
    for s in selections:
        runs.setdefault(s["holdout_drive"], {})[s["run"]] = s["last"]["miou_holdout"]
    per_drive = {d: round(sum(r.values()) / len(r), 6) for d, r in runs.items()}
    return {"drives": per_drive, "runs": runs,
            "mean": round(sum(per_drive.values()) / len(per_drive), 6), "scale": 1.0,
            "what": "mIoU of the recipe run with each drive held out, on that drive, weights as shipped; "
                    "with several runs of a drive (seeds), their mean"}


def _check_distinct_names(specs: list[str | Path]) -> None:
    """Selection runs are recorded by folder name (``unseen_drives.runs``), so two of them must
    differ by name, not only by path: the second would overwrite the first's figure."""
    seen: dict[str, tuple] = {}
    for spec in specs:
        name, where = spec_name(spec), tuple(p.resolve() for p in run_folders(spec))
        if name not in seen:
            seen[name] = where
        elif seen[name] == where:
            raise StudioError(f"--selection-run: each run once, not {name} twice")
        else:
            raise StudioError(f"--selection-run: two runs named {name} in different folders; the manifest records "
                              "selection runs by folder name: rename one")


def _run_command(run_dir: Path) -> str | None:
    path = run_dir / "config.json"
    return json.loads(path.read_text()).get("command") if path.is_file() else None


def _install(model: torch.nn.Module, name: str, dataset: str, models_dir: str | Path | None, made_by: str,
             notes: str, training: dict, exposure_target: float | None = None) -> Registry:
    """Export ``model`` to ONNX (with the exposure gain, if any) and install it as ``name`` (manifest
    entry without accuracy)."""
    from ..models.export import export_onnx

    info = dataset_info(dataset)
    registry = Registry(models_dir)
    registry.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=registry.dir, prefix=".ship-") as tmp:
        onnx_tmp = export_onnx(model, Path(tmp) / "model.onnx", metadata={"name": name, "dataset": dataset},
                               exposure_target=exposure_target)
        entry = ModelEntry(name=name, variant=model.variant, dataset=dataset, classes=list(info.classes),
                           palette=[list(c) for c in info.palette], onnx="", sha256="",
                           made_by=made_by, notes=notes, training=training)
        registry.add(entry, onnx_tmp, move=True)
    return registry


def ship_run(run: str | Path, name: str, models_dir: str | Path | None = None, data: str | Path = DEFAULT_CAMVID,
             split: str = "val", checkpoint: str = "best.pth", dataset: str = "camvid", limit: int | None = None,
             selection_run: str | Path | list | None = None, blend_init: float | None = None,
             blend_start: str | Path | None = None, class_bias: dict[str, float] | None = None,
             exposure_target: float | None = None) -> dict:
    """Export RUN/checkpoint (or the soup of ``RUN,RUN,...``) as model ``name``, evaluate it on
    ``data``/``split`` through the Segmenter and record command, epochs and measured accuracy in
    the manifest. ``selection_run``: the held-out-drive run(s) that chose the recipe, one per
    drive, each shipped alike and measured (``training.selection``, ``training.unseen_drives``).
    ``blend_init``: ship W x the trained weights + (1 - W) x the start (the run's --init, or
    ``blend_start``). ``class_bias``: class name -> offset added to the classifier's bias
    (``class_bias.py``), applied alike to the selection runs. ``exposure_target``: the shipped
    graph brightens dark frames to this mean (engine/models/exposure.py; default: the run's own
    training target, if any), the selection runs alike.
    Returns a summary dict (name, onnx, miou, pixel_acc)."""
    from ..jobs.evaluate import evaluate_model

    runs = run_folders(run)
    run_dir = runs[0]
    info = dataset_info(dataset)
    model, ckpt, cfg = load_run_weights(run, checkpoint, blend_init, blend_start, class_bias, info.classes)
    trained_exposure = check_target(cfg.get("exposure_target"))
    exposure = check_target(exposure_target) if exposure_target is not None else trained_exposure
    if model.num_classes != info.num_classes:
        raise StudioError(f"{run_dir} predicts {model.num_classes} classes, dataset {dataset!r} has {info.num_classes}")
    last = run_dir / "last.pth"
    if len(runs) == 1 and Path(checkpoint).name == "last.pth":
        state = ckpt  # already read (22-48 MB): do not read it twice
    else:
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
        "recipe": {k: cfg.get(k) for k in RECORDED_RECIPE},
        "train_splits": cfg.get("train_splits", "train"), "holdout_drive": cfg.get("holdout_drive"),
        "train_frames": extra.get("train_frames"), "init": cfg.get("init"), "init_from": extra.get("init_from"),
        "selected_on": ckpt.get("metric", f"mixed {cfg.get('val_split', 'val')}"),
    }
    for switch, fields in OPTIONAL_RECIPE_PARTS:
        if cfg.get(switch):
            training["recipe"].update({k: cfg.get(k) for k in fields})
    if cfg.get("teacher"):
        training["teacher"] = extra.get("teacher")
    if extra.get("unlabelled_frames"):
        training["unlabelled_frames"] = extra["unlabelled_frames"]
    if len(runs) > 1:
        training["run"] = spec_name(run)
        training["soup"] = {
            "runs": [str(r) for r in runs], "commands": [_run_command(r) for r in runs],
            "what": f"the mean of the weights of {len(runs)} runs of one recipe from one start (a model soup, "
                    "engine/training/run_weights.py)"}
        source = training["weights"] = f"mean of {len(runs)} runs' {source}"
    if blend_init is not None:
        source = training["weights"] = f"{blend_init:g} x {source} + {1 - blend_init:g} x start"
        training["blend_init"] = {
            "weight": blend_init, "start": str(blend_start) if blend_start else cfg.get("init"),
            "what": f"{blend_init:g} x the trained weights + {1 - blend_init:g} x the weights the run started from "
                    "(WiSE-FT weight-space ensembling, engine/training/pretrained.py)"}
    bias_flags = class_bias_flags(class_bias).strip()
    if class_bias:
        training["weights"] = f"{source}, with logit offsets"
        training["class_bias"] = {
            "offsets": dict(class_bias), "flags": bias_flags,
            "what": "added to the classifier's bias (conv_seg) at ship time, so argmax gives these thin rare "
                    "classes more pixels (engine/training/class_bias.py)"}
    if exposure:
        training["exposure"] = {
            "target_mean": exposure, "in_training": trained_exposure,
            "what": "the graph multiplies a frame whose mean pixel value is below target_mean by target_mean / mean "
                    "before the network (engine/models/exposure.py); in_training: the target the run's frames were "
                    "brightened to (null: none)"}
    specs = [selection_run] if isinstance(selection_run, (str, Path)) else list(selection_run or [])
    if specs:
        _check_distinct_names(specs)
        in_loop = [selection_figures(run_folders(s)[0]) for s in specs]
        measure = blend_init is not None or bool(class_bias) or bool(exposure) or len(specs) > 1 or any(len(run_folders(s)) > 1 for s in specs)
        selections = [measured_selection_figures(s, blend_init, data, figures, blend_start, class_bias, exposure)
                      if measure else figures
                      for s, figures in zip(specs, in_loop)]
        training["selection"] = selections[0]
        if len(selections) > 1:
            training["unseen_drives"] = unseen_drives_summary(selections)
    trained_on = cfg.get("train_splits", "train").replace(",", "+")
    if cfg.get("holdout_drive"):
        trained_on += f" without drive {cfg['holdout_drive']}"
    start = f"fine-tuned from {extra['init_from']}" if extra.get("init_from") else "trained from scratch"
    if extra.get("teacher"):
        start += f", distilled from {extra['teacher']['name']}"
    notes = (f"TopFormer-{model.variant} {start} on CamVid {trained_on} by this project: "
             f"{source} weights of epoch {best_epoch} ({epochs_done} of {epochs_planned} epochs done)"
             + (f"; logit offsets {bias_flags}" if class_bias else "")
             + (f"; frames darker than a mean of {exposure:g} brightened to it" if exposure else ""))
    # Both steps when the run's own command is known: training alone does not give the shipped
    # weights once a blend, offsets or another exposure target are applied at export.
    ship_command = (f"python main.py train --export-only {run} --checkpoint {checkpoint} --name {name}"
                    + ship_flags(blend_init, blend_start, class_bias, exposure_target))
    made_by = f"{command} && {ship_command}" if len(runs) == 1 and command else ship_command
    registry = _install(model, name, dataset, models_dir, notes=notes, training=training, exposure_target=exposure,
                        made_by=made_by)
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
