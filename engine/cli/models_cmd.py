"""`main.py models list|import|download|quantize|best-size`: what is installed, adding official
checkpoints, INT8 copies, and the input size a model is most accurate at."""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from . import add_models_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", help="show installed models")
    add_models_dir(p)
    p.add_argument("--json", action="store_true", help="print the manifest entries as JSON")

    p = sub.add_parser("import", help="install an official mmseg TopFormer checkpoint (.pth)")
    p.add_argument("checkpoint", help="path to the .pth file")
    p.add_argument("--dataset", help="the classes it predicts: ade20k, cityscapes or camvid (default: the one with the "
                                     "checkpoint's class count: 150, 19 or 11)")
    p.add_argument("--name", help="model name (default: DATASET-VARIANT)")
    add_models_dir(p)

    p = sub.add_parser("download", help="download and install an official ADE20K checkpoint")
    p.add_argument("variant", choices=["tiny", "small", "base"])
    p.add_argument("--name", help="model name (default: ade20k-VARIANT)")
    p.add_argument("--base-url", default=None,
                   help="download from this URL prefix instead of Google Drive (mirrors, tests; also $STUDIO_DOWNLOAD_URL)")
    p.add_argument("--cache-dir", default=None, help="where partial downloads are kept for resuming")
    p.add_argument("--sha256", default=None, metavar="HEX", help="the file's known sha256: refuse anything else")
    add_models_dir(p)

    p = sub.add_parser("best-size", help="measure at which input size NAME is most accurate; full/half never exceed it")
    p.add_argument("name", help="installed model")
    p.add_argument("--data", default="../shared/datasets/camvid", help="labelled CamVid-layout folder")
    p.add_argument("--split", default="val", help="split(s) measured (default val)")
    p.add_argument("--factors", default="1,1.5,2,2.67", help="input factors tried (default 1,1.5,2,2.67)")
    p.add_argument("--clear", action="store_true", help="remove the recorded best size instead")
    add_models_dir(p)

    p = sub.add_parser("quantize", help="make, measure and install a static INT8 copy NAME-int8 (for ARM boards)")
    p.add_argument("name", help="installed FP32 model to quantize")
    p.add_argument("--size", default="480x352", help="WxH the model will run at; calibration uses it (default 480x352)")
    p.add_argument("--data", default="../shared/datasets/camvid", help="CamVid-layout folder: train calibrates, val measures")
    p.add_argument("--frames", type=int, default=64, help="calibration frames, spread over train (default 64)")
    p.add_argument("--calibration", choices=["minmax", "percentile", "entropy"], default="minmax",
                   help="how activation ranges are chosen from the calibration frames (default minmax)")
    add_models_dir(p)


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "import": _import, "download": _download, "quantize": _quantize,
            "best-size": _best_size}[args.action](args)


