"""Static INT8 (QDQ) copies of installed models, for ARM boards and small CPUs.

Only the network is quantized: the nodes the exporter names ``/model/...`` except the
final classifier (``conv_seg``) and the pyramid pooling aggregation (``/ppa/``). The
exported graph also holds pre- and post-processing (normalisation, logit upsampling,
argmax); in INT8 those wreck the labels (50 to 61 % agreement with FP32 measured when
everything was quantized). ``conv_seg`` makes the logits whose small differences decide
the class at boundaries. ``/ppa/`` average-pools through cumulative sums whose range grows
with the image: in 8 bits the pooled tokens lose most of their precision (measured on the
1280x720 street clip: 95.9 % agreement at half scale and 83.8 % at full with it quantized,
98.6 % and 97.9 % without). The stem and first block of the token pyramid
(``/tpm/stem``, ``/tpm/layer1/``) see the normalised image itself: for the Tiny that starts
from ADE20K weights they cost 2.3 points of val agreement in INT8 (97.72 % with them
quantized, 99.03 % without, and the INT8 file is no slower: 0.76x FP32 either way). Nodes
are picked by name, not by position, so this keeps working when the post-processing moves
out of the graph.

Recipe: ``quant_pre_process`` (symbolic shape inference skipped: the graph's dynamic
shapes defeat it), then ``quantize_static`` in QDQ format, per-channel QInt8 weights,
QUInt8 activations, MinMax calibration on CamVid train frames resized to the size the
model will run at (calibrating at one size and running at a much larger one costs mIoU).
"""
from __future__ import annotations

import collections
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cpu import cpu_line, int8_kernels
from ..errors import StudioError
from ..models.registry import ModelEntry, Registry

NETWORK_PREFIX = "/model/"
KEEP_FLOAT = ("conv_seg", "/ppa/", "/tpm/stem", "/tpm/layer1/")  # see the module docstring
DEFAULT_SIZE = (352, 480)  # (h, w): CamVid frames at full scale, what `eval` measures
DEFAULT_FRAMES = 64
CHECK_IMAGES = 10
# ORT ops that compute in float when no DequantizeLinear feeds them (reported in notes).
_COMPUTE_OPS = {"Conv", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Softmax", "Resize", "HardSigmoid",
                "Relu", "Clip", "Sigmoid", "ReduceMean", "Pow", "Sqrt", "GlobalAveragePool", "AveragePool"}


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (h, w), both positive multiples of 32 (the network's stride)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise StudioError(f"size {text!r} is not WIDTHxHEIGHT (e.g. 480x352)") from None
    if w <= 0 or h <= 0 or w % 32 or h % 32:
        raise StudioError(f"size {text!r}: width and height must be positive multiples of 32")
    return h, w


def network_nodes(model, prefix: str = NETWORK_PREFIX, keep_float: tuple[str, ...] = KEEP_FLOAT) -> list[str]:
    """Names of the nodes to quantize: under ``prefix``, except those naming a keep_float part."""
    return [n.name for n in model.graph.node
            if n.name.startswith(prefix) and not any(k in n.name for k in keep_float)]


def calibration_frames(data: str | Path, count: int, split: str = "train") -> list[Path]:
    """``count`` images spread evenly over the split (sorted names: every drive is sampled)."""
    from ..models.datasets import list_samples

    samples = list_samples(data, split)
    if count < 1:
        raise StudioError("--frames must be at least 1")
    idx = np.linspace(0, len(samples) - 1, min(count, len(samples))).round().astype(int)
    return [samples[i].image for i in sorted(set(idx.tolist()))]


def safe_chunk(frames: int, wanted: int = 8) -> int:
    """CalibMaxIntermediateOutputs for ``frames``: ORT drops the collected outputs when
    their count reaches the limit exactly at the last frame, so the limit must not divide it."""
    for k in range(max(2, wanted), 1, -1):
        if frames % k:
            return k
    return frames + 1  # frames == 1 or 2 with tiny wanted: never reached


class _Reader:
    """CalibrationDataReader over image files, fed through the Segmenter's own input prep."""

    def __init__(self, seg, paths: list[Path], size: tuple[int, int]):
        from ..models.datasets import read_image_bgr

        self._items = iter(paths)
        self._seg, self._size, self._read = seg, size, read_image_bgr
        self._inputs = [i.name for i in seg.session.get_inputs()]

    def get_next(self) -> dict | None:
        path = next(self._items, None)
        if path is None:
            return None
        image = self._seg.prepare(self._read(path), self._size)
        feeds = {self._inputs[0]: image}  # the frame input, whatever the export calls it
        if "out_size" in self._inputs:
            feeds["out_size"] = np.asarray(self._size, dtype=np.int64)
        return feeds


@dataclass
class QuantReport:
    entry: ModelEntry
    quantized_nodes: int
    float_ops: dict  # op type -> count of compute nodes left in float


CALIBRATIONS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}  # ORT's methods


