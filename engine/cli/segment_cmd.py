"""`main.py segment INPUT --model NAME --out OUT`: overlay of one image or a whole video."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2

from . import add_models_dir
from ..errors import SourceError, StudioError
from ..fileio import atomic_write_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="image or video file")
    parser.add_argument("--model", default="camvid-tiny", help="installed model name (default: camvid-tiny)")
    parser.add_argument("--scale", default="full", choices=["full", "half"], help="network input resolution")
    parser.add_argument("--out", required=True, help="output image (.png/.jpg) or video (.mp4)")
    parser.add_argument("--labels", help="images only: also write the class ids as a single-channel PNG")
    parser.add_argument("--opacity", type=float, default=0.5, help="mask opacity 0..1 (default 0.5)")
    add_models_dir(parser)


def run(args: argparse.Namespace) -> int:
    from ..overlay import blend
    from ..segmenter import Segmenter
    from ..sources import ImageSource, VideoFileSource, is_image_path

    src_path = Path(args.input)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise StudioError(f"output folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise StudioError(f"output folder {out.parent} is not writable")
    source = ImageSource(src_path) if is_image_path(src_path) else VideoFileSource(src_path)
    segmenter = Segmenter.load(args.model, args.models_dir)
    start = time.perf_counter()
    with source:
        if isinstance(source, ImageSource):
            if args.labels and Path(args.labels).suffix.lower() != ".png":
                raise StudioError("--labels must name a .png file")
            frame = source.read()
            labels = segmenter.segment(frame.image, args.scale).labels
            _write_image(out, blend(frame.image, labels, segmenter.palette_bgr, args.opacity))
            if args.labels:
                _write_image(Path(args.labels), labels)
            count = 1
        else:
            if args.labels:
                raise StudioError("--labels is only for images; use `main.py annotate` for the masks of a video")
            count = _segment_video(source, segmenter, out, args.scale, args.opacity, blend)
    elapsed = time.perf_counter() - start
    print(f"wrote {out} ({count} frame{'s' if count != 1 else ''}, {count / elapsed:.1f} frames/s, model {segmenter.name}, {args.scale})")
    return 0


def _write_image(path: Path, image) -> None:
    """Encode first, then write atomically: never a half-written file."""
    ok, data = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise StudioError(f"cannot encode an image as {path.suffix!r}; use .png or .jpg")
    atomic_write_bytes(path, data.tobytes())


def _segment_video(source, segmenter, out: Path, scale: str, opacity: float, blend) -> int:
    if out.suffix.lower() not in (".mp4", ".avi", ".mov", ".mkv"):
        raise StudioError("the output of a video must be a video file (.mp4)")
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), source.fps, (source.width, source.height))
    if not writer.isOpened():
        raise StudioError(f"cannot write video {out}")
    count = 0
    try:
        while (frame := source.read()) is not None:
            labels = segmenter.segment(frame.image, scale).labels
            writer.write(blend(frame.image, labels, segmenter.palette_bgr, opacity))
            count += 1
        writer.release()
        if count == 0:
            raise SourceError(f"{source.description} has no frames")
        os.replace(tmp, out)
    finally:
        writer.release()
        if tmp.exists():
            tmp.unlink()
    return count