def _best_size(args: argparse.Namespace) -> int:
    from ..errors import StudioError
    from ..jobs.evaluate import best_input_size
    from ..models.registry import Registry

    registry = Registry(args.models_dir)
    registry.get(args.name)  # a one-line error for an unknown name
    if args.clear:
        registry.update_input(args.name, best_long_side=None, best_measured=None)
        print(f"{args.name}: full and half follow the frame's size")
        return 0
    try:
        factors = [float(f) for f in args.factors.split(",")]
    except ValueError:
        raise StudioError(f"--factors: expected numbers like 1,1.5,2, not {args.factors!r}") from None
    found = best_input_size(args.name, args.data, args.split, factors, models_dir=args.models_dir)
    command = (f"python main.py models best-size {shlex.quote(args.name)} --split {shlex.quote(args.split)} "
               f"--factors {shlex.quote(args.factors)}")
    registry.update_input(args.name, best_long_side=found["best_long_side"],
                          best_measured={**found, "measured_by": command})
    scores = ", ".join(f"{k}: {100 * v:.2f}" for k, v in found["miou_by_factor"].items())
    print(f"{args.name}: mIoU by input factor ({args.split}) {scores}; full and half now stop at long side "
          f"{found['best_long_side']}")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from ..jobs.quantize import parse_size, quantize_model

    size = parse_size(args.size)
    made_by = f"python main.py models quantize {shlex.quote(args.name)} --size {size[1]}x{size[0]} --frames {args.frames}"
    if args.calibration != "minmax":
        made_by += f" --calibration {args.calibration}"
    report = quantize_model(args.name, models_dir=args.models_dir, size=size, data=args.data, frames=args.frames,
                            made_by=made_by, calibration=args.calibration)
    acc = report.entry.accuracy or {}
    speed = acc.get("speed", {})
    drop = acc.get("miou_drop")
    print(f"installed {report.entry.describe()}: agreement with FP32 {100 * acc['agreement_fp32']:.2f} %, "
          f"mIoU drop {'n/a' if drop is None else f'{100 * drop:.2f}'}, "
          f"speed {speed.get('int8_ms')} ms vs {speed.get('fp32_ms')} ms FP32 at {speed.get('size')} ({speed.get('ratio')}x)")
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..models.registry import Registry

    registry = Registry(args.models_dir)
    entries = registry.entries()
    if args.json:
        from dataclasses import asdict

        print(json.dumps([asdict(e) for e in entries], indent=1))
        return 0
    if not entries:
        print(f"no models installed in {registry.dir}")
        return 0
    print(f"{'name':<24} {'variant':<16} {'dataset':<11} {'classes':>7} {'accuracy':<24} {'size':<9} unseen drive")
    for e in entries:
        path = registry.onnx_path(e)
        size = f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "MISSING"
        acc = ""
        if e.accuracy and "miou" in e.accuracy:
            acc = f"{e.accuracy.get('split', '?')} mIoU {100 * e.accuracy['miou']:.1f}"
        unseen = e.unseen_drive_miou  # val flatters; this predicts footage the model never saw
        seen = "" if unseen is None else f"{unseen[1]} mIoU {100 * unseen[0]:.1f}" + (" (est.)" if unseen[2] else "")
        print(f"{e.name:<24} {e.variant:<16} {e.dataset:<11} {e.num_classes:>7} {acc:<24} {size:<9} {seen}".rstrip())
    return 0


def _import(args: argparse.Namespace) -> int:
    from ..models.checkpoint import import_checkpoint

    given = (["--dataset", args.dataset] if args.dataset else []) + (["--name", args.name] if args.name else [])
    made_by = "python main.py models import " + " ".join(shlex.quote(a) for a in [Path(args.checkpoint).name] + given)
    entry = import_checkpoint(Path(args.checkpoint), args.dataset, name=args.name, models_dir=args.models_dir, made_by=made_by)
    print(f"installed {entry.describe()} in {Path(args.models_dir) if args.models_dir else 'models/'}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from ..models.checkpoint import import_checkpoint
    from ..models.download import OFFICIAL_CHECKPOINTS, check_sha256_arg, download
    from ..models.registry import check_model_name

    official = OFFICIAL_CHECKPOINTS[args.variant]
    if args.name:
        check_model_name(args.name)  # refused before a byte is downloaded
    sha256 = check_sha256_arg(args.sha256) if args.sha256 else None
    bar = None

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm  # the terminal bar lives here only; the engine reports through callbacks

            bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=official.file_name, leave=False, disable=None)  # None: no bar when not a terminal
        bar.update(done - bar.n)

    try:
        path = download(args.variant, args.cache_dir, progress=progress, sha256=sha256, base_url=args.base_url)
    finally:
        if bar is not None:
            bar.close()
    entry = import_checkpoint(
        path, "ade20k", name=args.name or f"ade20k-{args.variant}", models_dir=args.models_dir, expected_variant=args.variant,
        made_by=f"python main.py models download {args.variant} (official checkpoint, Google Drive id {official.file_id})",
        accuracy={"split": "ADE20K val (official, single scale)", "miou": official.miou / 100, "measured_by": "hustvl/TopFormer README"},
        notes="official TopFormer ADE20K checkpoint (4x8 GPU run)",
    )
    print(f"installed {entry.describe()}")
    return 0