def quantize_onnx(seg, out_path: Path, frames: list[Path], size: tuple[int, int],
                  calibration: str = "minmax") -> tuple[int, dict]:
    """Write the INT8 model of ``seg``'s ONNX file to ``out_path``.

    Returns (number of nodes selected, {op type: count} of compute nodes left in float).
    """
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:  # onnx is in the train extra, not the run-time install
        raise StudioError(f"models quantize needs the onnx package ({exc.name} missing): "
                          "pip install -e '.[train]'") from None

    logging.getLogger("root").setLevel(logging.ERROR)  # ORT's quantizer logs every skipped node
    with tempfile.TemporaryDirectory(prefix="studio-quant.") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(seg.onnx_path), str(pre), skip_symbolic_shape=True)
        nodes = network_nodes(onnx.load(str(pre)))
        if not nodes:
            raise StudioError(f"{seg.onnx_path} has no nodes named {NETWORK_PREFIX}...: not a TopFormer Studio export")
        quantize_static(
            str(pre), str(out_path), _Reader(seg, frames, size),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                              "entropy": CalibrationMethod.Entropy}[calibration], nodes_to_quantize=nodes,
            extra_options={"CalibMaxIntermediateOutputs": safe_chunk(len(frames))},
        )
    return len(nodes), float_compute_ops(onnx.load(str(out_path)))


