"""TopFormer Studio engine: models, export, ONNX runtime, sources, overlay, training (no Qt).

Importing the package quiets FFmpeg/OpenCV console logging before cv2 is loaded: their
warnings about broken files would otherwise precede our own one-line error messages.
"""
import os

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
