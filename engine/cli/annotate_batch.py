"""``main.py annotate A.mp4 B.mp4 FOLDER 'glob*' --out DIR [--workers N | --ray [ADDRESS]]``.

Called by ``annotate_cmd`` when more than one video is named (or a folder, a glob, --workers or
--ray). One tqdm bar for the whole batch on stderr (frames, videos done, failures, ETA); the
engine only reports progress through a callback. Exit 0 when every video finished, 1 when any
failed (each failure is listed with its reason), 130 on Ctrl-C (continue with --resume), 2 for
bad settings (nothing started).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..jobs import batch as b
from . import run_resumable


def _executor(args: argparse.Namespace):
    if args.ray is not None:
        from ..jobs.batch_ray import RayExecutor

        return RayExecutor(address=args.ray or None, workers=args.workers, threads=args.threads)
    from ..jobs.batch_pool import LocalPool

    return LocalPool(workers=args.workers, threads=args.threads)


def run(args: argparse.Namespace) -> int:
    opts = b.BatchOptions(
        inputs=list(args.video), model=args.model, out=args.out, models_dir=args.models_dir, scale=args.scale,
        every=args.every, start=args.start, end=args.end, formats=args.formats, opacity=args.opacity,
        threads=args.threads, workers=args.workers, resume=args.resume, overwrite=args.overwrite,
        chunk_seconds=args.chunk_seconds, multiscale=args.multiscale)
    opts.check()
    executor = _executor(args)
    err = sys.stderr
    bar = None
    out = Path(args.out).resolve()
    header = [False]

    def progress(p: b.BatchProgress) -> None:
        nonlocal bar
        if not header[0]:  # after the plan is checked: a refused batch prints only its error line
            header[0] = True
            d = executor.describe()
            where = f"Ray cluster ({d.get('address')})" if d["kind"] == "ray" else "local pool"
            print(f"batch: {p.videos_total} videos ({p.videos_done} already done), {where}, {d['workers']} "
                  f"worker(s) x {d['threads_per_worker']} inference thread(s) -> {out}", file=err)
            for note in d.get("notes", []):
                print(f"note: {note}", file=err)
            if not args.no_progress:
                from tqdm import tqdm

                bar = tqdm(total=p.frames_total, initial=p.frames_done, unit="frame", desc="batch", file=err, dynamic_ncols=True,
                           smoothing=0.1, mininterval=0.5, disable=None)  # None: no bar unless stderr is a tty
        if bar is None:
            return
        if bar.total != p.frames_total:
            bar.total = p.frames_total
        bar.set_postfix_str(f"videos {p.videos_done}/{p.videos_total}, failed {p.videos_failed}", refresh=False)
        bar.update(p.frames_done - bar.n)

    def cleanup() -> None:
        if bar is not None:
            bar.close()
        close = getattr(executor, "close", None)
        if close is not None:
            close()

    state = run_resumable(lambda: b.run_batch(opts, executor, progress), "videos and frames", out, cleanup, err)
    if state is None:
        return 130

    p = state.progress()
    for entry in state.videos:
        if entry["status"] == "failed":
            print(f"failed: {entry['input']}: {entry.get('reason', 'unknown error')}", file=err)
    print(f"batch {state.data['status']}: {p.videos_done} of {p.videos_total} videos done, {p.videos_failed} failed, "
          f"{p.frames_done - p.frames_before} frames in {p.elapsed_s:.1f} s ({p.fps:.2f} frames/s) "
          f"-> {out / b.BATCH_FILE}", file=err)
    if args.json:
        print(json.dumps({"status": state.data["status"], **state.data.get("totals", {})}))
    return 1 if p.videos_failed else 0
