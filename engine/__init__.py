"""TopFormer Studio engine: models, export, ONNX runtime, sources, overlay, training (no Qt).

The public surface users' scripts call is importable from here::

    from engine import Segmenter
    seg = Segmenter.load("camvid-tiny")
    result = seg.segment(frame_bgr, "half")   # SegResult: labels, class_names, palette_bgr, ...
    seg.input_size(frame_bgr.shape[:2], "half"); seg.onnx_path

Names are resolved on first use, so ``import engine`` stays cheap (no ONNX Runtime or
OpenCV until a name that needs them is asked for). Importing the package quiets
FFmpeg/OpenCV console logging before cv2 is loaded: their warnings about broken files
would otherwise precede our own one-line error messages.
"""
import importlib
import os

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

_PUBLIC = {
    "Segmenter": "run.segmenter", "CancelToken": "run.segmenter", "InferenceCancelled": "run.segmenter",
    "SegResult": "result", "Registry": "models.registry", "ModelEntry": "models.registry",
    "open_source": "io.sources", "StudioError": "errors", "parse_scale": "scales",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
