"""`main.py eval`: mIoU, per-class IoU and pixel accuracy of an installed ONNX model.

The model runs through the app's own Segmenter (no torch), on the original-size labels
of a CamVid-layout folder, void (label >= number of classes) ignored.
"""
from __future__ import annotations

import argparse
import json

from . import add_models_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="installed model name (see: main.py models list)")
    parser.add_argument("--data", default="../shared/datasets/camvid", help="CamVid-layout folder (default ../shared/datasets/camvid)")
    parser.add_argument("--split", default="val", help="split folder name (default val)")
    parser.add_argument("--scale", default="full", help="full | half | a factor (default full)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (sorted by name)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_models_dir(parser)


def run(args: argparse.Namespace) -> int:
    from ..evaluate import evaluate_model, format_report

    scale: str | float = args.scale
    if scale not in ("full", "half"):
        try:
            scale = float(scale)
        except ValueError:
            scale = args.scale  # the Segmenter rejects it with a clear message
    res = evaluate_model(args.model, args.data, args.split, models_dir=args.models_dir, limit=args.limit,
                         scale=scale, progress=not args.json)
    print(json.dumps(res.to_json(), indent=1) if args.json else format_report(res))
    return 0
