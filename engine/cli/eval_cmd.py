"""`main.py eval`: mIoU, per-class IoU and pixel accuracy of an installed ONNX model.

The model runs through the app's own Segmenter (no torch), on the original-size labels
of a CamVid-layout folder, void (label >= number of classes) ignored. The figures are
given over all frames and per drive (frame-name prefix): the drives a model never saw in
training are the ones that predict accuracy on new footage.
"""
from __future__ import annotations

import argparse
import json
import sys

from . import add_models_dir
from ..scales import factors_arg, scale_arg
from ..paths import DEFAULT_CAMVID


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="installed model name (see: main.py models list)")
    parser.add_argument("--data", default=DEFAULT_CAMVID, help=f"CamVid-layout folder (default {DEFAULT_CAMVID})")
    parser.add_argument("--split", default="val", help="split folder name, or several: train,val (default val)")
    parser.add_argument("--drive", action="append", default=None, metavar="DRIVE",
                        help="only frames of this drive (name prefix, e.g. 0006R0); repeatable")
    parser.add_argument("--scale", default="full", type=scale_arg, help="full | half | best (the model's best input size) | a factor (default full)")
    parser.add_argument("--multiscale", default=None, type=factors_arg, metavar="FACTORS",
                        help="average the class probabilities of several input factors, e.g. 1,2 (instead of --scale)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (with per_drive)")
    add_models_dir(parser)


def run(args: argparse.Namespace) -> int:
    from ..jobs.evaluate import evaluate_model, format_report

    from ..scales import is_named, multiscale_factors, parse_scale

    scale = args.scale if is_named(args.scale) else parse_scale(args.scale)
    multiscale = multiscale_factors(args.multiscale, args.scale)
    drives = [d for text in args.drive for d in text.split(",") if d] if args.drive else None
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm
            bar = tqdm(total=total, desc=f"eval {args.model}", unit="img", file=sys.stderr)
        bar.update(done - bar.n)

    try:
        res = evaluate_model(args.model, args.data, args.split, models_dir=args.models_dir, limit=args.limit,
                             scale=scale, drives=drives, on_progress=None if args.json else progress,
                             multiscale=multiscale)
    finally:
        if bar is not None:
            bar.close()
    print(json.dumps(res.to_json(), indent=1) if args.json else format_report(res))
    return 0
