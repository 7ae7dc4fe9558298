"""Run an installed ONNX TopFormer on BGR frames: frame in, class map at frame size out.

No torch here: the app, annotate, eval and bench all segment through this class.
Normalisation, upsampling and argmax happen inside the ONNX graph (see export.py), so
the only work outside the session is one resize of the frame to the network size.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from .errors import StudioError
from .registry import ModelEntry, Registry
from .result import SegResult
from .runtime import create_session
from .scales import Scale, parse_scale, round_to_multiple


# The network input's long side is capped: a 12000x9000 photo at ``full`` would otherwise need
# about 9 GB in the graph. Labels are still returned at the frame's size (upsampled).
MAX_INPUT_SIDE = 2048


class Segmenter:
    """One ONNX Runtime session for one installed model. Thread-safe: keeps no per-call state."""

    def __init__(self, entry: ModelEntry, onnx_path: Path, threads: int | None = None, cpu_only: bool = False):
        self.entry = entry
        self.onnx_path = Path(onnx_path)
        try:
            self.session = create_session(self.onnx_path, threads=threads, cpu_only=cpu_only)
        except Exception as exc:  # ORT raises several types for unreadable or invalid files
            raise StudioError(f"cannot load model {entry.name!r} from {onnx_path}: {str(exc).splitlines()[0]}") from None
        names = [i.name for i in self.session.get_inputs()]
        if names != ["image", "out_size"]:
            raise StudioError(f"{onnx_path} is not a TopFormer Studio model (inputs {names})")
        self.multiple = entry.input_multiple
        self.palette_rgb = np.array(entry.palette, dtype=np.uint8).reshape(-1, 3)
        self.palette_bgr = np.ascontiguousarray(self.palette_rgb[:, ::-1])

    @classmethod
    def load(cls, name: str, models_dir: Path | str | None = None, threads: int | None = None, cpu_only: bool = False) -> "Segmenter":
        """Load an installed model by name, checking its file against the manifest."""
        registry = Registry(models_dir)
        entry = registry.get(name)
        return cls(entry, registry.verify(entry), threads=threads, cpu_only=cpu_only)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def class_names(self) -> list[str]:
        return list(self.entry.classes)

    @property
    def num_classes(self) -> int:
        return self.entry.num_classes

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def input_size(self, frame_hw: tuple[int, int], scale: Scale = "full") -> tuple[int, int]:
        """Network input (height, width) for a frame: its size times ``scale``, rounded to the multiple."""
        factor = parse_scale(scale)
        h, w = frame_hw
        factor = min(factor, MAX_INPUT_SIDE / max(h, w, 1))
        limit = max(self.multiple, MAX_INPUT_SIDE // self.multiple * self.multiple)
        return (min(round_to_multiple(h * factor, self.multiple), limit),
                min(round_to_multiple(w * factor, self.multiple), limit))

    def prepare(self, frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The frame as the graph's uint8 [1,H,W,3] BGR input at ``size``."""
        frame = _as_bgr(frame_bgr)
        if frame.shape[:2] != tuple(size):
            frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(frame)[None]

    def run(self, image: np.ndarray, out_hw: tuple[int, int], cancel: "CancelToken | None" = None) -> np.ndarray:
        """Raw ``session.run`` on a prepared input; returns the uint8 class map [out_h, out_w]."""
        feeds = {"image": image, "out_size": np.asarray(out_hw, dtype=np.int64)}
        try:
            return self.session.run(None, feeds, cancel.options if cancel else None)[0][0]
        except Exception:
            if cancel is not None and cancel.cancelled:
                raise InferenceCancelled("inference cancelled") from None
            raise

    def labels(self, image: np.ndarray, frame_hw: tuple[int, int], cancel: "CancelToken | None" = None) -> np.ndarray:
        """Class map at frame size from a prepared input.

        When the network input is about the frame's size (``full``) the graph computes the
        labels at frame size directly. When it is clearly smaller (``half``) the graph
        computes them at input resolution and they are scaled up (nearest) here: the exact
        upsample would cost as much as the network itself and add no detail.
        """
        out_hw = self.output_size(image.shape[1:3], frame_hw)
        labels = self.run(image, out_hw, cancel)
        if out_hw != tuple(frame_hw):
            labels = cv2.resize(labels, (frame_hw[1], frame_hw[0]), interpolation=cv2.INTER_NEAREST)
        return labels

    @staticmethod
    def output_size(in_hw: tuple[int, int], frame_hw: tuple[int, int]) -> tuple[int, int]:
        """Size the graph computes labels at: the frame's, unless the input is clearly smaller."""
        if in_hw[0] * in_hw[1] >= 0.8 * frame_hw[0] * frame_hw[1]:
            return tuple(frame_hw)
        return tuple(in_hw)

    def segment(self, frame_bgr: np.ndarray, scale: Scale = "full", size: tuple[int, int] | None = None,
                cancel: "CancelToken | None" = None) -> SegResult:
        """Segment a BGR (or gray/BGRA) frame: labels (uint8, frame's height x width) with names and timing.

        ``size`` overrides the network input size (e.g. an official test resize);
        ``cancel`` lets another thread stop a long inference (InferenceCancelled is raised).
        """
        if frame_bgr is None or frame_bgr.ndim not in (2, 3) or frame_bgr.size == 0:
            raise StudioError("segment() needs a non-empty image array")
        t0 = time.perf_counter()
        hw = frame_bgr.shape[:2]
        in_hw = tuple(size) if size else self.input_size(hw, scale)
        labels = self.labels(self.prepare(frame_bgr, in_hw), hw, cancel)
        return SegResult(labels=labels, class_names=tuple(self.entry.classes), palette_bgr=self.palette_bgr,
                         input_hw=(int(in_hw[0]), int(in_hw[1])), inference_ms=(time.perf_counter() - t0) * 1000.0)


class InferenceCancelled(StudioError):
    pass


class CancelToken:
    """Stops an inference in progress from another thread (e.g. when the window closes)."""

    def __init__(self):
        self.options = ort.RunOptions()

    def cancel(self) -> None:
        self.options.terminate = True

    @property
    def cancelled(self) -> bool:
        return bool(self.options.terminate)


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return frame
