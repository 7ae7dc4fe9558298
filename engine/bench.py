"""Speed measurements: raw ``session.run`` vs the Segmenter vs a naive peer pipeline.

All numbers of one report come from one process on the same frames, so the ratios hold
even on a busy machine. The naive peer is what typical ONNX wrappers do: float
normalisation in numpy, a logits-output model, every logit plane upsampled, argmax.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from .registry import Registry
from .scales import SCALE_NAMES
from .segmenter import Segmenter

FRAME_SIZES = ((720, 1280), (480, 640))
SCALES = tuple(SCALE_NAMES)
MEAN_RGB = np.array([123.675, 116.28, 103.53], np.float32)
STD_RGB = np.array([58.395, 57.12, 57.375], np.float32)


@dataclass
class BenchRow:
    model: str
    variant: str
    frame: str  # "WxH"
    scale: str
    input: str  # network input "WxH"
    raw_ms: float  # session.run alone on a prepared input
    segmenter_ms: float  # frame in, class map at frame size out
    overhead_ratio: float  # segmenter / raw
    naive_ms: float | None  # peer pipeline, None when the onnx package is missing
    speedup_vs_naive: float | None  # naive / segmenter


def median_ms(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def synthetic_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic frame of large smooth regions, so class maps have a realistic
    share of boundaries (pass a real frame with ``--frame`` for your own content)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def load_frame(path: str | Path) -> np.ndarray:
    """First frame of an image or video file, for benchmarking on real content."""
    from .sources import open_source

    with open_source(str(path)) as source:
        return source.read().image


class NaivePipeline:
    """Float pre-processing in numpy + logits model + upsample of all planes + argmax."""

    def __init__(self, onnx_path: Path, workdir: Path, threads: int | None = None):
        import onnx.utils

        from .runtime import create_session

        model = onnx.load(str(onnx_path))
        first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
        argmax = next(n for n in model.graph.node if n.op_type == "ArgMax")
        path = workdir / "naive.onnx"
        onnx.utils.extract_model(str(onnx_path), str(path), [first_conv.input[0]], [argmax.input[0]])
        self.session = create_session(path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, frame_bgr: np.ndarray, in_hw: tuple[int, int]) -> np.ndarray:
        h, w = frame_bgr.shape[:2]
        x = cv2.resize(frame_bgr, (in_hw[1], in_hw[0]), interpolation=cv2.INTER_LINEAR)
        x = (x[:, :, ::-1].astype(np.float32) - MEAN_RGB) / STD_RGB
        logits = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None].copy()})[0][0]
        planes = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in logits])
        return planes.argmax(0).astype(np.uint8)


def bench_model(segmenter: Segmenter, repeat: int = 5, frame_sizes=FRAME_SIZES, scales=SCALES,
                naive: NaivePipeline | None = None, content: np.ndarray | None = None) -> list[BenchRow]:
    rows = []
    for height, width in frame_sizes:
        if content is None:
            frame = synthetic_frame(height, width)
        else:
            frame = cv2.resize(content, (width, height), interpolation=cv2.INTER_AREA)
        for scale in scales:
            in_hw = segmenter.input_size((height, width), scale)
            prepared = segmenter.prepare(frame, in_hw)
            out_hw = segmenter.output_size(in_hw, (height, width))
            raw = median_ms(lambda: segmenter.run(prepared, out_hw), repeat)
            e2e = median_ms(lambda: segmenter.segment(frame, scale), repeat)
            naive_ms = median_ms(lambda: naive(frame, in_hw), repeat) if naive else None
            rows.append(BenchRow(
                model=segmenter.name, variant=segmenter.entry.variant, frame=f"{width}x{height}", scale=scale,
                input=f"{in_hw[1]}x{in_hw[0]}", raw_ms=round(raw, 2), segmenter_ms=round(e2e, 2),
                overhead_ratio=round(e2e / raw, 3), naive_ms=None if naive_ms is None else round(naive_ms, 2),
                speedup_vs_naive=None if naive_ms is None else round(naive_ms / e2e, 2),
            ))
    return rows


def run_bench(models_dir: Path | None, names: list[str] | None = None, repeat: int = 5, with_naive: bool = True,
              on_row: Callable[[BenchRow], None] | None = None, content: np.ndarray | None = None) -> list[BenchRow]:
    registry = Registry(models_dir)
    entries = [e for e in registry.entries() if not names or e.name in names]
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="topformer-bench-") as tmp:
        for entry in entries:
            segmenter = Segmenter(entry, registry.verify(entry))
            naive = _naive_or_none(registry.onnx_path(entry), Path(tmp)) if with_naive else None
            for row in bench_model(segmenter, repeat, naive=naive, content=content):
                rows.append(row)
                if on_row:
                    on_row(row)
    return rows


def _naive_or_none(onnx_path: Path, workdir: Path) -> NaivePipeline | None:
    try:
        return NaivePipeline(onnx_path, workdir)
    except ImportError:
        return None  # the onnx package (train extra) builds the peer's logits model


def as_dicts(rows: list[BenchRow]) -> list[dict]:
    return [asdict(r) for r in rows]


# --------------------------------------------------------------------------------------------
# The engine's own speed on a job's frames (annotate --json: the pipeline's ratio to segment alone).
# Kept as its own section: the benchmarks above and these helpers change for different reasons.
# --------------------------------------------------------------------------------------------
def sample_frames(video: Path | str, indices: list[int], count: int) -> list[np.ndarray]:
    """Up to ``count`` of the selected frames, spread over the selection (decoded sequentially)."""
    from .sources import SelectedFrames

    if not indices:
        return []
    step = max(1, len(indices) // max(count, 1))
    frames = []
    with SelectedFrames(video, single_thread=False, seek_ahead=None) as reader:
        for index in sorted(set(indices[::step][:count])):
            image = reader.frame(index)
            if image is None:
                break
            frames.append(image)
    return frames


def segment_fps(segmenter: Segmenter, frames: list[np.ndarray], scale, min_seconds: float = 0.0) -> tuple[int, float]:
    """(calls, seconds) of ``Segmenter.segment`` alone over ``frames`` after one warm-up call;
    the frames are cycled until ``min_seconds`` have passed (short windows are noisy on a busy machine)."""
    if not frames:
        return 0, 0.0
    segmenter.segment(frames[0], scale)
    calls = 0
    t = time.perf_counter()
    while True:
        for frame in frames:
            segmenter.segment(frame, scale)
        calls += len(frames)
        seconds = time.perf_counter() - t
        if seconds >= min_seconds:
            return calls, seconds
