"""Saving what the user sees: snapshots (three PNGs) and MP4 recordings of the overlay.

Qt-free so it runs on worker threads; every failure is a StudioError the window shows.
File names carry the time and the model so captures from one session never collide.
"""
from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from engine.errors import StudioError


def capture_stem(model: str, when: datetime | None = None) -> str:
    """``20250101-120000-123-<model>``: sortable, unique per millisecond, safe on every filesystem."""
    when = when or datetime.now()
    safe_model = re.sub(r"[^A-Za-z0-9._-]+", "_", model or "no-model")
    return f"{when:%Y%m%d-%H%M%S}-{when.microsecond // 1000:03d}-{safe_model}"


def ensure_writable_folder(folder: Path | str) -> Path:
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudioError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StudioError(f"output folder {folder} is not writable; choose another folder")
    return folder


def _imwrite(path: Path, image: np.ndarray) -> None:
    try:
        ok = cv2.imwrite(str(path), image)
    except cv2.error as exc:
        raise StudioError(f"cannot write {path}: {exc}") from None
    if not ok:
        raise StudioError(f"cannot write {path} (disk full or folder not writable?)")


def save_snapshot(folder: Path | str, model: str, frame_bgr: np.ndarray, labels: np.ndarray | None,
                  overlay_bgr: np.ndarray) -> list[Path]:
    """Write ``-overlay.png``, ``-frame.png`` and (with a model) ``-classes.png`` (class ids as gray levels)."""
    folder = ensure_writable_folder(folder)
    stem = capture_stem(model)
    paths = [folder / f"{stem}-overlay.png", folder / f"{stem}-frame.png"]
    _imwrite(paths[0], overlay_bgr)
    _imwrite(paths[1], frame_bgr)
    if labels is not None:
        paths.append(folder / f"{stem}-classes.png")
        _imwrite(paths[2], labels)
    return paths


class Recorder:
    """An MP4 of overlay frames at the source's frame rate.

    Frames skipped by the pipeline (dropped) are filled by repeating the last overlay, so the
    recording keeps real time. Used from the inference thread only.
    """

    MAX_REPEAT = 10

    def __init__(self, path: Path, fps: float):
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 25.0
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self._last_index: int | None = None
        self.started = time.monotonic()

    def write(self, overlay_bgr: np.ndarray, frame_index: int) -> None:
        h, w = overlay_bgr.shape[:2]
        if self._writer is None:
            self._open((w, h))
        if (w, h) != self._size:
            overlay_bgr = cv2.resize(overlay_bgr, self._size, interpolation=cv2.INTER_AREA)
        repeat = 1
        if self._last_index is not None and frame_index > self._last_index:
            repeat = min(frame_index - self._last_index, self.MAX_REPEAT)
        self._last_index = frame_index
        for _ in range(repeat):
            self._writer.write(overlay_bgr)
            self.frames += 1

    def _open(self, size: tuple[int, int]) -> None:
        ensure_writable_folder(self.path.parent)
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
        if not writer.isOpened():
            raise StudioError(f"cannot record to {self.path} (folder not writable or MP4 encoder missing)")
        self._writer, self._size = writer, size

    def close(self) -> Path | None:
        """Finish the file; returns its path, or None when no frame was written."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        return self.path
