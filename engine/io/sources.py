"""Frame sources (video files, cameras, still images) behind one small interface; no Qt.

``open_source(spec)`` picks the kind: an int or digit string is a camera index, an image
extension a still image, anything else a video file. Every failure is a SourceError with a
message for the user.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import SourceError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


@dataclass
class Frame:
    image: np.ndarray  # BGR uint8
    index: int  # frame number in the source
    timestamp_s: float  # position in the video, or seconds since the camera opened


def decode_shortfall(decoded: int, expected: int) -> bool:
    """Whether a video that stopped after ``decoded`` frames ended short of the ``expected`` count.

    The one test for "stopped decoding early or failed mid-stream", used by ``segment``,
    ``annotate`` and the app. An unknown count (0) is never short.
    """
    if expected <= 0:
        return False
    slack = max(FRAME_COUNT_SLACK, int(expected * DECODE_SLACK_FRACTION))
    return decoded < expected - slack


def check_decoded(name: str, decoded: int, expected: int) -> None:
    """Raise SourceError ``NAME: decoded N of M frames ...`` when the video ended short."""
    if decode_shortfall(decoded, expected):
        raise SourceError(f"{name}: decoded {decoded} of {expected} frames; the video is truncated or corrupt")


def _open_capture(target: str | int, error: str) -> tuple[cv2.VideoCapture, np.ndarray]:
    """An open capture and its first frame (proof that it really delivers), else SourceError."""
    cap = cv2.VideoCapture(target)
    ok, first = cap.read() if cap.isOpened() else (False, None)
    if not ok or first is None:
        cap.release()
        raise SourceError(error)
    return cap, first


def _fps_of(cap: cv2.VideoCapture, default: float) -> float:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return float(fps) if fps and 0 < fps < 1000 else default


class FrameSource:
    """Common interface: ``read()`` returns the next Frame or None at the end."""

    kind = "source"
    fps: float = 0.0
    frame_count: int = 0  # 0 when unknown (cameras)
    width: int = 0
    height: int = 0
    is_live = False  # True for cameras: frames cannot be seeked or replayed

    def read(self) -> Frame | None:
        raise NotImplementedError

    def seek(self, index: int) -> None:  # noqa: ARG002 - cameras cannot seek
        raise SourceError(f"cannot seek in a {self.kind}")

    def close(self) -> None:
        pass

    @property
    def description(self) -> str:
        return self.kind

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoFileSource(FrameSource):
    kind = "video"

    def __init__(self, path: str | Path):
        refuse_stream(path)
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"video file {self.path} does not exist")
        if self.path.is_dir():
            raise SourceError(f"{self.path} is a folder, not a video file")
        if not self.path.is_file() or not os.access(self.path, os.R_OK):
            raise SourceError(f"video file {self.path} cannot be read")
        self._cap, first = _open_capture(str(self.path), f"{self.path.name} is not a readable video (unsupported, corrupt or empty file)")
        self.height, self.width = first.shape[:2]
        self.fps = _fps_of(self._cap, default=25.0)
        self.frame_count = max(int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        self._pending: Frame | None = Frame(first, 0, 0.0)
        self._next_index = 1

    @property
    def description(self) -> str:
        return self.path.name

    def read(self) -> Frame | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        ok, image = self._cap.read()
        if not ok or image is None:
            # The end, or a decoder that gave up: short of the container's count is an error.
            check_decoded(self.path.name, self._next_index, self.frame_count)
            return None
        frame = Frame(image, self._next_index, self._next_index / self.fps)
        self._next_index += 1
        return frame

    def seek(self, index: int) -> None:
        index = max(0, min(int(index), max(self.frame_count - 1, 0)))
        self._pending = None
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        self._next_index = index

    def close(self) -> None:
        self._cap.release()


class LiveCameraSource(FrameSource):
    """What every camera shares: the first frame (grabbed at open, as proof that the camera
    delivers) is handed out first, then frames are numbered and timed from the opening.
    Subclasses open the device, call ``_started(first)`` and implement ``_grab``."""

    kind = "camera"
    is_live = True
    index: int

    def _started(self, first: np.ndarray, fps: float) -> None:
        self.height, self.width = first.shape[:2]
        self.fps = fps
        self._t0 = time.monotonic()
        self._pending: Frame | None = Frame(first, 0, 0.0)
        self._count = 1

    def _grab(self) -> np.ndarray:
        """The next BGR image, or SourceError when the camera stopped."""
        raise NotImplementedError

    def read(self) -> Frame | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        frame = Frame(self._grab(), self._count, time.monotonic() - self._t0)
        self._count += 1
        return frame


class CameraSource(LiveCameraSource):
    """A camera OpenCV can open (V4L2 on Linux)."""

    def __init__(self, index: int):
        self.index = int(index)
        self._cap, first = _open_capture(self.index, f"camera {self.index} cannot be opened (not connected or in use)")
        self._started(first, _fps_of(self._cap, default=30.0))

    @property
    def description(self) -> str:
        return f"camera {self.index}"

    def _grab(self) -> np.ndarray:
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(f"camera {self.index} stopped delivering frames (disconnected?)")
        return image

    def close(self) -> None:
        self._cap.release()


class ImageSource(FrameSource):
    """A still image: one frame, then the end."""

    kind = "image"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"image file {self.path} does not exist")
        image = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{self.path.name} is not a readable image")
        self.image = image
        self.height, self.width = image.shape[:2]
        self.frame_count = 1
        self._done = False

    @property
    def description(self) -> str:
        return self.path.name

    def read(self) -> Frame | None:
        if self._done:
            return None
        self._done = True
        return Frame(self.image, 0, 0.0)

    def seek(self, index: int) -> None:  # noqa: ARG002 - one frame only
        self._done = False


def refuse_stream(spec: str | Path) -> None:
    """A URL as given by the user (before ``Path()`` folds its ``//`` and a missing file is blamed)."""
    if isinstance(spec, str) and "://" in spec:
        raise SourceError(f"{spec}: network streams are not supported; open a camera (0, 1, ...) or a video file")


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


class PiCameraSource(LiveCameraSource):
    """A Raspberry Pi camera through picamera2 (libcamera): CSI cameras on a Pi 5 have no
    V4L2 node OpenCV can read, so they are opened this way whenever picamera2 is installed."""

    def __init__(self, index: int, size: tuple[int, int] = (1280, 720)):
        from picamera2 import Picamera2  # Debian's python3-picamera2, seen through the venv

        self.index = int(index)
        try:
            self._cam = Picamera2(self.index)
            # "RGB888" is libcamera's name for B, G, R byte order: OpenCV's BGR, no conversion.
            self._cam.configure(self._cam.create_video_configuration(main={"size": size, "format": "RGB888"}))
            self._cam.start()
            first = self._cam.capture_array("main")
        except Exception as exc:  # noqa: BLE001 - libcamera reports busy/missing cameras many ways
            raise SourceError(f"camera {self.index} (picamera2) cannot be opened: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self._started(np.ascontiguousarray(first[..., :3]), 30.0)

    @property
    def description(self) -> str:
        return f"camera {self.index} (picamera2)"

    def _grab(self) -> np.ndarray:
        try:
            image = self._cam.capture_array("main")
        except Exception:  # noqa: BLE001
            raise SourceError(f"camera {self.index} stopped delivering frames (disconnected?)") from None
        return np.ascontiguousarray(image[..., :3])

    def close(self) -> None:
        try:
            self._cam.stop()
            self._cam.close()
        except Exception:  # noqa: BLE001 - closing a vanished camera
            pass


def picamera2_cameras() -> int:
    """How many cameras libcamera sees through picamera2; 0 when picamera2 is not installed."""
    try:
        from picamera2 import Picamera2
    except Exception:  # noqa: BLE001 - absent, or broken by a numpy mismatch
        return 0
    try:
        return len(Picamera2.global_camera_info())
    except Exception:  # noqa: BLE001
        return 0


def camera_available(index: int) -> bool:
    """Cheap check, without opening anything, that camera ``index`` may be there: a picamera2
    camera or, on Linux, /dev/video<index>. Elsewhere it cannot tell, so True."""
    if index < picamera2_cameras():
        return True
    if sys.platform.startswith("linux"):
        return Path(f"/dev/video{index}").exists()
    return True


def open_source(spec: str | int | Path) -> FrameSource:
    """Camera index (int or digits), still image (by extension) or video file.

    Cameras: picamera2 when it is installed and sees that camera, else V4L2 through OpenCV.
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        if int(spec) < picamera2_cameras():
            return PiCameraSource(int(spec))
        return CameraSource(int(spec))
    if is_image_path(spec):
        return ImageSource(spec)
    return VideoFileSource(spec)


def list_cameras(max_index: int = 5) -> list[int]:
    """Indices of the cameras that actually open and deliver a frame."""
    found = []
    for index in range(max_index):
        cap = cv2.VideoCapture(index)
        try:
            if cap.isOpened() and cap.read()[0]:
                found.append(index)
        finally:
            cap.release()
    return found


# --------------------------------------------------------------------------------------------
# Selected frames of a video file, for jobs that read a subset in order (annotate)
# --------------------------------------------------------------------------------------------
SEEK_AHEAD = 100  # frames: a jump further than this seeks instead of decoding every frame between
# A container's frame count can be an estimate; a stream this many frames short at the very end is
# accepted (the missing frames do not exist), anything shorter is a truncated file.
FRAME_COUNT_SLACK = 2
# Estimated counts (duration x fps) of long videos can be off by more than two frames.
DECODE_SLACK_FRACTION = 0.01


def open_video_capture(path: str | Path, single_thread: bool = False) -> cv2.VideoCapture:
    """A capture of a video file; ``single_thread`` asks FFmpeg for one decoder thread.

    A job with its own reader, inference and writer threads runs faster on a small machine when
    the decoder does not start threads of its own that compete with inference (measured: less
    CPU per frame). Falls back to OpenCV's default backend when FFmpeg cannot open the file.
    """
    if single_thread:
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if cap.isOpened():
            return cap
        cap.release()
    return cv2.VideoCapture(str(path))


class SelectedFrames:
    """Frames of a video file by increasing index: near ones are decoded, far ones seeked to.

    ``frame(index)`` returns the BGR image or None when the stream ends before ``index``; indices
    must not go backwards. Use :class:`VideoFileSource` first to check the file and read its size.
    """

    def __init__(self, path: str | Path, single_thread: bool = True, seek_ahead: int | None = SEEK_AHEAD):
        self.path = Path(path)
        self._cap = open_video_capture(self.path, single_thread)
        self._seek_ahead = seek_ahead
        self._pos = 0  # index of the frame the next grab() returns

    def frame(self, index: int) -> np.ndarray | None:
        cap = self._cap
        if self._seek_ahead is not None and index - self._pos > self._seek_ahead:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
            self._pos = index
        while self._pos < index:
            if not cap.grab():
                return None
            self._pos += 1
        if not cap.grab():
            return None
        image = cap.retrieve()[1]
        if image is None:
            return None
        self._pos += 1
        return image

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> "SelectedFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def frame_is_readable(path: str | Path, index: int) -> bool:
    """True when frame ``index`` decodes: a truncated file often still opens and reports its full length."""
    cap = cv2.VideoCapture(str(path))
    try:
        if index > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        return bool(cap.read()[0])
    finally:
        cap.release()
