"""Speed measurements behind ``main.py bench``: the network alone vs the full pipeline vs peers.

For each model, frame size and scale, interleaved in one process on the same frames
(so ratios hold on a busy machine), medians after a warm-up:

- ``network``: the model's graph cut at its last ``conv_seg`` Conv (what any TopFormer
  runtime must pay), fed the resized uint8 frame;
- ``pipeline``: ``Segmenter.segment`` (frame in, full-quality class map at frame size out);
- ``blocky``: the public ONNX demos' shortcut (argmax at 1/8 resolution, nearest resize);
- ``naive``: float normalisation in numpy, every logit plane upsampled, argmax.

With OpenVINO installed, each row is measured for both backends side by side; reduced
precisions (``--precision bf16``) add rows with their label agreement to ONNX Runtime f32.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..run import postprocess
from ..run.backends import create_backend, openvino_available
from ..models.registry import Registry
from ..scales import SCALE_NAMES
from ..run.segmenter import Segmenter

FRAME_SIZES = ((720, 1280), (432, 768))
SCALES = tuple(SCALE_NAMES)
MEAN_RGB = np.array([123.675, 116.28, 103.53], np.float32)
STD_RGB = np.array([58.395, 57.12, 57.375], np.float32)


@dataclass
class BenchRow:
    model: str
    variant: str
    backend: str  # onnxruntime | openvino
    precision: str  # f32 unless asked
    frame: str  # "WxH"
    scale: str
    input: str  # network input "WxH"
    network_ms: float  # resize + the graph cut at conv_seg
    pipeline_ms: float  # Segmenter.segment: frame in, full-quality class map at frame size out
    ratio: float  # pipeline / network
    blocky_ms: float | None  # network + argmax at 1/8 + nearest resize (demo shortcut)
    naive_ms: float | None  # numpy float normalisation + float graph + upsample of every plane + argmax
    speedup_vs_naive: float | None  # naive / pipeline
    network_cpu_ms: float = 0.0  # the same, as process CPU time (all threads): steadier on a busy machine
    pipeline_cpu_ms: float = 0.0
    cpu_ratio: float = 0.0  # pipeline_cpu / network_cpu
    agreement: float | None = None  # share of pixels equal to ONNX Runtime f32's labels (other rows)
    boundary_share: float | None = None  # share of output pixels refined exactly (full-size outputs)
    samples: int = 0


def median_ms(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def interleaved_ms(fns: dict[str, Callable[[int], object]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median wall ms of each ``fns[k](round)``, run in turns (order alternating per round)."""
    return interleaved_times(fns, rounds, warmup)[0]


def interleaved_times(fns: dict[str, Callable[[int], object]], rounds: int,
                      warmup: int = 1) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall ms and median process CPU ms (all threads) of each ``fns[k](round)``, in turns.

    CPU time is the steadier figure on a machine shared with other work: waiting for a
    core does not count, only work done.
    """
    keys = list(fns)
    for r in range(warmup):
        for k in keys:
            fns[k](r)
    wall: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            start, start_cpu = time.perf_counter(), time.process_time()
            fns[k](r)
            wall[k].append((time.perf_counter() - start) * 1000.0)
            cpu[k].append((time.process_time() - start_cpu) * 1000.0)
    return ({k: statistics.median(v) for k, v in wall.items()}, {k: statistics.median(v) for k, v in cpu.items()})


def synthetic_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic frame of large smooth regions, so class maps have a realistic
    share of boundaries (pass real frames with ``--frame`` for your own content)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def load_frame(path: str | Path) -> np.ndarray:
    """First frame of an image or video file, for benchmarking on real content."""
    return load_frames(path, 1)[0]


def load_frames(path: str | Path, count: int = 8) -> list[np.ndarray]:
    """Up to ``count`` frames (every 5th) of a video, or the image itself."""
    from ..errors import StudioError
    from ..io.sources import open_source

    frames = []
    with open_source(str(path)) as source:
        index = 0
        while len(frames) < count:
            frame = source.read()
            if frame is None:
                break
            if index % 5 == 0:
                frames.append(frame.image)
            index += 1
    if not frames:
        raise StudioError(f"{path}: no frame could be read")
    return frames


class Network:
    """The model's graph cut at conv_seg, on one backend: uint8 frame -> logits."""

    def __init__(self, onnx_path: Path, workdir: Path, backend: str, precision: str = "f32", threads: int | None = None,
                 legacy: bool = False):
        path = onnx_path  # a logits-v2 file already ends at conv_seg
        if legacy:  # an older file with post-processing in the graph: cut it (needs the onnx package)
            import onnx

            from ..models.graph import cut_to_logits

            path = workdir / f"network-{onnx_path.stem}.onnx"
            if not path.exists():
                onnx.save(cut_to_logits(onnx.load(str(onnx_path))), str(path))
        self.backend = create_backend(path, backend, threads=threads, precision=precision)

    def __call__(self, frame_bgr: np.ndarray, in_hw: tuple[int, int]) -> np.ndarray:
        x = cv2.resize(frame_bgr, (in_hw[1], in_hw[0]), interpolation=cv2.INTER_LINEAR)
        return self.backend.run({"image": np.ascontiguousarray(x)[None]})[0]


