"""Distillation: an installed model's class probabilities as a second training target.

Why: CamVid has 367 training frames. A Small or Base trained on them from scratch scores
about 36 mIoU on a drive it never saw, while the ADE20K-started Tiny scores about 45
(docs/training.md): what ADE20K taught it is in its per-pixel probabilities, and a student
trained to match them inherits some of it. The teacher is any model the app can run
(ONNX Runtime, the network only: logits at 1/8), so the shipped ``camvid-tiny`` can teach
without its torch weights. Unlabelled frames (video clips, image folders) add images that
only the teacher labels: footage like the users' own.

The loss is the per-pixel KL divergence KL(teacher || student) at temperature T, over the
logits' 1/8 grid (both networks have output stride 8), times T^2, averaged over pixels.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import StudioError
from ..models.datasets import IMAGE_EXTS, read_image_bgr
from .config import TrainConfig


class Teacher:
    """An installed model run by ONNX Runtime on training crops (RGB uint8) -> logits.

    ``frames_brightened``: the run already brightens its frames (``--exposure-target``), so a
    teacher whose graph has an exposure gain runs without it (``graph.without_exposure``):
    otherwise it would brighten each crop again, by a gain from the crop's mean."""

    def __init__(self, name: str, models_dir: str | Path | None, threads: int, num_classes: int,
                 frames_brightened: bool = False):
        from ..run.segmenter import Segmenter  # onnxruntime only when distilling

        self.segmenter = Segmenter.load(name, models_dir, threads=threads, cpu_only=True, backend="onnxruntime")
        if self.segmenter.legacy:
            raise StudioError(f"--teacher {name}: its file computes labels in the graph (older layout), no logits")
        if self.segmenter.num_classes != num_classes:
            raise StudioError(f"--teacher {name} has {self.segmenter.num_classes} classes, the training data "
                              f"{num_classes}")
        self.record = {"name": name, "sha256": self.segmenter.entry.sha256, "variant": self.segmenter.entry.variant}
        self.session = None
        if frames_brightened and self.segmenter.metadata.get("exposure"):
            self.session = _session_without_exposure(self.segmenter.onnx_path, threads)
            self.record["exposure"] = "taken out of the teacher's graph: the run brightens the frames itself"

    def logits(self, crops_rgb: list[np.ndarray]) -> torch.Tensor:
        """float32 [N, C, h/8, w/8]; the graph takes one BGR frame at a time."""
        frames = [np.ascontiguousarray(c[..., ::-1])[None] for c in crops_rgb]
        if self.session is not None:
            out = [self.session.run(None, {"image": f})[0][0] for f in frames]
        else:
            out = [self.segmenter.logits(f) for f in frames]
        return torch.from_numpy(np.stack(out))


def _session_without_exposure(path: Path, threads: int):
    """An ONNX Runtime CPU session of the model file at ``path`` with its exposure gain taken out."""
    import onnx
    import onnxruntime as ort

    from ..models.graph import without_exposure

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads or 1))
    return ort.InferenceSession(without_exposure(onnx.load(str(path))).SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def make_teacher(cfg: TrainConfig) -> Teacher | None:
    """The run's teacher (None without ``--teacher``), its settings checked first."""
    if not cfg.teacher:
        return None
    if cfg.distill_weight < 0 or cfg.distill_temp <= 0:
        raise StudioError("--distill-weight must be at least 0 and --distill-temp above 0")
    return Teacher(cfg.teacher, cfg.teacher_models_dir, cfg.threads, cfg.num_classes,
                   frames_brightened=bool(cfg.exposure_target))


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over pixels of T^2 * KL(softmax(teacher/T) || softmax(student/T)); both [N, C, h, w]."""
    if student.shape[-2:] != teacher.shape[-2:]:
        teacher = F.interpolate(teacher, size=student.shape[-2:], mode="bilinear", align_corners=False)
    t = temperature
    log_p_student = F.log_softmax(student.float() / t, dim=1)
    log_p_teacher = F.log_softmax(teacher.float() / t, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return kl.mean() * (t * t)


def supervised_loss(criterion, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """The labelled loss, 0 for a batch of unlabelled frames only (mean over no pixels is NaN)."""
    if not bool((labels != ignore_index).any()):
        return logits.sum() * 0.0
    return criterion(logits, labels)


def _video_frames(path: Path, every: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise StudioError(f"--unlabelled: cannot open video {path}")
    frames, i = [], 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % every == 0:
                frames.append(frame)
            i += 1
    finally:
        cap.release()
    if not frames:
        raise StudioError(f"--unlabelled: no frames could be read from {path}")
    return frames


def add_unlabelled(cfg: TrainConfig, images: list[np.ndarray], labels: list[np.ndarray]) -> int:
    """Append the run's unlabelled frames (labels all ``ignore_index``: only the teacher's or the
    LwF start's targets) to the training lists; returns how many."""
    if not cfg.unlabelled:
        return 0
    if not cfg.teacher and not cfg.lwf_weight:
        raise StudioError("--unlabelled frames need a --teacher or --lwf-weight to give them targets")
    frames = load_unlabelled(cfg.unlabelled, cfg.unlabelled_every, cfg.unlabelled_height)
    images += frames
    labels += [np.full(im.shape[:2], cfg.ignore_index, np.uint8) for im in frames]
    return len(frames)


def load_unlabelled(paths: list[str] | tuple[str, ...], every: int, height: int) -> list[np.ndarray]:
    """RGB frames of video files (every ``every``-th frame) and image folders, resized to
    ``height`` rows (CamVid's 360: the random scale then covers them as it covers CamVid)."""
    if every < 1 or height < 32:
        raise StudioError("--unlabelled-every must be at least 1 and the height at least 32")
    frames: list[np.ndarray] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
            if not files:
                raise StudioError(f"--unlabelled: no images ({', '.join(IMAGE_EXTS)}) in {p}")
            frames += [read_image_bgr(f) for f in files[::every]]
        elif p.is_file():
            frames += _video_frames(p, every)
        else:
            raise StudioError(f"--unlabelled: not found: {p}")
    out = []
    for f in frames:
        h, w = f.shape[:2]
        size = (max(1, round(w * height / h)), height)
        out.append(cv2.cvtColor(cv2.resize(f, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    return out
