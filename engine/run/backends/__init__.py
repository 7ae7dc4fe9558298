"""Inference backends: one ONNX file in, the graph's first output out, behind one small interface.

``onnxruntime`` (always installed), ``openvino`` (optional: ``pip install .[openvino]``,
static input shapes compiled per size and cached) and ``auto`` (OpenVINO when it is
installed and measured faster on this machine at first use, else ONNX Runtime). The
Segmenter talks only to this interface, so a new runtime plugs in here (see
docs/architecture.md, "Where new features plug in").
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ...errors import StudioError

BACKENDS = ("onnxruntime", "openvino", "auto")
PRECISIONS = ("f32", "bf16", "f16")


class CancelLike(Protocol):
    @property
    def cancelled(self) -> bool: ...


class Backend(Protocol):
    """What the Segmenter needs from a runtime."""

    name: str              # "onnxruntime" | "openvino"
    precision: str         # "f32" unless asked otherwise
    input_names: list[str]
    output_rank: int       # 4: logits [1, C, h, w]; 3: legacy uint8 labels [1, H, W]
    metadata: dict[str, str]  # the file's metadata_props (raw strings)

    @property
    def providers(self) -> list[str]: ...

    def run(self, feeds: dict[str, np.ndarray], cancel=None) -> np.ndarray: ...


def default_backend() -> str:
    """STUDIO_BACKEND if set (onnxruntime | openvino | auto), else onnxruntime."""
    value = os.environ.get("STUDIO_BACKEND", "").strip().lower()
    return value if value in BACKENDS else "onnxruntime"


def default_precision() -> str:
    """STUDIO_PRECISION if set (f32 | bf16 | f16), else f32."""
    value = os.environ.get("STUDIO_PRECISION", "").strip().lower()
    return value if value in PRECISIONS else "f32"


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def create_backend(path: Path, kind: str | None = None, threads: int | None = None, cpu_only: bool = False,
                   precision: str | None = None) -> Backend:
    """A backend for ``path``. Raises StudioError for an unknown kind or a missing OpenVINO."""
    kind = (kind or default_backend()).lower()
    precision = precision or default_precision()
    if kind not in BACKENDS:
        raise StudioError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise StudioError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if kind == "openvino" and not openvino_available():
        raise StudioError("backend 'openvino' is not installed: pip install 'topformer-studio[openvino]' "
                          "(or pip install openvino)")
    if kind == "onnxruntime" or (kind == "auto" and not openvino_available()):
        if precision != "f32":
            raise StudioError(f"precision {precision} needs --backend openvino (ONNX Runtime runs the file as it is)")
        from .ort_backend import OrtBackend

        return OrtBackend(path, threads=threads, cpu_only=cpu_only)
    from .openvino_backend import OpenVinoBackend

    if kind == "openvino":
        return OpenVinoBackend(path, threads=threads, precision=precision)
    from .auto import AutoBackend

    return AutoBackend(path, threads=threads, cpu_only=cpu_only, precision=precision)