class NaivePipeline:
    """Float pre-processing in numpy + logits model + upsample of all planes + argmax."""

    def __init__(self, onnx_path: Path, workdir: Path, threads: int | None = None):
        import onnx.utils

        from ..models.graph import conv_seg_output
        from ..run.runtime import create_session

        model = onnx.load(str(onnx_path))
        first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
        path = workdir / f"naive-{onnx_path.stem}.onnx"
        onnx.utils.extract_model(str(onnx_path), str(path), [first_conv.input[0]], [conv_seg_output(model)])
        self.session = create_session(path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, frame_bgr: np.ndarray, in_hw: tuple[int, int]) -> np.ndarray:
        h, w = frame_bgr.shape[:2]
        x = cv2.resize(frame_bgr, (in_hw[1], in_hw[0]), interpolation=cv2.INTER_LINEAR)
        x = (x[:, :, ::-1].astype(np.float32) - MEAN_RGB) / STD_RGB
        logits = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None].copy()})[0][0]
        planes = np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR) for p in logits])
        return planes.argmax(0).astype(np.uint8)


@dataclass
class Contender:
    """One (backend, precision) pair measured for a model."""

    backend: str
    precision: str
    segmenter: Segmenter
    network: Network
    keys: list[str] = field(default_factory=list)


def bench_model(entry, onnx_path: Path, workdir: Path, repeat: int = 5, frame_sizes=FRAME_SIZES, scales=SCALES,
                backends: list[str] | None = None, precisions: list[str] | None = None, with_naive: bool = True,
                content: list[np.ndarray] | None = None, threads: int | None = None) -> list[BenchRow]:
    """Rows for one model: every (frame size, scale), each backend (and precision) side by side."""
    backends = backends or default_backends()
    extra = [p for p in (precisions or []) if p != "f32"]
    contenders = []
    for backend in backends:
        for precision in ["f32"] + (extra if backend == "openvino" else []):
            seg = Segmenter(entry, onnx_path, threads=threads, backend=backend, precision=precision)
            contenders.append(Contender(backend, precision, seg,
                                        Network(onnx_path, workdir, backend, precision, threads, seg.legacy)))
    naive = _naive_or_none(onnx_path, workdir, threads) if with_naive else None
    rows = []
    for height, width in frame_sizes:
        frames = [synthetic_frame(height, width)] if not content else [
            cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in content]
        for scale in scales:
            rows.extend(_bench_case(contenders, naive, frames, scale, repeat))
    return rows


