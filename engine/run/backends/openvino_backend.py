"""OpenVINO backend: the same ONNX file, compiled for each input size and cached in memory.

Static shapes: OpenVINO with a dynamic input runs about as fast as ONNX Runtime; compiled
for one (height, width) it is measured faster (see docs/architecture.md). Precision is
f32 unless asked: on CPUs with bf16 OpenVINO would otherwise silently run bf16, whose
labels differ from ONNX Runtime's on 0.1 to 1 % of pixels.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from ..runtime import default_threads

MAX_CACHED_SHAPES = 8


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None, precision: str = "f32"):
        import openvino as ov

        self.core = ov.Core()
        self.model = self.core.read_model(str(path))
        self.precision = precision
        threads = default_threads() if threads is None else threads
        self.config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = str(threads)
        self.input_names = [p.get_any_name() for p in self.model.inputs]
        self.output_rank = len(self.model.outputs[0].get_partial_shape())
        self.metadata = _metadata(self.model)
        self._compiled: dict[tuple, object] = {}  # input shapes -> InferRequest
        self._lock = threading.Lock()

    @property
    def providers(self) -> list[str]:
        return [f"OpenVINO CPU ({self.precision})"]

    def request(self, feeds: dict[str, np.ndarray]):
        """The infer request compiled for these input shapes (compiled once, then cached)."""
        key = tuple((k, v.shape) for k, v in feeds.items() if v.ndim == 4)
        req = self._compiled.get(key)
        if req is None:
            model = self.model.clone()
            model.reshape({k: list(v.shape) for k, v in feeds.items() if v.ndim == 4})
            req = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            if len(self._compiled) >= MAX_CACHED_SHAPES:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = req
        return req

    def run(self, feeds: dict[str, np.ndarray], cancel=None) -> np.ndarray:
        from ..segmenter import InferenceCancelled

        with self._lock:  # one infer request per shape: calls take turns
            req = self.request(feeds)
            if cancel is not None and cancel.cancelled:
                raise InferenceCancelled("inference cancelled")
            req.start_async(feeds)
            while not req.wait_for(50):
                if cancel is not None and cancel.cancelled:
                    req.cancel()
                    raise InferenceCancelled("inference cancelled")
            return np.array(req.get_output_tensor(0).data, copy=True)


def _metadata(model) -> dict[str, str]:
    """The ONNX metadata_props, which OpenVINO keeps under rt_info['framework']."""
    try:
        info = model.get_rt_info()
        if "framework" not in info.keys():
            return {}
        return {str(k): v.astype(str) for k, v in info["framework"].items()}
    except Exception:  # noqa: BLE001 - metadata is a check, not a requirement
        return {}
