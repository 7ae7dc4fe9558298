"""Smaller parts of issue 11: drop rate per source, plain-words annotate dialog remembering its folder."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.dialogs.annotate_dialog import AnnotateDialog, plain_words
from app.measure.stats import LatencyMeter, PipelineStats, RateMeter
from engine.paths import MODELS_DIR

pytestmark = [pytest.mark.gui]


def test_dropped_frames_are_a_recent_rate_that_resets_per_source():
    meter = RateMeter(window_s=5.0)
    for t in (0.0, 1.0, 2.0):
        meter.tick(t)
    assert meter.count_per_s(now=2.0) == pytest.approx(3 / 5)
    assert meter.count_per_s(now=10.0) == 0.0  # old drops age out: the number does not grow forever
    stats = PipelineStats()
    for _ in range(4):
        stats.frame_read(replaced_unprocessed=True)
    snap = stats.snapshot()
    assert snap.frames_dropped == 4 and snap.dropped_per_s == pytest.approx(4 / 5)
    assert "dropped  0.8/s" in snap.lines(latency_ms=120.0)[2] and "120 ms" in snap.lines(latency_ms=120.0)[3]
    stats.source_changed()
    assert stats.snapshot().dropped_per_s == 0.0
    latency = LatencyMeter()
    assert latency.median() is None
    for ms in (100.0, 300.0, 200.0):
        latency.add(ms)
    assert latency.median() == 200.0


def test_annotate_dialog_speaks_plain_words_and_writes_under_the_videos_folder(qtbot, tmp_path):
    assert "--" not in plain_words("a job is there; use --resume to continue it or --overwrite to start again")
    video = tmp_path / "clips" / "street.mp4"
    root = tmp_path / "Videos" / "TopFormer Studio"
    dialog = AnnotateDialog(None, MODELS_DIR, video_path=video, model_name="camvid-tiny", out_root=root)
    qtbot.addWidget(dialog)
    assert Path(dialog.out_edit.text()) == root / "street-camvid-tiny-annotations"
    texts = [dialog.resume_check.text(), dialog.overwrite_check.text()]
    assert all("--" not in t and "job" not in t for t in texts)


def test_window_remembers_the_annotate_folder(qtbot, make_window, tmp_path):
    window = make_window(MODELS_DIR)
    default = window.settings.annotate_dir
    assert default.name == "TopFormer Studio"  # under the user's Videos folder (QStandardPaths), not next to the video
    window.open_annotate_dialog()
    qtbot.waitUntil(lambda: window.annotate_dialog is not None, timeout=5000)
    assert window.annotate_dialog.out_root == default
    chosen = tmp_path / "my annotations"
    window.annotate_dialog.out_root_chosen.emit(str(chosen))  # what Start emits
    window.annotate_dialog.close()
    assert window.settings.annotate_dir == chosen
    window.open_annotate_dialog()
    assert window.annotate_dialog.out_root == chosen
    window.annotate_dialog.close()


def test_stall_meter_times_garbage_collections_while_it_runs(qtbot):
    """The collector stops every thread: its pauses go into the benchmark report, and the
    meter stops listening when stopped."""
    import gc
    import threading

    from app.measure.stall_meter import StallMeter

    meter = StallMeter()
    meter.start()
    for _ in range(2000):  # cyclic garbage for the collector to find
        a: list = []
        a.append(a)
    gc.collect()
    assert meter.gc_off_ui_thread == 0
    worker = threading.Thread(target=gc.collect)  # what app/ui_thread_gc.py prevents, counted apart
    worker.start()
    worker.join()
    assert meter.gc_off_ui_thread == 1
    qtbot.wait(30)
    meter.stop()
    assert meter.gc_pauses_ms and meter.worst_gc_pause_ms > 0
    assert meter.gaps_ms and meter.worst_gap_ms >= meter.gc_pauses_ms[-1]  # the UI timer waited for it too
    count = len(meter.gc_pauses_ms)
    gc.collect()
    assert len(meter.gc_pauses_ms) == count and meter._on_gc not in gc.callbacks


def test_the_last_source_is_kept_as_an_absolute_path(tmp_path, monkeypatch):
    """`main.py --source clips/a.mp4` from one folder, then `main.py` from another, reopens it."""
    from app.settings_store import SettingsStore

    monkeypatch.chdir(tmp_path)
    store = SettingsStore.ephemeral()
    store.last_source = "clips/a.mp4"
    assert store.last_source == str(tmp_path / "clips" / "a.mp4")
    store.last_source = "1"  # a camera index stays one
    assert store.last_source == "1"
