"""ONNX Runtime backend: one InferenceSession (settings in engine/run/runtime.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runtime import create_session


class OrtBackend:
    name = "onnxruntime"
    precision = "f32"

    def __init__(self, path: Path, threads: int | None = None, cpu_only: bool = False):
        self.session = create_session(Path(path), threads=threads, cpu_only=cpu_only)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_rank = len(self.session.get_outputs()[0].shape)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, feeds: dict[str, np.ndarray], cancel=None) -> np.ndarray:
        """The first output; ``cancel`` (a CancelToken) stops a run in progress."""
        options = getattr(cancel, "options", None) if cancel is not None else None
        return self.session.run(None, feeds, options)[0]
