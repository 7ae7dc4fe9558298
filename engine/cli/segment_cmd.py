"""`main.py segment INPUT --model NAME --out OUT`: overlay of one image or a whole video.

Every output is checked before any work (type by suffix, a regular file or absent, folder
writable) and written atomically, so a failure leaves nothing at OUT (or the old file intact).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2

from . import add_models_dir
from ..errors import SourceError, StudioError
from ..fileio import atomic_write_bytes, check_output_target
from ..scales import factors_arg, multiscale_factors, scale_arg
from ..io.video_out import VIDEO_SUFFIXES, CheckedVideoWriter

IMAGE_OUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def opacity_arg(text: str) -> float:
    """argparse ``type=`` for ``--opacity``: a number from 0 to 1 (``nan`` and 5 are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"opacity {text!r} is not a number; use 0..1") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"opacity {text} is outside 0..1")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="image or video file")
    parser.add_argument("--model", default="camvid-tiny", help="installed model name (default: camvid-tiny)")
    parser.add_argument("--scale", default="full", type=scale_arg, help="network input resolution: full, half, best (the model's best input size) or a factor")
    parser.add_argument("--multiscale", default=None, type=factors_arg, metavar="FACTORS",
                        help="average the class probabilities of several input factors, e.g. 1,2 (instead of --scale)")
    parser.add_argument("--out", required=True, help="output image (.png/.jpg) or video (.mp4)")
    parser.add_argument("--labels", help="images only: also write the class ids as a single-channel PNG")
    parser.add_argument("--opacity", type=opacity_arg, default=0.5, help="mask opacity 0..1 (default 0.5)")
    add_models_dir(parser)


def _check_outputs(out: Path, labels: Path | None, is_image: bool, source: Path) -> None:
    suffix = out.suffix.lower()
    if is_image and suffix not in IMAGE_OUT_SUFFIXES:
        raise StudioError(f"cannot write {out}: the output of an image must be an image "
                          f"({', '.join(sorted(IMAGE_OUT_SUFFIXES))})")
    if not is_image and suffix not in VIDEO_SUFFIXES:
        raise StudioError(f"cannot write {out}: the output of a video must be a video ({', '.join(sorted(VIDEO_SUFFIXES))})")
    check_output_target(out, inputs=[source])
    if labels is not None:
        if not is_image:
            raise StudioError("--labels is only for images; use `main.py annotate` for the masks of a video")
        if labels.suffix.lower() != ".png":
            raise StudioError(f"cannot write {labels}: --labels must name a .png file")
        check_output_target(labels, inputs=[source])
        if labels.resolve() == out.resolve():
            raise StudioError(f"--labels and --out both name {out}")


def run(args: argparse.Namespace) -> int:
    from ..run.overlay import blend
    from ..run.segmenter import Segmenter
    from ..io.sources import ImageSource, VideoFileSource, is_image_path, refuse_stream

    refuse_stream(args.input)
    src_path = Path(args.input)
    out = Path(args.out)
    labels_path = Path(args.labels) if args.labels else None
    image_input = is_image_path(src_path)
    source = ImageSource(src_path) if image_input else VideoFileSource(src_path)
    segmenter = Segmenter.load(args.model, args.models_dir)
    _check_outputs(out, labels_path, image_input, src_path)
    segment = _labels_function(segmenter, args)
    start = time.perf_counter()
    with source:
        if isinstance(source, ImageSource):
            frame = source.read()
            labels = segment(frame.image)
            overlay_data = _encode(out, blend(frame.image, labels, segmenter.palette_bgr, args.opacity))
            labels_data = _encode(labels_path, labels) if labels_path else None
            atomic_write_bytes(out, overlay_data)
            if labels_path is not None:
                atomic_write_bytes(labels_path, labels_data)
            count = 1
        else:
            count = _segment_video(source, segmenter, segment, out, args.opacity, blend)
    elapsed = time.perf_counter() - start
    scale_text = f"multiscale {args.multiscale}" if args.multiscale else args.scale
    print(f"wrote {out} ({count} frame{'s' if count != 1 else ''}, {count / elapsed:.1f} frames/s, model {segmenter.name}, {scale_text})")
    return 0


def _encode(path: Path, image) -> bytes:
    """Encode in memory first: a failed encoder never leaves a file."""
    try:
        ok, data = cv2.imencode(path.suffix.lower(), image)
    except cv2.error:
        ok = False
    if not ok:
        raise StudioError(f"cannot write {path}: OpenCV cannot encode a {path.suffix} image")
    return data.tobytes()


def _labels_function(segmenter, args: argparse.Namespace):
    """frame -> class map: one input at ``--scale``, or the averaged inputs of ``--multiscale``."""
    from ..run.multiscale import segment_frame

    factors = multiscale_factors(args.multiscale, args.scale)
    return lambda image: segment_frame(segmenter, image, args.scale, factors).labels


def _segment_video(source, segmenter, segment, out: Path, opacity: float, blend) -> int:
    """Every frame through the model into a checked writer; a short decode writes nothing."""
    with CheckedVideoWriter(out, source.fps, (source.width, source.height)) as writer:
        while (frame := source.read()) is not None:  # raises SourceError "decoded N of M frames"
            labels = segment(frame.image)
            writer.write(blend(frame.image, labels, segmenter.palette_bgr, opacity))
        if writer.frames == 0:
            raise SourceError(f"{source.description} has no frames")
    return writer.frames
