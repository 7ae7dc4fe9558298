"""``main.py annotate VIDEO --model NAME --out DIR``: masks, overlay video, stats and CVAT export.

A tqdm bar shows frames/s and the ETA on stderr. ``--json`` ends with one JSON line on stdout
with the frames/s of the whole pipeline and its ratio to ``Segmenter.segment`` alone on a sample
of the same frames, measured in the same run (half before the job, half after, to even out load).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

# FFmpeg's own log lines (codec probes, damaged packets) would break the one-line error
# contract on stderr; errors are reported by the job itself. Must be set before OpenCV opens
# its first video, which happens only inside run().
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from ..jobs import annotate as ann  # noqa: E402
from ..jobs.bench import sample_frames, segment_fps  # noqa: E402
from ..scales import factors_arg, scale_arg  # noqa: E402
from . import add_models_dir, run_resumable  # noqa: E402

SAMPLE_FRAMES = 24  # frames of the selection timed through Segmenter.segment for --json
SAMPLE_SECONDS = 2.0  # at least this long before the job and again after it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", nargs="+",
                        help="video file(s) to annotate; several files, folders or globs make a batch "
                             "(one output folder per video under --out, see docs/batch.md)")
    parser.add_argument("--model", required=True, help="installed model name (see: main.py models list)")
    add_models_dir(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--scale", type=scale_arg, default="full", help="network input: full, half, best (the model's best input size) or a factor (default full)")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="process every Nth frame (default 1)")
    parser.add_argument("--start", default=None, metavar="T", help="start time, seconds or [hh:]mm:ss")
    parser.add_argument("--end", default=None, metavar="T", help="end time (exclusive), seconds or [hh:]mm:ss")
    parser.add_argument("--formats", default=",".join(ann.FORMATS),
                        help=f"comma-separated outputs (default {','.join(ann.FORMATS)})")
    parser.add_argument("--multiscale", default=None, type=factors_arg, metavar="FACTORS",
                        help="average the class probabilities of several input factors, e.g. 1,2: better masks on "
                             "unseen footage, the network run once per factor (instead of --scale)")
    parser.add_argument("--opacity", type=float, default=0.5, help="mask opacity in overlay.mp4 (default 0.5)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue an interrupted job in DIR")
    group.add_argument("--overwrite", action="store_true", help="replace a previous job's outputs in DIR")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: all cores)")
    parser.add_argument("--json", action="store_true",
                        help="print a final JSON line with frames/s and the ratio to the engine's own segment speed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="batch: worker processes (local default 1; threads per worker = cores // N)")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="batch on Ray (pip install .[ray]): no ADDRESS starts a local cluster, "
                             "'auto' or HOST:PORT joins a running one")
    parser.add_argument("--chunk-seconds", type=float, default=None, metavar="S",
                        help="batch: split videos longer than S seconds into time ranges for several workers, "
                             "merged back into one folder per video (identical to a single run)")


def _scale_text(job: "ann.AnnotateJob") -> str:
    size = f"{job.input_hw[1]}x{job.input_hw[0]}"
    if job.multiscale:
        return f"multiscale {','.join(f'{f:g}' for f in job.multiscale)} (largest input {size})"
    return f"{job.scale} scale (input {size})"


def run(args: argparse.Namespace) -> int:
    from ..jobs import batch

    if (batch.is_batch_input(args.video) or args.workers is not None or args.ray is not None
            or args.chunk_seconds is not None):
        from . import annotate_batch

        return annotate_batch.run(args)
    options = ann.AnnotateOptions(
        video=args.video[0], model=args.model, out=args.out, models_dir=args.models_dir, scale=args.scale,
        every=args.every, start=args.start, end=args.end, formats=args.formats, opacity=args.opacity,
        resume=args.resume, overwrite=args.overwrite, threads=args.threads, multiscale=args.multiscale)
    job = ann.AnnotateJob(options).prepare()
    seg = job.segmenter
    total = len(job.indices)
    err = sys.stderr
    print(f"annotating {job.video.name} ({job.width}x{job.height}, {job.fps:g} fps): {total} frames "
          f"[{ann.frame_name(job.indices[0])}..{ann.frame_name(job.indices[-1])}] with {seg.name} "
          f"at {_scale_text(job)} -> {job.out}", file=err)

    # --json: Segmenter.segment alone on a sample of the same frames, half before the job and half
    # after it, so a change of machine load during the run affects both speeds alike
    sample = sample_frames(job.video, job.indices, SAMPLE_FRAMES) if args.json and not job.is_complete() else []
    first, second = sample[: len(sample) // 2], sample[len(sample) // 2:]
    baseline = [segment_fps(seg, first, job.scale, SAMPLE_SECONDS, job.multiscale)]

    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc="annotate", file=err, dynamic_ncols=True, smoothing=0.1,
                   mininterval=0.5, disable=None)  # disable=None: no bar when stderr is not a terminal

    def progress(p: ann.Progress) -> None:
        if bar is not None and p.done > bar.n:
            bar.update(p.done - bar.n)

    result = run_resumable(lambda: job.run(progress), "frames", job.out, lambda: bar is not None and bar.close(), err)
    if result is None:
        return 130

    if result.already_complete:
        print(f"{job.out} is already complete ({result.frames} frames); nothing to do", file=err)
    else:
        if result.codec:
            note = "" if result.codec == "avc1" else " (this OpenCV build cannot write H.264)"
            print(f"overlay codec: {result.codec} ({result.codec_name}){note}", file=err)
        resumed = result.summary["run"]["resumed_from_frame"]
        print(f"done: {result.frames} frames ({result.inferred} segmented"
              f"{f', {resumed} kept from before' if resumed else ''}) in {result.seconds:.1f} s, "
              f"{result.fps:.2f} frames/s -> {job.out}: {', '.join(result.files)}", file=err)

    if args.json:
        baseline.append(segment_fps(seg, second, job.scale, SAMPLE_SECONDS, job.multiscale))
        n = sum(b[0] for b in baseline)
        secs = sum(b[1] for b in baseline)
        seg_fps = n / secs if secs > 0 else 0.0
        fps = result.fps
        print(json.dumps({
            "frames": result.frames, "segmented": result.inferred, "seconds": round(result.seconds, 3),
            "fps": round(fps, 3), "segment_fps": round(seg_fps, 3), "segment_calls": n, "segment_sample_frames": len(sample),
            "ratio": round(fps / seg_fps, 3) if seg_fps > 0 and result.inferred else None,
            "model": seg.name, "scale": job.scale, "input_size": list(job.input_hw),
            "multiscale": list(job.multiscale) if job.multiscale else None,
            "codec": result.codec, "out": str(job.out), "already_complete": result.already_complete,
        }))
    return 0
