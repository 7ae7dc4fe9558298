"""Accuracy of an installed ONNX model on a labelled CamVid-layout folder (no torch).

The model runs through :class:`engine.run.segmenter.Segmenter`, the same code the app uses,
so the reported number is the accuracy users get. Predictions come back at the frame's
size, so metrics are computed on the original labels (no label resizing); pixels whose
label is the dataset's ignore index (CamVid: 11 = void) or any id >= num_classes are skipped.

Besides the figure over all frames, every result holds the figure per drive (the frame
name's prefix, see :func:`engine.models.datasets.drive_of`): a drive the model was not trained on
predicts accuracy on users' footage; the mixed figure over a drive it trained on does not.
Progress is reported through a callback; drawing it is the CLI's business.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models.datasets import read_image_bgr, read_label, select_samples
from ..errors import StudioError

ProgressFn = Callable[[int, int], None]  # (images done, images in all)


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [C, C] counts, rows = ground truth, columns = prediction; labels >= C ignored."""
    pred = np.asarray(pred).ravel()
    label = np.asarray(label).ravel()
    if pred.shape != label.shape:
        raise ValueError(f"prediction has {pred.size} pixels, label {label.size}")
    keep = label < num_classes
    p = pred[keep].astype(np.int64)
    if p.size and (p.max() >= num_classes or p.min() < 0):
        raise ValueError(f"prediction holds class id {int(p.max())}, the model has {num_classes} classes")
    idx = label[keep].astype(np.int64) * num_classes + p
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion(conf: np.ndarray, class_names: list[str] | None = None) -> dict:
    """Per-class IoU, mIoU and pixel accuracy from a confusion matrix.

    IoU_c = TP / (TP + FP + FN). A class absent from both labels and predictions has no
    IoU (None) and is left out of the mean, as mmseg does (nanmean).
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    total = conf.sum()
    names = class_names or [str(i) for i in range(len(tp))]
    valid = ~np.isnan(iou)
    return {
        "miou": float(iou[valid].mean()) if valid.any() else 0.0,
        "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
        "per_class": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)},
        "pixels": int(total),
    }


@dataclass
class EvalResult:
    model: str
    split: str
    images: int
    scale: str
    metrics: dict
    seconds: float
    per_drive: dict[str, dict] = field(default_factory=dict)  # drive -> metrics + "images"
    confidence: float | None = None  # mean per-frame confidence (the scene-fit notice's reference)
    class_shares: dict[str, float] = field(default_factory=dict)  # predicted pixel share per class, all pixels

    def to_json(self) -> dict:
        return {"model": self.model, "split": self.split, "images": self.images, "scale": self.scale,
                "seconds": round(self.seconds, 2), **self.metrics, "per_drive": self.per_drive}


def metrics_by_group(confs: dict[str, np.ndarray], counts: dict[str, int],
                     class_names: list[str] | None = None) -> dict[str, dict]:
    """Metrics of each group's summed confusion matrix, with its image count, groups sorted."""
    return {g: {"images": counts[g], **metrics_from_confusion(confs[g], class_names)} for g in sorted(confs)}


