"""The camera sources' shared behaviour (engine/io/sources.LiveCameraSource), driven by a real
video file behind OpenCV's capture: no camera is needed, and the code under test is the same
one CameraSource and PiCameraSource use."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.errors import SourceError
from engine.io.sources import CameraSource, LiveCameraSource

INDOOR = "indoor-people-768x432.mp4"


class ClipCamera(LiveCameraSource):
    """A 'camera' whose device is a video file: it stops delivering at the clip's end."""

    def __init__(self, path):
        self.index = 7
        self._cap = cv2.VideoCapture(str(path))
        ok, first = self._cap.read()
        assert ok
        self._started(first, 25.0)

    def _grab(self) -> np.ndarray:
        ok, image = self._cap.read()
        if not ok:
            raise SourceError(f"camera {self.index} stopped delivering frames (disconnected?)")
        return image

    def close(self) -> None:
        self._cap.release()


@pytest.mark.shared
def test_first_frame_comes_first_then_numbered_and_timed(videos):
    reference = cv2.VideoCapture(str(videos / INDOOR))
    expected = [reference.read()[1] for _ in range(4)]
    reference.release()
    with ClipCamera(videos / INDOOR) as cam:
        assert (cam.height, cam.width, cam.fps, cam.is_live, cam.kind) == (432, 768, 25.0, True, "camera")
        frames = [cam.read() for _ in range(4)]
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert frames[0].timestamp_s == 0.0 and all(a.timestamp_s <= b.timestamp_s for a, b in zip(frames, frames[1:]))
    for frame, image in zip(frames, expected):  # the frame grabbed at open is not lost or repeated
        assert np.array_equal(frame.image, image)


@pytest.mark.shared
def test_a_camera_that_stops_says_so(videos):
    with ClipCamera(videos / INDOOR) as cam:
        cam._cap.release()  # unplugged
        cam.read()  # the frame grabbed at open is still delivered
        with pytest.raises(SourceError, match="stopped delivering frames"):
            cam.read()
        with pytest.raises(SourceError, match="cannot seek in a camera"):
            cam.seek(0)


def test_missing_camera_is_one_line():
    with pytest.raises(SourceError) as info:
        CameraSource(97)
    assert str(info.value) == "camera 97 cannot be opened (not connected or in use)"
