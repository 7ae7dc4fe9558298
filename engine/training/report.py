"""The ablation table from run folders (torch-free: reads config.json and log.jsonl).

``main.py train --report runs/abl-*`` prints one Markdown row per run, so the table in
docs/training.md is produced by a command, not copied by hand.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import StudioError
from .config import RECIPE_FIELDS, RECIPES, TrainConfig


def summarise_run(run_dir: str | Path) -> dict:
    """The best evaluation of a run by its selection metric (held-out drive if the run
    held one out, else mixed val), over raw and EMA weights, with the other figures of
    that same evaluation."""
    run = Path(run_dir)
    cfg_path, log_path = run / "config.json", run / "log.jsonl"
    if not cfg_path.is_file() or not log_path.is_file():
        raise StudioError(f"{run} is not a run folder with a log (expected {cfg_path} and {log_path})")
    cfg = json.loads(cfg_path.read_text())
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not records:
        raise StudioError(f"{log_path} holds no evaluation yet")
    holdout = cfg.get("holdout_drive")
    key = "miou_holdout" if holdout else "miou"
    best = None
    for r in records:
        for suffix, source in (("", "raw"), ("_ema", "EMA")):
            if key + suffix in r and (best is None or r[key + suffix] > best["score"]):
                best = {"score": r[key + suffix], "epoch": r["epoch"], "source": source,
                        "miou_val": r.get("miou" + suffix), "per_drive": r.get("per_drive" + suffix, {})}
    last = records[-1]
    return {"run": run.name, "variant": cfg.get("variant"), "recipe": describe_recipe(cfg),
            "holdout": holdout, "epochs_done": last["epoch"], "epochs": cfg.get("epochs"),
            "epochs_first_planned": ((cfg.get("extra") or {}).get("epochs_changed") or [{}])[0].get("from"),
            "train_min": round(last.get("train_s", 0.0) / 60, 1), **best}


PASTE_DEFAULT = TrainConfig.paste_classes


def describe_recipe(cfg: dict) -> str:
    """The recipe's name, plus the start (pretrained init, frozen BN, lr) of a fine-tune."""
    parts = [cfg.get("recipe") or "-"]
    init_from = (cfg.get("extra") or {}).get("init_from")
    if cfg.get("init"):
        # init_from: "<start> (<detail>)[; grown tiny -> small (<detail>)]"; each step without its detail.
        steps = [step.split(" (")[0] for step in init_from.split("; ")] if init_from else [Path(cfg["init"]).name]
        parts.append(f"init {steps[0].removeprefix('the weights of ')}")
        parts.extend(steps[1:])
        parts.append(f"lr {cfg.get('lr'):g}" + (f" (head x{cfg.get('head_lr_mult'):g})" if cfg.get("head_lr_mult") != 10 else ""))
    if cfg.get("freeze_bn"):
        parts.append("frozen BN")
    if cfg.get("colour_cast"):
        parts.append(f"colour cast {cfg['colour_cast']:g}")
    if cfg.get("decay_to_start"):
        parts.append(f"decay to start x{cfg['decay_to_start']:g}")
    if cfg.get("class_weight") not in (None, "none"):
        parts.append(f"class weight {cfg['class_weight']}")
    if cfg.get("paste"):
        classes = cfg.get("paste_classes")
        parts.append(f"paste {cfg['paste']:g}" + (f" ({classes})" if classes != PASTE_DEFAULT else ""))
    if cfg.get("lovasz_weight"):
        stride = cfg.get("lovasz_stride", 1)
        parts.append(f"Lovasz x{cfg['lovasz_weight']:g}" + (f" (stride {stride})" if stride != 1 else ""))
    if cfg.get("exposure_target"):
        parts.append(f"exposure {cfg['exposure_target']:g}")
    if cfg.get("aux_weight"):
        parts.append(f"aux heads x{cfg['aux_weight']:g}")
    if cfg.get("lwf_weight"):
        start = f", start {Path(cfg['lwf_start']).name}" if cfg.get("lwf_start") else ""
        parts.append(f"LwF x{cfg['lwf_weight']:g} (T {cfg.get('lwf_temp', 2.0):g}{start})")
    if cfg.get("teacher"):
        kd = f"teacher {cfg['teacher']} (x{cfg.get('distill_weight', 1.0):g}"
        kd += f", T {cfg['distill_temp']:g})" if cfg.get("distill_temp", 1.0) != 1.0 else ")"
        parts.append(kd)
    frames = (cfg.get("extra") or {}).get("unlabelled_frames")
    if frames:
        parts.append(f"{frames} unlabelled frames")
    parts.extend(_other_changes(cfg))
    return ", ".join(parts)


# Settings that describe_recipe words itself (lr only for a fine-tune, next to its start).
_WORDED = {"head_lr_mult", "freeze_bn", "colour_cast", "decay_to_start", "class_weight", "paste", "paste_classes",
           "lovasz_weight", "lovasz_stride", "exposure_target", "aux_weight", "teacher", "distill_weight",
           "distill_temp", "unlabelled", "unlabelled_every", "lwf_weight", "lwf_temp", "lwf_start"}


def _other_changes(cfg: dict) -> list[str]:
    """Every other recipe setting that differs from its named recipe (or, without one, from the
    TrainConfig default), as "flag value": a new setting is never left out of the table."""
    start = {**{k: f.default for k, f in TrainConfig.__dataclass_fields__.items()}, **RECIPES.get(cfg.get("recipe"), {})}
    worded = _WORDED | ({"lr"} if cfg.get("init") else set())
    out = []
    for key in RECIPE_FIELDS:
        value = cfg.get(key)
        if key in worded or value is None:
            continue
        if isinstance(value, list):
            value = tuple(value)
        if value != start.get(key):
            shown = "-".join(f"{v:g}" for v in value) if isinstance(value, tuple) else (
                f"{value:g}" if isinstance(value, float) else value)
            out.append(f"{key.replace('_', '-')} {shown}")
    return out


def format_table(rows: list[dict]) -> str:
    """Markdown table of :func:`summarise_run` rows."""
    head = ("| run | variant | recipe | epochs | selected on | best mIoU (epoch, weights) | mixed val mIoU "
            "| per drive | train min |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    lines = [head]
    for r in rows:
        drives = ", ".join(f"{d} {v * 100:.2f}" for d, v in r["per_drive"].items())
        sel = f"held-out {r['holdout']}" if r["holdout"] else "mixed val"
        val = "" if r["miou_val"] is None else f"{r['miou_val'] * 100:.2f}"
        planned = f" (planned {r['epochs_first_planned']})" if r.get("epochs_first_planned") else ""
        lines.append(f"| `{r['run']}` | {r['variant']} | {r['recipe']} | {r['epochs_done']}/{r['epochs']}{planned} | {sel} "
                     f"| {r['score'] * 100:.2f} ({r['epoch']}, {r['source']}) | {val} | {drives} | {r['train_min']} |")
    return "\n".join(lines)
