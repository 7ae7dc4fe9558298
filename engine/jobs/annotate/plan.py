"""What an annotate job does: the user's options, checked and resolved into a plan.

The plan holds everything the outputs depend on (the video and a hash of its bytes, the model's
checksum, the frames, scale, opacity), so ``settings()`` is the fingerprint a resume must match.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from ...errors import StudioError

FORMATS = ("masks", "overlay", "stats", "cvat")
DIGEST_BYTES = 1 << 20  # the video's first and last MiB identify its content for a resume


@dataclass
class AnnotateOptions:
    """What the user asked for (CLI flags, dialog fields); checked by ``AnnotateJob.prepare()``."""

    video: Path | str
    model: str
    out: Path | str
    models_dir: Path | str | None = None
    scale: str | float = "full"
    every: int = 1
    start: float | str | None = None  # seconds (or [hh:]mm:ss)
    end: float | str | None = None
    formats: tuple[str, ...] | str = FORMATS
    opacity: float = 0.5
    resume: bool = False
    overwrite: bool = False
    threads: int | None = None
    multiscale: str | tuple[float, ...] | None = None  # average these input factors (engine/run/multiscale.py)


@dataclass(frozen=True)
class VideoInfo:
    """The input video as the job sees it; ``digest`` changes when its bytes do."""

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    digest: str


@dataclass(frozen=True)
class JobPlan:
    """The resolved job: which frames, at which input size, with which model, into which outputs."""

    video: VideoInfo
    formats: tuple[str, ...]
    indices: list[int]
    scale: str | float
    every: int
    opacity: float
    model: str
    model_sha256: str
    input_hw: tuple[int, int]  # with multiscale: the largest input
    multiscale: tuple[float, ...] | None = None

    def settings(self) -> dict:
        """What the outputs depend on; a resume must match every key (formats may change: they are rebuilt)."""
        v = self.video
        multiscale = {"multiscale": list(self.multiscale)} if self.multiscale else {}  # absent: older jobs match
        return {
            "video": v.path.name,
            "video_size": [v.width, v.height],
            "video_frames": v.frame_count,
            "fps": v.fps,
            "video_digest": v.digest,
            "model": self.model,
            "sha256": self.model_sha256,
            "scale": self.scale,
            "input_size": list(self.input_hw),
            "every": self.every,
            "first_frame": self.indices[0],
            "last_frame": self.indices[-1],
            "opacity": self.opacity,
            **multiscale,
        }


def frame_name(index: int) -> str:
    """CVAT's name of a video frame: ``frame_`` + the source frame number, 6 digits."""
    return f"frame_{index:06d}"


def parse_time(value: str | float | int | None) -> float | None:
    """Seconds from ``12.5``, ``"12.5"``, ``"1:02.5"`` or ``"1:00:02"``; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        try:
            parts = [float(p) for p in str(value).strip().split(":")]
        except ValueError:
            raise StudioError(f"bad time {value!r}: use seconds (12.5) or [hh:]mm:ss") from None
        if not 1 <= len(parts) <= 3:
            raise StudioError(f"bad time {value!r}: use seconds (12.5) or [hh:]mm:ss")
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + part
    if not math.isfinite(seconds) or seconds < 0:
        raise StudioError(f"bad time {value!r}: must be a non-negative number of seconds")
    return seconds


def parse_formats(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The chosen outputs from ``"masks,stats"`` or a list, in FORMATS order; None means all."""
    if value is None:
        return FORMATS
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [i.strip().lower() for i in items if i and i.strip()]
    unknown = [i for i in items if i not in FORMATS]
    if unknown or not items:
        raise StudioError(f"unknown format {', '.join(unknown) or '(none)'}: choose from {','.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in items)


def parse_every(value: int | str) -> int:
    every = int(value)
    if every < 1:
        raise StudioError(f"--every must be 1 or more (got {value})")
    return every


def parse_opacity(value: float | str) -> float:
    """0..1; ``nan`` and anything outside are refused (they would blend nonsense into overlay.mp4)."""
    try:
        opacity = float(value)
    except (TypeError, ValueError):
        raise StudioError(f"opacity {value!r} is not a number (0..1)") from None
    if not 0.0 <= opacity <= 1.0:  # also refuses nan
        raise StudioError(f"opacity {value} is out of range (0..1)")
    return opacity


def select_frames(fps: float, frame_count: int, start: float | None, end: float | None, every: int) -> list[int]:
    """Source frame numbers from ``start`` (inclusive) to ``end`` (exclusive), every ``every``th."""
    first = int(round((start or 0.0) * fps))
    stop = frame_count if end is None else min(frame_count, int(round(end * fps)))
    if end is not None and start is not None and end <= start:
        raise StudioError(f"--end ({end:g} s) must be after --start ({start:g} s)")
    indices = list(range(first, stop, every))
    if not indices:
        raise StudioError(f"no frames selected: the video is {frame_count / fps:.2f} s long ({frame_count} frames)")
    return indices


def video_digest(path: Path | str) -> str:
    """sha256 of the size and the first and last MiB: a replaced or re-encoded video under the same
    name, size and frame count gets another digest, without reading a long video whole."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            h.update(str(size).encode() + b"\0")
            h.update(fh.read(DIGEST_BYTES))
            if size > DIGEST_BYTES:
                fh.seek(max(DIGEST_BYTES, size - DIGEST_BYTES))
                h.update(fh.read(DIGEST_BYTES))
    except OSError as exc:
        raise StudioError(f"cannot read {path}: {exc.strerror or exc}") from None
    return "sha256-ends:" + h.hexdigest()
