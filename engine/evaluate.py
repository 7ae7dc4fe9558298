"""Accuracy of an installed ONNX model on a labelled CamVid-layout folder (no torch).

The model runs through :class:`engine.segmenter.Segmenter`, the same code the app uses,
so the reported number is the accuracy users get. Predictions come back at the frame's
size, so metrics are computed on the original labels (no label resizing); pixels whose
label is the dataset's ignore index (CamVid: 11 = void) or any id >= num_classes are skipped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import StudioError


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

    def to_json(self) -> dict:
        return {"model": self.model, "split": self.split, "images": self.images, "scale": self.scale,
                "seconds": round(self.seconds, 2), **self.metrics}


def evaluate_model(name: str, data: str | Path, split: str = "val", models_dir: str | Path | None = None,
                   limit: int | None = None, scale: str | float = "full", progress: bool = False) -> EvalResult:
    """Run model ``name`` (from the registry) over ``data``/``split`` and score it."""
    from .segmenter import Segmenter
    from .training.data import list_samples, read_image_bgr, read_label

    samples = list_samples(data, split)
    if limit is not None:
        if limit < 1:
            raise StudioError("--limit must be at least 1")
        samples = samples[:limit]
    seg = Segmenter.load(name, models_dir=Path(models_dir) if models_dir else None)
    n = seg.num_classes
    conf = np.zeros((n, n), np.int64)
    t0 = time.perf_counter()
    it = samples
    if progress:
        from tqdm import tqdm
        it = tqdm(samples, desc=f"eval {name}", unit="img")
    for s in it:
        frame = read_image_bgr(s.image)
        label = read_label(s.label)
        if label.shape != frame.shape[:2]:
            raise StudioError(f"{s.name}: image {frame.shape[:2]} and label {label.shape} sizes differ")
        pred = seg.segment(frame, scale=scale).labels
        conf += confusion_matrix(pred, label, n)
    metrics = metrics_from_confusion(conf, list(seg.class_names))
    return EvalResult(name, split, len(samples), str(scale), metrics, time.perf_counter() - t0)


def format_report(res: EvalResult) -> str:
    """Human-readable table of per-class IoU."""
    lines = [f"model {res.model}  split {res.split}  images {res.images}  scale {res.scale}  ({res.seconds:.1f} s)"]
    for cname, v in res.metrics["per_class"].items():
        lines.append(f"  {cname:<14} {'   n/a' if v is None else f'{v * 100:6.2f}'}")
    lines.append(f"  {'mIoU':<14} {res.metrics['miou'] * 100:6.2f}")
    lines.append(f"  {'pixel acc':<14} {res.metrics['pixel_acc'] * 100:6.2f}")
    return "\n".join(lines)
