"""`main.py bench [--json]`: the network alone vs the full pipeline vs peers, per model, size, scale, backend."""
from __future__ import annotations

import argparse
import json

from . import add_models_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_models_dir(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    parser.add_argument("--models", help="comma-separated model names (default: all installed)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds per measurement (median; one warm-up excluded)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive peer pipeline")
    parser.add_argument("--frame", help="image or video whose frames are used (resized to each size); default: synthetic")
    parser.add_argument("--sizes", default="1280x720,768x432", help="comma-separated frame sizes WxH (default 1280x720,768x432)")
    parser.add_argument("--scales", default="full,half", help="comma-separated scales (default full,half)")
    parser.add_argument("--backends", help="comma-separated backends to compare (default: onnxruntime, plus openvino when installed)")
    parser.add_argument("--precisions", default="f32",
                        help="OpenVINO precisions to add, e.g. f32,bf16 (rows show label agreement with ONNX Runtime f32)")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: STUDIO_THREADS or all cores)")


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    from ..errors import StudioError

    out = []
    for item in filter(None, text.split(",")):
        try:
            w, h = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise StudioError(f"--sizes wants WxH[,WxH...], e.g. 1280x720, not {item!r}") from None
        if w < 32 or h < 32:
            raise StudioError(f"--sizes: {item} is too small (at least 32x32)")
        out.append((h, w))
    return tuple(out)


def run(args: argparse.Namespace) -> int:
    from ..run.backends import BACKENDS, PRECISIONS
    from ..cpu import cpu_line
    from ..jobs.bench import as_dicts, default_backends, load_frames, run_bench
    from ..errors import StudioError
    from ..scales import parse_scale

    if args.repeat < 1:
        raise StudioError("--repeat must be at least 1")
    names = [n for n in (args.models or "").split(",") if n]
    chosen = getattr(args, "backend", None)
    backends = [b for b in (args.backends or "").split(",") if b] or (
        [chosen] if chosen and chosen != "auto" else default_backends())
    for b in backends:
        if b not in BACKENDS[:2]:
            raise StudioError(f"--backends: unknown backend {b!r} (onnxruntime, openvino)")
    precisions = [p for p in args.precisions.split(",") if p]
    for p in precisions:
        if p not in PRECISIONS:
            raise StudioError(f"--precisions: unknown precision {p!r} ({', '.join(PRECISIONS)})")
    scales = [s for s in args.scales.split(",") if s]
    for s in scales:
        parse_scale(s)
    sizes = _sizes(args.sizes)
    if names:  # a misspelt name fails before the table starts, saying what is installed
        from ..models.registry import Registry
        registry = Registry(args.models_dir)
        names = [registry.resolve(name).name for name in names]  # short forms: tiny
    cpu = cpu_line()
    if not args.json:
        print(cpu)
        print(f"{'model':<14} {'backend':<15} {'frame':>9} {'scale':>5} {'input':>9} {'net ms':>7} {'pipe ms':>7} "
              f"{'pipe/net':>8} {'cpu p/n':>7} {'blocky':>7} {'naive':>7} {'agree':>7} {'bound%':>6}", flush=True)

    def show(row) -> None:
        if args.json:
            return
        opt = lambda v, fmt: format(v, fmt) if v is not None else "-"  # noqa: E731
        backend = row.backend if row.precision == "f32" else f"{row.backend}/{row.precision}"
        print(f"{row.model:<14} {backend:<15} {row.frame:>9} {row.scale:>5} {row.input:>9} {row.network_ms:7.1f} "
              f"{row.pipeline_ms:7.1f} {row.ratio:8.3f} {row.cpu_ratio:7.3f} {opt(row.blocky_ms, '7.1f'):>7} {opt(row.naive_ms, '7.1f'):>7} "
              f"{opt(None if row.agreement is None else 100 * row.agreement, '6.2f'):>7} "
              f"{opt(None if row.boundary_share is None else 100 * row.boundary_share, '5.1f'):>6}", flush=True)

    content = load_frames(args.frame) if args.frame else None
    rows = run_bench(args.models_dir, names, args.repeat, with_naive=not args.no_naive, on_row=show, content=content,
                     backends=backends, precisions=precisions, frame_sizes=sizes, scales=scales, threads=args.threads)
    if not rows:
        raise StudioError("no models to benchmark (see `main.py models list`)")
    if args.json:
        print(json.dumps({"cpu": cpu, "backends": backends, "repeat": args.repeat, "frame": args.frame or "synthetic",
                          "rows": as_dicts(rows)}))
    else:
        print("net: the graph cut at conv_seg (resize + network); pipe: Segmenter.segment (frame in, full-quality "
              "class map at frame size out); blocky: argmax at 1/8 + nearest resize; naive: numpy float normalisation "
              "+ upsample of every logit plane + argmax; agree: % pixels equal to ONNX Runtime f32; bound%: pixels "
              "refined exactly (full-size outputs); cpu p/n: the same ratio in process CPU time (steadier when other "
              "work shares the cores). All medians of interleaved rounds in this one run.")
    return 0
