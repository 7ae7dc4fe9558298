"""Snapshots and recordings are readable files; closing mid-inference ends every thread fast."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from engine.run.segmenter import Segmenter

from .conftest import INDOOR_HW, studio_threads, wait_result

pytestmark = [pytest.mark.gui, pytest.mark.shared]


def test_snapshot_and_record_produce_readable_files(qtbot, make_window, shipped_models_dir, indoor_clip, tmp_path):
    window = make_window(shipped_models_dir, source=str(indoor_clip), model="camvid-tiny", scale="half")
    out = tmp_path / "out"
    window.set_output_dir(out)
    result = wait_result(qtbot, window, lambda r: r.labels is not None)

    with qtbot.waitSignal(window.worker.snapshot_saved, timeout=10000) as saved:
        qtbot.keyClick(window, "s")
    paths = sorted(saved.args[0])
    assert [p.rsplit("-", 1)[1] for p in paths] == ["classes.png", "frame.png", "overlay.png"]
    assert all("camvid-tiny" in p for p in paths)
    classes = cv2.imread(paths[0], cv2.IMREAD_UNCHANGED)
    frame = cv2.imread(paths[1])
    overlay_png = cv2.imread(paths[2])
    assert classes.shape == INDOOR_HW and classes.dtype == np.uint8 and classes.max() < 11
    assert frame.shape == overlay_png.shape == (*INDOOR_HW, 3)
    assert not np.array_equal(frame, overlay_png)  # the overlay really is drawn
    assert window.last_result.frame_index >= result.frame_index

    with qtbot.waitSignal(window.worker.recording_started, timeout=10000) as started:
        qtbot.keyClick(window, "r")
    fresh = []
    window.frame_shown.connect(lambda r: fresh.append(r) if r.is_new else None)
    qtbot.waitUntil(lambda: len(fresh) >= 6, timeout=30000)
    with qtbot.waitSignal(window.worker.recording_stopped, timeout=10000) as stopped:
        qtbot.keyClick(window, "r")
    path, frames = stopped.args
    assert path == started.args[0] and path.endswith(".mp4") and "camvid-tiny" in path
    assert frames >= 5
    cap = cv2.VideoCapture(path)
    read = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        read.append(image)
    cap.release()
    assert len(read) == frames
    assert read[0].shape == (*INDOOR_HW, 3)
    assert abs(cv2.VideoCapture(path).get(cv2.CAP_PROP_FPS) - 10.0) < 0.5  # the clip's own rate


def test_close_while_inferring_ends_threads_within_2s(qtbot, make_window, shipped_models_dir, indoor_clip,
                                                     monkeypatch):
    window = make_window(shipped_models_dir, source=str(indoor_clip), model="camvid-base")
    wait_result(qtbot, window, lambda r: r.model == "camvid-base")
    inferring = threading.Event()
    original = Segmenter.segment

    def segment(self, *args, **kwargs):
        inferring.set()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "segment", segment)
    window.select_model("camvid-small")  # a session build in flight too
    qtbot.waitUntil(inferring.is_set, timeout=10000)
    t0 = time.monotonic()
    window.close()
    closed_in = time.monotonic() - t0
    assert window.threads_stopped is True
    assert closed_in < 2.0
    assert not studio_threads()
