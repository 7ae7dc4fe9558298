"""`main.py compare VIDEO --models A,B --scales full,half`: the same frames through every (model, scale).

Prints a table (and with ``--json`` one line ``{"rows": [...]}``): per pane the median inference
ms, the fps that gives, and agreement with the first pane (pixel % and mIoU %). ``--out`` writes
the labelled panes side by side into one video.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2

from . import add_models_dir
from ..errors import SourceError, StudioError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="video file every pane sees")
    parser.add_argument("--models", required=True,
                        help="comma-separated installed models (short forms like tiny work); an item "
                             "MODEL:SCALE keeps its own scale")
    parser.add_argument("--scales", default="full", help="comma-separated scales for every model (default: full)")
    parser.add_argument("--frames", type=int, default=0, metavar="N", help="compare the first N frames (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON line {\"rows\": [...]} instead of the table")
    parser.add_argument("--out", help="write the labelled panes side by side into this video (.mp4)")
    parser.add_argument("--opacity", type=float, default=0.5, help="mask opacity 0..1 in --out (default 0.5)")
    add_models_dir(parser)


def run(args: argparse.Namespace) -> int:
    from ..jobs.compare import PaneSet, cross_specs
    from ..models.registry import Registry
    from ..io.sources import VideoFileSource

    if args.frames < 0:
        raise StudioError(f"--frames must be 0 (all) or more, not {args.frames}")
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in VIDEO_SUFFIXES:
        raise StudioError(f"--out {out}: the side-by-side output must be a video file (.mp4)")
    specs = cross_specs(args.models, args.scales, Registry(args.models_dir))
    if out is not None:
        from ..fileio import check_output_target

        check_output_target(out, inputs=[args.video])  # refuse before minutes of work
    panes = PaneSet(specs, args.models_dir, strict=True, agreement_window=None, ms_window=100000)
    with VideoFileSource(args.video) as source:
        if out is not None:
            count = _run_with_video(source, panes, args.frames, out, args.opacity)
        else:
            count = _run_frames(source, panes, args.frames, None)
    if count == 0:
        raise SourceError(f"{args.video} has no frames")
    rows = report_rows(panes)
    if args.json:
        print(json.dumps({"rows": rows}), flush=True)
    else:
        print(format_table(rows, count, panes))
        if out is not None:
            print(f"wrote {out}")
    return 0


def _run_frames(source, panes, limit: int, on_frame) -> int:
    """Feed frames to every pane; the first frame also warms every session up (untimed)."""
    count = 0
    while (limit == 0 or count < limit) and (frame := source.read()) is not None:
        if count == 0:
            panes.warm_up(frame.image)
        results = panes.segment(frame.image)
        if on_frame is not None:
            on_frame(frame.image, results)
        count += 1
    return count


def _run_with_video(source, panes, limit: int, out: Path, opacity: float) -> int:
    from ..jobs.compare import failed_pane, label_pane, side_by_side
    from ..fileio import atomic_output
    from ..run.overlay import blend

    size = (source.width * len(panes.panes), source.height)
    with atomic_output(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), source.fps, size)
        if not writer.isOpened():
            raise StudioError(f"cannot write video {out}: no encoder for {size[0]}x{size[1]} {out.suffix}")

        def write(image, results) -> None:
            tiles = []
            for pane, result in zip(panes.panes, results):
                if result is None:
                    tiles.append(failed_pane(image.shape, pane.error))
                    continue
                tile = blend(image, result.labels, result.palette_bgr, opacity)
                tiles.append(label_pane(tile, [pane.spec.label, f"{result.inference_ms:.1f} ms"]))
            writer.write(side_by_side(tiles))

        try:
            count = _run_frames(source, panes, limit, write)
        finally:
            writer.release()
        if count and (not tmp.exists() or os.path.getsize(tmp) == 0):
            raise StudioError(f"cannot write video {out}: the encoder wrote nothing (disk full?)")
    return count


def report_rows(panes) -> list[dict]:
    """One row per pane, in the order given; the first pane is the reference."""
    import statistics

    rows = []
    for pane in panes.panes:
        ms = statistics.median(pane.all_ms) if pane.all_ms else 0.0
        rows.append({
            "model": pane.spec.model,
            "scale": pane.spec.scale,
            "ms_median": round(ms, 2),
            "fps": round(1000.0 / ms, 2) if ms > 0 else 0.0,
            # null when the pane cannot be compared (another dataset's classes)
            "agreement_pct": round(pane.agreement.agreement_pct, 2) if panes.comparable(pane) else None,
            "miou_vs_ref": round(pane.agreement.miou_pct, 2) if panes.comparable(pane) else None,
            "frames": pane.frames,
            "input_hw": list(pane.last.input_hw) if pane.last is not None else [0, 0],
        })
    return rows


def format_table(rows: list[dict], frames: int, panes) -> str:
    import statistics

    head = f"{'model':<16} {'scale':<6} {'input':>9} {'ms (median)':>11} {'fps':>7} {'agree %':>8} {'mIoU vs ref %':>14}"
    lines = [head, "-" * len(head)]
    for i, r in enumerate(rows):
        ref = "  (reference)" if i == 0 else ""
        size = f"{r['input_hw'][1]}x{r['input_hw'][0]}"
        agree = "n/a" if r["agreement_pct"] is None else f"{r['agreement_pct']:.2f}"
        miou = "n/a" if r["miou_vs_ref"] is None else f"{r['miou_vs_ref']:.2f}"
        lines.append(f"{r['model']:<16} {r['scale']:<6} {size:>9} {r['ms_median']:>11.1f} {r['fps']:>7.1f} "
                     f"{agree:>8} {miou:>14}{ref}")
    total = statistics.median(panes.all_frame_ms) if panes.all_frame_ms else 0.0
    lines.append(f"{frames} frames; all panes together: {total:.1f} ms per frame (median), "
                 f"sum of pane medians {sum(r['ms_median'] for r in rows):.1f} ms")
    return "\n".join(lines)
