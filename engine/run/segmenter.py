"""Run an installed ONNX TopFormer on BGR frames: frame in, class map at frame size out.

No torch here: the app, annotate, eval and bench all segment through this class.
The graph (engine/models/graph.py) is the network with its input normalisation: uint8 BGR
frame in, 1/8-resolution logits out. The labels are made here from the logits with the
official semantics (bilinear upsample, argmax) computed exactly but only at class
boundaries (engine/run/postprocess.py), which costs a few % of the network. Older files
whose graph ends in labels (inputs ``image`` + ``out_size``) still run.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from . import postprocess
from .label_resize import nearest_upscale
from .backends import create_backend
from ..errors import StudioError
from ..models.graph import check_against_manifest, decode_metadata
from ..models.registry import ModelEntry, Registry
from ..result import SegResult
from ..scales import Scale, is_best, is_named, parse_scale, round_to_multiple


# The network input's long side is capped: a 12000x9000 photo at ``full`` would otherwise need
# about 9 GB in the graph. Labels are still returned at the frame's size (upsampled).
MAX_INPUT_SIDE = 2048


class Segmenter:
    """One inference backend for one installed model. Thread-safe: keeps no per-call state."""

    def __init__(self, entry: ModelEntry, onnx_path: Path, threads: int | None = None, cpu_only: bool = False,
                 backend: str | None = None, precision: str | None = None):
        self.entry = entry
        self.onnx_path = Path(onnx_path)
        try:
            self.backend = create_backend(self.onnx_path, backend, threads=threads, cpu_only=cpu_only, precision=precision)
        except StudioError:
            raise
        except Exception as exc:  # runtimes raise several types for unreadable or invalid files
            raise StudioError(f"cannot load model {entry.name!r} from {onnx_path}: {str(exc).splitlines()[0]}") from None
        names = self.backend.input_names
        if names == ["image"] and self.backend.output_rank == 4:
            self.legacy = False
        elif names == ["image", "out_size"]:
            self.legacy = True  # labels computed in the graph (files exported before logits-v2)
        else:
            raise StudioError(f"{onnx_path} is not a TopFormer Studio model (inputs {names})")
        self.metadata = decode_metadata(self.backend.metadata)
        check_against_manifest(self.metadata, entry, self.onnx_path)
        self.multiple = entry.input_multiple
        self.palette_rgb = np.array(entry.palette, dtype=np.uint8).reshape(-1, 3)
        self.palette_bgr = np.ascontiguousarray(self.palette_rgb[:, ::-1])

    @classmethod
    def load(cls, name: str, models_dir: Path | str | None = None, threads: int | None = None, cpu_only: bool = False,
             backend: str | None = None, precision: str | None = None) -> "Segmenter":
        """Load an installed model by name, checking its file against the manifest."""
        registry = Registry(models_dir)
        entry = registry.get(name)
        return cls(entry, registry.verify(entry), threads=threads, cpu_only=cpu_only, backend=backend, precision=precision)

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
        return self.backend.providers

    @property
    def session(self):
        """The ONNX Runtime session behind this model (None on OpenVINO), for ORT tools such as quantisation."""
        backend = getattr(self.backend, "ort", self.backend)  # auto keeps an ORT backend too
        return getattr(backend, "session", None)

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def input_size(self, frame_hw: tuple[int, int], scale: Scale = "full") -> tuple[int, int]:
        """Network input (height, width) for a frame: its size times ``scale``, rounded to the multiple.

        A named scale (``full``, ``half``) never exceeds the model's best input size
        (``ModelEntry.best_long_side``); an explicit factor is used as given.
        """
        factor = self._factor(frame_hw, scale)
        h, w = frame_hw
        limit = max(self.multiple, MAX_INPUT_SIDE // self.multiple * self.multiple)
        return (min(round_to_multiple(h * factor, self.multiple), limit),
                min(round_to_multiple(w * factor, self.multiple), limit))

    def _factor(self, frame_hw: tuple[int, int], scale: Scale) -> float:
        factor = parse_scale(scale)
        long_side = max(frame_hw[0], frame_hw[1], 1)
        best = self.entry.best_long_side
        if best and is_best(scale):
            factor = best / long_side  # up as well as down
        elif best and is_named(scale):
            factor = min(factor, best / long_side)
        return min(factor, MAX_INPUT_SIDE / long_side)

    def input_note(self, frame_hw: tuple[int, int], scale: Scale) -> str:
        """What the app shows next to the input size when the model's best size set or capped it ("" if not)."""
        best = self.entry.best_long_side
        if best and (is_best(scale) or (is_named(scale) and parse_scale(scale) * max(frame_hw) > best)):
            return f"the model's best size, long side {best}"
        return ""

    def prepare(self, frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The frame as the graph's uint8 [1,H,W,3] BGR input at ``size``."""
        frame = _as_bgr(frame_bgr)
        if frame.shape[:2] != tuple(size):
            frame = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(frame)[None]

    def logits(self, image: np.ndarray, cancel: "CancelToken | None" = None) -> np.ndarray:
        """The network on a prepared input: float32 logits [C, H/8, W/8] (logits-v2 files only)."""
        if self.legacy:
            raise StudioError(f"{self.onnx_path} computes labels in its graph (older layout): no logits")
        return self._run({"image": image}, cancel)[0]

    def run(self, image: np.ndarray, out_hw: tuple[int, int], cancel: "CancelToken | None" = None) -> np.ndarray:
        """Class map [out_h, out_w] (uint8) for a prepared input, official semantics at ``out_hw``."""
        if self.legacy:
            return self._run({"image": image, "out_size": np.asarray(out_hw, dtype=np.int64)}, cancel)[0]
        return postprocess.labels_from_logits(self.logits(image, cancel), out_hw)

    def _run(self, feeds: dict[str, np.ndarray], cancel: "CancelToken | None") -> np.ndarray:
        try:
            return self.backend.run(feeds, cancel)
        except InferenceCancelled:
            raise
        except Exception:
            if cancel is not None and cancel.cancelled:
                raise InferenceCancelled("inference cancelled") from None
            raise

    def labels(self, image: np.ndarray, frame_hw: tuple[int, int], cancel: "CancelToken | None" = None) -> np.ndarray:
        """Class map at frame size from a prepared input (see ``labels_and_confidence``)."""
        return self.labels_and_confidence(image, frame_hw, cancel)[0]

    def labels_and_confidence(self, image: np.ndarray, frame_hw: tuple[int, int],
                              cancel: "CancelToken | None" = None) -> tuple[np.ndarray, float | None]:
        """Class map at frame size and the frame's confidence, from a prepared input.

        When the network input is about the frame's size (``full``) the exact labels are
        computed at frame size directly. When it is clearly smaller (``half``) they are
        computed at input resolution and scaled up (nearest): at frame size the exact
        upsample would cost a large share of the smaller network and add no detail.
        """
        out_hw = self.output_size(image.shape[1:3], frame_hw)
        conf = None
        if self.legacy:
            labels = self.run(image, out_hw, cancel)
        else:
            labels, conf = postprocess.labels_and_confidence(self.logits(image, cancel), out_hw,
                                                             contiguous=out_hw == tuple(frame_hw))
        if out_hw != tuple(frame_hw):
            labels = nearest_upscale(labels, frame_hw)
        return labels, conf

    @staticmethod
    def output_size(in_hw: tuple[int, int], frame_hw: tuple[int, int]) -> tuple[int, int]:
        """Size the labels are computed at: the frame's, unless the input is clearly smaller."""
        if in_hw[0] * in_hw[1] >= 0.8 * frame_hw[0] * frame_hw[1]:
            return tuple(frame_hw)
        return tuple(in_hw)

    def segment(self, frame_bgr: np.ndarray, scale: Scale = "full", size: tuple[int, int] | None = None,
                cancel: "CancelToken | None" = None) -> SegResult:
        """Segment a BGR (or gray/BGRA) frame: labels (uint8, frame's height x width) with names, timing, confidence.

        ``size`` overrides the network input size (e.g. an official test resize);
        ``cancel`` lets another thread stop a long inference (InferenceCancelled is raised).
        """
        if frame_bgr is None or frame_bgr.ndim not in (2, 3) or frame_bgr.size == 0:
            raise StudioError("segment() needs a non-empty image array")
        t0 = time.perf_counter()
        hw = frame_bgr.shape[:2]
        in_hw = tuple(size) if size else self.input_size(hw, scale)
        labels, conf = self.labels_and_confidence(self.prepare(frame_bgr, in_hw), hw, cancel)
        return SegResult(labels=labels, class_names=tuple(self.entry.classes), palette_bgr=self.palette_bgr,
                         input_hw=(int(in_hw[0]), int(in_hw[1])), inference_ms=(time.perf_counter() - t0) * 1000.0,
                         confidence=conf)


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