def evaluate_model(name: str, data: str | Path, split: str | Sequence[str] = "val",
                   models_dir: str | Path | None = None, limit: int | None = None, scale: str | float = "full",
                   drives: Sequence[str] | None = None, on_progress: ProgressFn | None = None,
                   multiscale: Sequence[float] | None = None) -> EvalResult:
    """Run model ``name`` (from the registry) over ``data``/``split`` and score it, over all
    frames and per drive. ``split`` may name several splits (``"train,val"``); ``drives``
    keeps only those drives' frames; ``limit`` keeps the first N frames (by name, after the
    drive selection). ``multiscale``: average the class probabilities of these input factors
    instead of one ``scale`` (engine/run/multiscale.py)."""
    from ..run.multiscale import segment_frame
    from ..run.segmenter import Segmenter

    samples = select_samples(data, split, drives=drives)
    if limit is not None:
        if limit < 1:
            raise StudioError("--limit must be at least 1")
        samples = samples[:limit]
    seg = Segmenter.load(name, models_dir=Path(models_dir) if models_dir else None)
    n = seg.num_classes
    confs: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    t0 = time.perf_counter()
    confidences, predicted = [], np.zeros(n, np.int64)
    for i, s in enumerate(samples):
        frame = read_image_bgr(s.image)
        label = read_label(s.label)
        if label.shape != frame.shape[:2]:
            raise StudioError(f"{s.name}: image {frame.shape[:2]} and label {label.shape} sizes differ")
        result = segment_frame(seg, frame, scale, multiscale)
        pred = result.labels
        if result.confidence is not None:
            confidences.append(result.confidence)
        predicted += np.bincount(pred.ravel(), minlength=n)[:n]
        conf = confs.setdefault(s.drive, np.zeros((n, n), np.int64))
        conf += confusion_matrix(pred, label, n)
        counts[s.drive] = counts.get(s.drive, 0) + 1
        if on_progress is not None:
            on_progress(i + 1, len(samples))
    names = list(seg.class_names)
    metrics = metrics_from_confusion(sum(confs.values()), names)
    split_text = split if isinstance(split, str) else ",".join(split)
    shares = predicted / max(int(predicted.sum()), 1)
    scale_text = "multiscale " + ",".join(f"{f:g}" for f in multiscale) if multiscale else str(scale)
    return EvalResult(name, split_text, len(samples), scale_text, metrics, time.perf_counter() - t0,
                      per_drive=metrics_by_group(confs, counts, names),
                      confidence=float(np.mean(confidences)) if confidences else None,
                      class_shares={c: round(float(v), 4) for c, v in zip(names, shares)})


def best_input_size(name: str, data: str | Path, split: str, factors: Sequence[float],
                    models_dir: str | Path | None = None) -> dict:
    """mIoU of ``name`` at each input factor, and the long side of the best one.

    A model trained on 480x360 frames sees objects 2.7x larger in a 720p frame at full
    size; some lose accuracy there. The long side found here (factor x the frames' long
    side) is recorded as ``input.best_long_side`` and caps ``full``/``half`` for that model.
    """
    samples = select_samples(data, split)
    if not samples:
        raise StudioError(f"no frames in {data}/{split}")
    long_side = max(read_image_bgr(samples[0].image).shape[:2])
    scores = {f"{f:g}": evaluate_model(name, data, split, models_dir=models_dir, scale=float(f)).metrics["miou"]
              for f in factors}
    best = max(scores, key=scores.get)
    return {"best_long_side": int(round(float(best) * long_side)), "best_factor": float(best),
            "frames_long_side": int(long_side), "miou_by_factor": {k: round(v, 6) for k, v in scores.items()},
            "split": split}


def _cell(v: float | None) -> str:
    return "   n/a" if v is None else f"{v * 100:6.2f}"


def format_report(res: EvalResult) -> str:
    """Human-readable table of per-class IoU: one column over all frames, then (when the
    frames come from more than one drive, or the one drive is named) one column per drive."""
    lines = [f"model {res.model}  split {res.split}  images {res.images}  scale {res.scale}  ({res.seconds:.1f} s)"]
    drives = list(res.per_drive)
    cols = [("all", res.metrics, res.images)] + [(d, res.per_drive[d], res.per_drive[d]["images"]) for d in drives]
    if len(drives) == 1 and res.per_drive[drives[0]]["images"] == res.images:
        cols = cols[:1] if drives[0] == "-" else [(drives[0], res.metrics, res.images)]
    lines.append(f"  {'':<14}" + "".join(f" {c[0]:>8}" for c in cols))
    lines.append(f"  {'images':<14}" + "".join(f" {c[2]:>8}" for c in cols))
    for cname in res.metrics["per_class"]:
        lines.append(f"  {cname:<14}" + "".join(f" {_cell(c[1]['per_class'][cname]):>8}" for c in cols))
    lines.append(f"  {'mIoU':<14}" + "".join(f" {_cell(c[1]['miou']):>8}" for c in cols))
    lines.append(f"  {'pixel acc':<14}" + "".join(f" {_cell(c[1]['pixel_acc']):>8}" for c in cols))
    return "\n".join(lines)
