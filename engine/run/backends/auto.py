"""``auto``: OpenVINO when installed and measured faster here, at first use of each input size."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from .openvino_backend import OpenVinoBackend
from .ort_backend import OrtBackend

TRIALS = 3


class AutoBackend:
    name = "auto"

    def __init__(self, path: Path, threads: int | None = None, cpu_only: bool = False, precision: str = "f32"):
        self.ort = OrtBackend(path, threads=threads, cpu_only=cpu_only)
        self.ov = OpenVinoBackend(path, threads=threads, precision=precision)
        self.precision = precision
        self.input_names, self.output_rank, self.metadata = self.ort.input_names, self.ort.output_rank, self.ort.metadata
        self.choice: dict[tuple, object] = {}  # input shapes -> the faster backend
        self.timings: dict[tuple, dict[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def providers(self) -> list[str]:
        chosen = {b.name for b in self.choice.values()}
        return [f"auto: {', '.join(sorted(chosen)) or 'not measured yet'}"]

    def pick(self, feeds: dict[str, np.ndarray]):
        key = tuple((k, v.shape) for k, v in feeds.items())
        backend = self.choice.get(key)
        if backend is None:
            with self._lock:
                backend = self.choice.get(key) or self._measure(key, feeds)
        return backend

    def _measure(self, key, feeds):
        best = {}
        for backend in (self.ort, self.ov):
            backend.run(feeds)  # warm-up (OpenVINO compiles this size here)
            times = []
            for _ in range(TRIALS):
                start = time.perf_counter()
                backend.run(feeds)
                times.append(time.perf_counter() - start)
            best[backend.name] = sorted(times)[TRIALS // 2] * 1000.0
        self.timings[key] = best
        winner = self.ov if best["openvino"] < best["onnxruntime"] else self.ort
        self.choice[key] = winner
        return winner

    def run(self, feeds: dict[str, np.ndarray], cancel=None) -> np.ndarray:
        return self.pick(feeds).run(feeds, cancel)