def float_compute_ops(model) -> dict:
    """{op type (part): count} of float compute nodes that stay in float: a node runs in INT8
    only when DequantizeLinear feeds all its float inputs and QuantizeLinear takes its output
    (or, for Conv/MatMul, its weights are dequantized). Int64 shape arithmetic is not counted."""
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.output)}
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    q_in = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    counts: collections.Counter = collections.Counter()
    for n in model.graph.node:
        if n.op_type not in _COMPUTE_OPS or types.get(n.output[0]) != onnx.TensorProto.FLOAT:
            continue
        float_inputs = [i for i in n.input[:2] if i and types.get(i, onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT]
        if n.op_type in ("Conv", "MatMul", "Gemm"):
            quantized = all(i in dq_out for i in n.input[:2])
        else:
            quantized = all(i in dq_out for i in float_inputs) and n.output[0] in q_in
        if not quantized:
            where = "network" if n.name.startswith(NETWORK_PREFIX) else "pre/post-processing"
            counts[f"{n.op_type} ({where})"] += 1
    return dict(sorted(counts.items()))


def compare(fp32, int8, data: str | Path, split: str = "val", limit: int | None = None) -> dict:
    """Val metrics of ``int8`` and its pixel agreement with ``fp32`` (both at scale full)."""
    from .evaluate import confusion_matrix, metrics_from_confusion
    from ..models.datasets import list_samples, read_image_bgr, read_label

    samples = list_samples(data, split)[:limit]
    n = int8.num_classes
    conf = np.zeros((n, n), np.int64)
    same = total = 0
    check = None
    for i, s in enumerate(samples):
        frame, label = read_image_bgr(s.image), read_label(s.label)
        a, b = fp32.segment(frame).labels, int8.segment(frame).labels
        same += int((a == b).sum())
        total += a.size
        conf += confusion_matrix(b, label, n)
        if i + 1 == CHECK_IMAGES:
            check = {**metrics_from_confusion(conf, list(int8.class_names)), "agreement_fp32": same / total}
    metrics = metrics_from_confusion(conf, list(int8.class_names))
    metrics.pop("pixels", None)
    metrics = {"miou": round(metrics["miou"], 6), "pixel_acc": round(metrics["pixel_acc"], 6),
               "per_class": {k: (None if v is None else round(v, 6)) for k, v in metrics["per_class"].items()}}
    out = {"split": split, "images": len(samples), "scale": "full", **metrics, "agreement_fp32": round(same / total, 6)}
    if check is not None:  # what CI re-measures (as for the trained models)
        # INT8 labels reproduce exactly only on the same integer kernels (engine/cpu.py), so the
        # kernel family is recorded; elsewhere CI checks the agreement with FP32 instead.
        out["check"] = {"images": CHECK_IMAGES, "miou": round(check["miou"], 6), "pixel_acc": round(check["pixel_acc"], 6),
                        "agreement_fp32": round(check["agreement_fp32"], 6), "int8_kernels": int8_kernels(),
                        "measured_by": f"python main.py eval --model {int8.name} --split val --limit {CHECK_IMAGES} --json"}
    return out


def speed_ratio(fp32, int8, size: tuple[int, int], repeat: int = 15) -> dict:
    """Median session time of both at ``size`` on one CamVid-like frame, interleaved so a
    busy machine slows both alike."""
    from .bench import median_ms, synthetic_frame

    frame = synthetic_frame(*size)
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(3):
        for key, seg in (("fp32", fp32), ("int8", int8)):
            times[key].append(median_ms(lambda s=seg: s.segment(frame), repeat=max(1, repeat // 3)))
    fp, q = float(np.median(times["fp32"])), float(np.median(times["int8"]))
    return {"size": f"{size[1]}x{size[0]}", "fp32_ms": round(fp, 2), "int8_ms": round(q, 2), "ratio": round(q / fp, 3)}


def _unseen_record(source: ModelEntry) -> dict | None:
    unseen = source.unseen_drive_miou
    if unseen is None:
        return None
    return {"miou": round(unseen[0], 6), "drive": unseen[1], "of": source.name, "estimate": unseen[2]}


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def quantize_model(name: str, models_dir: str | Path | None = None, size: tuple[int, int] = DEFAULT_SIZE,
                   data: str | Path = "../shared/datasets/camvid", frames: int = DEFAULT_FRAMES,
                   made_by: str = "", val_limit: int | None = None, progress=print,
                   calibration: str = "minmax") -> QuantReport:
    """Make, measure and register ``NAME-int8`` beside ``NAME`` in the models folder.

    The INT8 file is written and measured in a scratch folder first; the models folder
    only changes (atomically, through Registry.add) once everything has succeeded.
    """
    from ..run.segmenter import Segmenter

    registry = Registry(models_dir)
    fp32 = Segmenter.load(name, models_dir=registry.dir, cpu_only=True)
    if fp32.entry.name.endswith("-int8"):
        raise StudioError(f"{name} is already an INT8 model")
    paths = calibration_frames(data, frames)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="studio-int8.") as tmp:
        out = Path(tmp) / f"{name}-int8.onnx"
        progress(f"quantizing {name}: {len(paths)} calibration frames at {size[1]}x{size[0]}")
        if calibration not in CALIBRATIONS:
            raise StudioError(f"unknown calibration {calibration!r}; choose one of {', '.join(CALIBRATIONS)}")
        n_nodes, float_ops = quantize_onnx(fp32, out, paths, size, calibration)
        quant_s = time.perf_counter() - t0
        entry = ModelEntry(**{**fp32.entry.__dict__})
        entry.name = f"{name}-int8"
        entry.training = None
        entry.accuracy = None
        int8 = Segmenter(entry, out, cpu_only=True)
        progress(f"measuring {entry.name} against {name} on {data} val")
        acc = compare(fp32, int8, data, limit=val_limit)
        speed = speed_ratio(fp32, int8, size)
        fp_miou = (fp32.entry.accuracy or {}).get("miou")
        acc.update({
            "measured_by": "python main.py models quantize (val metrics at scale full, agreement = share of "
                           "val pixels whose INT8 label equals the FP32 label)",
            "fp32_miou": fp_miou,
            "miou_drop": None if fp_miou is None else round(fp_miou - acc["miou"], 6),
            "speed": {**speed, "cpu": cpu_line(), "measured_by": "median Segmenter.segment time, fp32 and int8 "
                                                                  "interleaved, one process, ORT CPU provider, this machine"},
        })
        entry.accuracy = acc
        entry.made_by = made_by or f"python main.py models quantize {name} --size {size[1]}x{size[0]}"
        kept = ", ".join(f"{k} x{v}" for k, v in float_ops.items())
        entry.notes = (
            f"static QDQ INT8 of {name} (onnxruntime quantize_static): {n_nodes} network nodes "
            f"({NETWORK_PREFIX}* except {', '.join(KEEP_FLOAT)}) selected, per-channel QInt8 weights, QUInt8 activations, "
            f"{CALIBRATIONS[calibration]} calibration on {len(paths)} CamVid train frames at {size[1]}x{size[0]}. Kept in float: the "
            "pre/post-processing (normalisation, logit upsampling, argmax: INT8 there wrecks the labels), "
            "conv_seg (its logits decide boundary labels), the pyramid pooling /ppa/ (cumulative sums: 8 bits "
            "lose the pooled values, 4 points of agreement on 1280x720 video), the stem and first pyramid block "
            "/tpm/stem, /tpm/layer1/ (they see the image itself: 1.3 points of agreement for the ADE20K-started Tiny) "
            "and ops ORT has no INT8 kernel "
            "for (HardSigmoid gates, small Resizes). "
            f"Float compute nodes left: {kept}."
        )
        entry.training = {"quantized_from": {  # how this file was derived (no training of its own)
            "model": name, "sha256": fp32.entry.sha256, "size": f"{size[1]}x{size[0]}",
            "calibration": {"method": CALIBRATIONS[calibration], "split": "train", "frames": len(paths)},
            "format": "QDQ", "weights": "QInt8 per-channel", "activations": "QUInt8",
            "nodes": f"{n_nodes} ({NETWORK_PREFIX}* except {', '.join(KEEP_FLOAT)})",
            "onnxruntime": _ort_version(), "seconds": round(quant_s, 1),
            # INT8 labels agree with the FP32's on 98-99 % of pixels, so the FP32's figure on a drive
            # it never saw is the best estimate (evaluating the copy on that drive would not do: the
            # FP32 source may have trained on it).
            "unseen_drive": _unseen_record(fp32.entry),
        }}
        try:
            registry.add(entry, out)
        except OSError as exc:
            raise StudioError(f"cannot install {entry.name} in {registry.dir}: {exc.strerror or exc}") from None
    return QuantReport(entry, n_nodes, float_ops)
