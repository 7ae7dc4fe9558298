"""What the Models dialog does, as plain functions run by app/dialogs/jobs.py (no widgets here).

Import and download convert a PyTorch checkpoint to ONNX, so they need the training extra;
the user is told the exact command when it is missing. Downloads go through
``engine.models.download`` (resumable; a broken transfer is continued by pressing Download again).
"""
from __future__ import annotations

import importlib.util
import inspect
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from engine.errors import StudioError
from engine.models.registry import ModelEntry, Registry

TORCH_MISSING = ("Converting a checkpoint needs PyTorch, which is not installed. Add it with "
                 "pip install -e '.[train]' in the project folder (on a small device install a CPU-only "
                 "torch first: pip install torch --index-url https://download.pytorch.org/whl/cpu), "
                 "then restart the app.")
OFFLINE = "Could not reach the download server. Check the internet connection; nothing was saved."
MADE_BY_DIALOG = "TopFormer Studio Models dialog"
USER_ADDED_MARKS = ("python main.py models import", "python main.py models download", MADE_BY_DIALOG)
SPEED_FRAME_HW = (360, 640)

Progress = Callable[[int, int], None]


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def is_user_added(entry: ModelEntry) -> bool:
    """Imported or downloaded by the user (removable); the bundled models are not."""
    return entry.made_by.startswith(USER_ADDED_MARKS)


def accuracy_text(entry: ModelEntry) -> str:
    """The full accuracy text, e.g. ``val mIoU 58.9 %, pixel accuracy 91.2 % (101 images)``."""
    acc = entry.accuracy or {}
    if not isinstance(acc.get("miou"), (int, float)):
        return "accuracy not measured"
    text = f"{acc.get('split', '')} mIoU {100 * acc['miou']:.1f} %".strip()
    if isinstance(acc.get("pixel_acc"), (int, float)):
        text += f", pixel accuracy {100 * acc['pixel_acc']:.1f} %"
    if acc.get("images"):
        text += f" ({acc['images']} images)"
    if entry.unseen_text():  # val shares a drive with training: say what footage never seen gets
        text += f"; {entry.unseen_text()}"
    return text


def file_size_text(models_dir: Path, entry: ModelEntry) -> str:
    path = Registry(models_dir).onnx_path(entry)
    return f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "file missing"


def measure_speeds(models_dir: Path, names: list[str], rounds: int = 7,
                   cancel: threading.Event | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """(median milliseconds per 640x360 frame at full scale, by model; why a model could not be
    measured, by model): all in interleaved rounds.

    Why interleaved: the app keeps playing while the dialog measures, and other programs come
    and go. Measured one after the other, a small model caught in a busy moment was listed as
    slower than a bigger one (120 against 72 ms); round by round, every model meets the same load.
    """
    from engine.run.segmenter import Segmenter

    segmenters, problems = {}, {}
    for name in names:  # one broken model leaves the others measured
        try:
            segmenters[name] = Segmenter.load(name, models_dir)
        except StudioError as exc:
            problems[name] = str(exc)
    frame = np.random.default_rng(0).integers(0, 255, (*SPEED_FRAME_HW, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {name: [] for name in segmenters}
    for round_ in range(rounds + 1):  # round 0 warms each session up and is not counted
        for name, segmenter in segmenters.items():
            if cancel is not None and cancel.is_set():
                raise StudioError("Cancelled.")
            t0 = time.perf_counter()
            segmenter.segment(frame, "full")
            if round_:
                times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: round(statistics.median(ms), 1) for name, ms in times.items()}, problems


def import_file(models_dir: Path, path: Path, dataset: str | None, name: str | None = None) -> ModelEntry:
    """``dataset=None``: the one with the checkpoint's class count (``import_checkpoint``)."""
    if not torch_available():
        raise StudioError(TORCH_MISSING)
    from engine.models.checkpoint import import_checkpoint

    how = f"as {dataset}" if dataset else "(dataset from its class count)"
    return import_checkpoint(Path(path), dataset, name=name or None, models_dir=models_dir,
                             made_by=f"{MADE_BY_DIALOG}: import {Path(path).name} {how}")


def download_base_url() -> str | None:
    """STUDIO_DOWNLOAD_URL overrides the server (mirrors, and tests with an unreachable one)."""
    return os.environ.get("STUDIO_DOWNLOAD_URL") or None


def download_file(variant: str, progress: Progress, cancel: threading.Event,
                  cache_dir: Path | None = None) -> Path:
    """The official checkpoint of ``variant`` in the download cache, fetching what is missing."""
    from engine.models import download as dl

    cache = Path(cache_dir) if cache_dir else dl.default_cache_dir()
    try:
        if hasattr(dl, "download"):  # the callback API: progress, cancel, plain offline message
            kwargs = {"progress": progress, "cancel": cancel}
            if "base_url" in inspect.signature(dl.download).parameters:
                kwargs["base_url"] = download_base_url()
            return dl.download(variant, cache, **kwargs)
        return dl.download_checkpoint(variant, base_url=download_base_url(), cache_dir=cache, progress=False,
                                      retries=1, timeout=20.0)
    except StudioError as exc:
        text = str(exc)
        if " 0 bytes kept" in text or "Could not reach" in text:
            raise StudioError(OFFLINE) from None
        raise


def download_and_install(models_dir: Path, variant: str, progress: Progress, cancel: threading.Event,
                         cache_dir: Path | None = None) -> ModelEntry:
    if not torch_available():
        raise StudioError(TORCH_MISSING)
    from engine.models.checkpoint import import_checkpoint
    from engine.models.download import OFFICIAL_CHECKPOINTS

    path = download_file(variant, progress, cancel, cache_dir)
    if cancel.is_set():
        raise StudioError("Cancelled; the part already downloaded is kept and Download resumes it.")
    official = OFFICIAL_CHECKPOINTS[variant]
    return import_checkpoint(
        path, "ade20k", name=f"ade20k-{variant}", models_dir=models_dir, expected_variant=variant,
        made_by=f"{MADE_BY_DIALOG}: download {variant} (official checkpoint, Google Drive id {official.file_id})",
        accuracy={"split": "ADE20K val (official, single scale)", "miou": official.miou / 100,
                  "measured_by": "hustvl/TopFormer README"},
        notes="official TopFormer ADE20K checkpoint (4x8 GPU run)")


def remove_model(models_dir: Path, name: str) -> str:
    registry = Registry(models_dir)
    entry = registry.get(name)
    if not is_user_added(entry):
        raise StudioError(f"{name} came with the app and cannot be removed here")
    registry.remove(name)
    return name