def _bench_case(contenders: list[Contender], naive, frames: list[np.ndarray], scale: str, repeat: int) -> list[BenchRow]:
    first = contenders[0]
    height, width = frames[0].shape[:2]
    in_hw = first.segmenter.input_size((height, width), scale)
    pick = lambda r: frames[r % len(frames)]  # noqa: E731
    fns: dict[str, Callable[[int], object]] = {}
    for c in contenders:
        tag = f"{c.backend}/{c.precision}"
        fns[f"{tag}/network"] = lambda r, c=c: c.network(pick(r), in_hw)
        fns[f"{tag}/pipeline"] = lambda r, c=c: c.segmenter.segment(pick(r), scale)
    fns["blocky"] = lambda r: postprocess.blocky_labels(first.network(pick(r), in_hw), (height, width))
    if naive is not None:
        fns["naive"] = lambda r: naive(pick(r), in_hw)
    med, cpu = interleaved_times(fns, repeat)
    reference = [first.segmenter.segment(f, scale).labels for f in frames]
    out_hw = first.segmenter.output_size(in_hw, (height, width))
    boundary = None
    if out_hw == (height, width):
        logits = first.network(frames[0], in_hw)
        coarse = postprocess.coarse_labels(logits)
        ay, ax = postprocess.axis(height, logits.shape[1]), postprocess.axis(width, logits.shape[2])
        scratch = postprocess.nearest_cells(coarse, ay, ax)
        boundary = postprocess.refine_boundaries(scratch, logits, postprocess.uniform_cells(coarse), ay, ax) / (height * width)
    rows = []
    for c in contenders:
        tag = f"{c.backend}/{c.precision}"
        agree = None
        if c is not first:
            same = sum(int((c.segmenter.segment(f, scale).labels == ref).sum()) for f, ref in zip(frames, reference))
            agree = round(same / (len(frames) * height * width), 5)
        net, pipe = med[f"{tag}/network"], med[f"{tag}/pipeline"]
        rows.append(BenchRow(
            model=c.segmenter.name, variant=c.segmenter.entry.variant, backend=c.backend, precision=c.precision,
            frame=f"{width}x{height}", scale=scale, input=f"{in_hw[1]}x{in_hw[0]}", network_ms=round(net, 2),
            pipeline_ms=round(pipe, 2), ratio=round(pipe / net, 3),
            network_cpu_ms=round(cpu[f"{tag}/network"], 2), pipeline_cpu_ms=round(cpu[f"{tag}/pipeline"], 2),
            cpu_ratio=round(cpu[f"{tag}/pipeline"] / max(cpu[f"{tag}/network"], 1e-6), 3),
            blocky_ms=round(med["blocky"], 2) if c is first else None,
            naive_ms=round(med["naive"], 2) if naive is not None and c is first else None,
            speedup_vs_naive=round(med["naive"] / pipe, 2) if naive is not None else None,
            agreement=agree, boundary_share=None if boundary is None else round(boundary, 4), samples=repeat))
    return rows


def default_backends() -> list[str]:
    return ["onnxruntime", "openvino"] if openvino_available() else ["onnxruntime"]


def run_bench(models_dir: Path | None, names: list[str] | None = None, repeat: int = 5, with_naive: bool = True,
              on_row: Callable[[BenchRow], None] | None = None, content: list[np.ndarray] | np.ndarray | None = None,
              backends: list[str] | None = None, precisions: list[str] | None = None, frame_sizes=FRAME_SIZES,
              scales=SCALES, threads: int | None = None) -> list[BenchRow]:
    registry = Registry(models_dir)
    entries = [e for e in registry.entries() if not names or e.name in names]
    if isinstance(content, np.ndarray):
        content = [content]
    rows: list[BenchRow] = []
    with tempfile.TemporaryDirectory(prefix="topformer-bench-") as tmp:
        for entry in entries:
            for row in bench_model(entry, registry.verify(entry), Path(tmp), repeat, frame_sizes, scales, backends,
                                   precisions, with_naive, content, threads):
                rows.append(row)
                if on_row:
                    on_row(row)
    return rows


def _naive_or_none(onnx_path: Path, workdir: Path, threads: int | None = None) -> NaivePipeline | None:
    try:
        return NaivePipeline(onnx_path, workdir, threads)
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
    from ..io.sources import SelectedFrames

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


def segment_fps(segmenter: Segmenter, frames: list[np.ndarray], scale, min_seconds: float = 0.0,
                multiscale: tuple[float, ...] | None = None) -> tuple[int, float]:
    """(calls, seconds) of ``Segmenter.segment`` alone (``segment_multiscale`` with ``multiscale``)
    over ``frames`` after one warm-up call; the frames are cycled until ``min_seconds`` have
    passed (short windows are noisy on a busy machine)."""
    if not frames:
        return 0, 0.0
    from ..run.multiscale import segment_frame

    segment_frame(segmenter, frames[0], scale, multiscale)
    calls = 0
    t = time.perf_counter()
    while True:
        for frame in frames:
            segment_frame(segmenter, frame, scale, multiscale)
        calls += len(frames)
        seconds = time.perf_counter() - t
        if seconds >= min_seconds:
            return calls, seconds
