"""`main.py bench [--json]`: speed of every installed model, with ratios measured in one run."""
from __future__ import annotations

import argparse
import json

from . import add_models_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_models_dir(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--models", help="comma-separated model names (default: all installed)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median; one warm-up excluded)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive peer pipeline")
    parser.add_argument("--frame", help="image or video whose first frame is used (resized to each size); default: synthetic")


def run(args: argparse.Namespace) -> int:
    from ..bench import as_dicts, load_frame, run_bench
    from ..errors import StudioError
    from ..runtime import available_providers

    if args.repeat < 1:
        raise StudioError("--repeat must be at least 1")
    names = [n for n in (args.models or "").split(",") if n]
    if not args.json:
        print(f"{'model':<20} {'frame':>9} {'scale':>5} {'input':>9} {'raw ms':>8} {'seg ms':>8} {'seg/raw':>7} {'naive ms':>9} {'speed-up':>8}")

    def show(row) -> None:
        if args.json:
            return
        naive = f"{row.naive_ms:9.1f}" if row.naive_ms is not None else f"{'n/a':>9}"
        speed = f"{row.speedup_vs_naive:7.2f}x" if row.speedup_vs_naive is not None else f"{'n/a':>8}"
        print(f"{row.model:<20} {row.frame:>9} {row.scale:>5} {row.input:>9} {row.raw_ms:8.1f} {row.segmenter_ms:8.1f} "
              f"{row.overhead_ratio:7.3f} {naive} {speed}", flush=True)

    content = load_frame(args.frame) if args.frame else None
    rows = run_bench(args.models_dir, names, args.repeat, with_naive=not args.no_naive, on_row=show, content=content)
    if not rows:
        raise StudioError("no models to benchmark (see `main.py models list`)")
    if args.json:
        print(json.dumps({"providers": available_providers(), "repeat": args.repeat, "frame": args.frame or "synthetic",
                          "rows": as_dicts(rows)}))
    else:
        print("raw: session.run on a prepared input; seg: Segmenter.segment (frame in, class map at frame size out);"
              " naive: numpy float normalisation + logits model + upsample of every logit plane + argmax")
    return 0
