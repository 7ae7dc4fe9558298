"""In-loop validation (torch): per-frame confusion matrices, summed per set and per drive.

One pass of the model over the union of the validation sets (the held-out drive's frames
and the mixed val split) gives every figure the log needs: the held-out-drive mIoU (the
selection metric when a drive is held out), the mixed val mIoU (kept for continuity with
earlier runs) and the mIoU of each drive.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..jobs.evaluate import metrics_from_confusion
from ..models.topformer import MEAN_RGB, STD_RGB
from . import data as D


@dataclass
class ValFrames:
    """The validation frames in memory, each tagged with its drive and the sets it is in."""
    names: list[str]
    drives: list[str]
    images: list[np.ndarray]
    labels: list[np.ndarray]
    in_val: list[bool]  # in the mixed val split
    in_holdout: list[bool]  # of the held-out drive


def confusion_torch(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> np.ndarray:
    """Confusion matrix (rows: ground truth, cols: prediction), ignoring labels >= C."""
    keep = label < num_classes
    idx = label[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu().numpy()


@torch.no_grad()
def frame_confusions(model: nn.Module, images: list[np.ndarray], labels: list[np.ndarray], num_classes: int,
                     device: torch.device, channels_last: bool = True) -> list[np.ndarray]:
    """Confusion matrix of each frame at its native size rounded to multiples of 32 (resize
    in, bilinear logits back to the label size, argmax), the protocol of ``main.py eval``,
    which measures the exported ONNX model and gives the number that gets reported."""
    modes = [(m, m.training) for m in model.modules()]  # restored per module: frozen BN stays frozen
    model.eval()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = []
    for img, lbl in zip(images, labels):
        h, w = lbl.shape
        ih, iw = D.round_to_multiple(h), D.round_to_multiple(w)
        x = img if (ih, iw) == (h, w) else cv2.resize(img, (iw, ih), interpolation=cv2.INTER_LINEAR)
        t = torch.from_numpy(D.normalise(x[None], MEAN_RGB, STD_RGB)).to(device).contiguous(memory_format=fmt)
        logits = F.interpolate(model(t), size=(h, w), mode="bilinear", align_corners=False)
        out.append(confusion_torch(logits.argmax(1)[0], torch.from_numpy(lbl).to(device), num_classes))
    for module, mode in modes:
        module.training = mode
    return out


def summarise(confs: list[np.ndarray], frames: ValFrames, holdout_drive: str | None) -> dict:
    """Figures of one evaluation: ``miou``/``pixel_acc``/``per_class`` on the mixed val
    split, ``per_drive`` (drive -> mIoU over the validated frames of that drive),
    ``miou_holdout``/``per_class_holdout`` on the held-out drive, and ``score``, the
    selection metric (held-out drive if any, else mixed val)."""
    def total(mask: list[bool]) -> np.ndarray | None:
        picked = [c for c, m in zip(confs, mask) if m]
        return sum(picked) if picked else None

    out: dict = {}
    val = total(frames.in_val)
    if val is not None:
        m = metrics_from_confusion(val)
        out.update(miou=m["miou"], pixel_acc=m["pixel_acc"], per_class=m["per_class"])
    out["per_drive"] = {d: metrics_from_confusion(total([x == d for x in frames.drives]))["miou"]
                        for d in sorted(set(frames.drives))}
    if holdout_drive:
        m = metrics_from_confusion(total(frames.in_holdout))
        out.update(miou_holdout=m["miou"], pixel_acc_holdout=m["pixel_acc"], per_class_holdout=m["per_class"])
    out["score"] = out["miou_holdout"] if holdout_drive else out["miou"]
    return out


def validate(model: nn.Module, frames: ValFrames, num_classes: int, device: torch.device,
             holdout_drive: str | None = None, channels_last: bool = True) -> dict:
    """:func:`summarise` of one pass of ``model`` over ``frames``."""
    confs = frame_confusions(model, frames.images, frames.labels, num_classes, device, channels_last)
    return summarise(confs, frames, holdout_drive)
