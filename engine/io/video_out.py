"""A checked video writer: the file is complete and readable at its path, or not there at all.

cv2.VideoWriter reports almost nothing: ``write`` returns no result and a full disk (ENOSPC,
or EFBIG under ``ulimit -f``) only truncates the file. So the writer here writes under a
temporary name (:mod:`engine.fileio`), checks ``isOpened``, watches the temporary file grow,
and on close reads the result back (frame count and first frame) before renaming it into place.
Used by ``segment``; ``annotate`` and the app's recorder can use it too.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from ..errors import StudioError
from ..fileio import check_output_target, os_reason, remove_quietly, temp_path_for

VIDEO_SUFFIXES = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


def fourcc_for(path: Path) -> str:
    """The codec used for an output suffix; an unknown suffix is one clear error."""
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise StudioError(f"cannot write video {path}: unknown video type {suffix or '(no suffix)'!r}; "
                          f"use one of {', '.join(sorted(VIDEO_SUFFIXES))}")
    return VIDEO_SUFFIXES[suffix]


class CheckedVideoWriter:
    """``with CheckedVideoWriter(out, fps, (w, h)) as w: w.write(frame)``; renamed into place on success.

    Any failure (cannot open, frame of the wrong size, file stopped growing, unreadable result)
    raises a one-line StudioError naming ``out``, and the temporary file is removed.
    """

    def __init__(self, path: Path | str, fps: float, size_wh: tuple[int, int], fourcc: str | None = None):
        self.path = check_output_target(path)
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.tmp = temp_path_for(self.path)
        self.frames = 0
        code = fourcc or fourcc_for(self.path)
        self._writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*code), self.fps, self.size_wh)
        if not self._writer.isOpened():
            self._writer.release()
            remove_quietly(self.tmp)
            raise StudioError(f"cannot write video {self.path}: the encoder could not open it (codec {code})")

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if (w, h) != self.size_wh:
            raise StudioError(f"cannot write video {self.path}: frame {w}x{h} differs from {self.size_wh[0]}x{self.size_wh[1]}")
        result = self._writer.write(frame)
        if result is False:  # newer OpenCV builds report it; older ones return None
            raise StudioError(f"cannot write video {self.path}: the encoder refused frame {self.frames}")
        self.frames += 1
        if self.frames % 50 == 0:
            self._check_growing()

    def _check_growing(self) -> None:
        """A full disk stops the file growing while the encoder carries on silently."""
        try:
            size = os.stat(self.tmp).st_size
        except OSError as exc:
            raise StudioError(f"cannot write video {self.path}: {os_reason(exc)}") from None
        if size == 0:
            raise StudioError(f"cannot write video {self.path}: nothing reached the disk (disk full or file size limit)")

    def close(self) -> Path:
        """Finish the file, read it back, and rename it over ``path``."""
        self._writer.release()
        if self.frames == 0:
            raise StudioError(f"cannot write video {self.path}: no frames were written")
        self._verify()
        check_output_target(self.path)
        try:
            os.replace(self.tmp, self.path)
        except OSError as exc:
            raise StudioError(f"cannot write video {self.path}: {os_reason(exc)}") from None
        return self.path

    def _verify(self) -> None:
        cap = cv2.VideoCapture(str(self.tmp))
        try:
            ok = cap.isOpened() and cap.read()[0]
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if ok else 0
        finally:
            cap.release()
        if not ok or count < self.frames - 1:
            reason = "disk full or file size limit reached" if ok or os.path.getsize(self.tmp) > 0 else "nothing reached the disk"
            raise StudioError(f"cannot write video {self.path}: the finished file is unreadable or short "
                              f"({count} of {self.frames} frames; {reason})")

    def abort(self) -> None:
        self._writer.release()
        remove_quietly(self.tmp)

    def __enter__(self) -> "CheckedVideoWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.close()
        except BaseException:
            self.abort()
            raise
