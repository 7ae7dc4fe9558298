"""ONNX Runtime session settings, in one place (threads, graph optimisation, providers)."""
from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

# Accelerated providers used when this onnxruntime build has them; CPU always last.
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CoreMLExecutionProvider", "CPUExecutionProvider")


def default_threads() -> int:
    """Intra-op threads: STUDIO_THREADS if set, else all cores (ORT's own default)."""
    value = os.environ.get("STUDIO_THREADS", "")
    return int(value) if value.isdigit() else 0


def session_options(threads: int | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = default_threads() if threads is None else threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # warnings about unused initialisers etc. are noise for users
    # Idle ORT threads sleep instead of spinning: the decoder, writer and UI threads need
    # those cores (measured here: about 2x more frames/s in annotate and the app on 2 cores).
    if os.environ.get("STUDIO_ORT_SPIN") != "1":
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def available_providers(cpu_only: bool = False) -> list[str]:
    if cpu_only or os.environ.get("STUDIO_CPU_ONLY") == "1":
        return ["CPUExecutionProvider"]
    have = set(ort.get_available_providers())
    return [p for p in PREFERRED_PROVIDERS if p in have]


def create_session(path: Path, threads: int | None = None, cpu_only: bool = False) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), sess_options=session_options(threads), providers=available_providers(cpu_only))
