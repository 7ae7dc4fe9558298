"""The app's Qt-free pieces: model choice, the latest-frame slot, stats, capture names, settings."""
from __future__ import annotations

import threading

import pytest

from app.playback.capture import capture_stem, ensure_writable_folder
from app.playback.frame_slot import LatestSlot
from app.panels.model_choice import initial_model, variant_sibling
from app.measure.stats import PipelineStats, RateMeter
from engine.errors import StudioError
from engine.models.registry import ModelEntry


def entry(name: str, variant: str, dataset: str = "ade20k", accuracy=None) -> ModelEntry:
    return ModelEntry(name=name, variant=variant, dataset=dataset, classes=["a"], palette=[[0, 0, 0]], onnx="",
                      sha256="", made_by="test", accuracy=accuracy)


ENTRIES = [entry("ade20k-tiny", "tiny"), entry("tiny-random", "tiny"), entry("small-random", "small"),
           entry("base-random", "base"), entry("camvid-tiny", "tiny", "camvid"),
           entry("camvid-small", "small", "camvid", accuracy={"miou": 0.5})]


def test_initial_model_prefers_request_then_saved_then_camvid_tiny_then_first():
    assert initial_model(ENTRIES, "small-random", "base-random") == "small-random"
    assert initial_model(ENTRIES, "missing", "base-random") == "base-random"
    assert initial_model(ENTRIES, None, "gone") == "camvid-tiny"
    assert initial_model(ENTRIES[:4], None, None) == "ade20k-tiny"
    assert initial_model([], "x", "y") is None


def test_variant_sibling_stays_in_dataset_and_family():
    by_name = {e.name: e for e in ENTRIES}
    assert variant_sibling(ENTRIES, by_name["tiny-random"], "small").name == "small-random"
    assert variant_sibling(ENTRIES, by_name["small-random"], "tiny").name == "tiny-random"
    assert variant_sibling(ENTRIES, by_name["camvid-tiny"], "small").name == "camvid-small"
    assert variant_sibling(ENTRIES, by_name["camvid-tiny"], "base") is None  # never crosses datasets
    assert variant_sibling(ENTRIES, by_name["ade20k-tiny"], "base").name == "base-random"


def test_latest_slot_replaces_unread_items_and_wakes_on_poke():
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True  # 1 was never taken: dropped
    assert slot.take(0.01) == (2, False)
    assert slot.take(0.01) == (None, False)
    threading.Timer(0.05, slot.poke).start()
    assert slot.take(5.0) == (None, True)


def test_pipeline_stats_median_and_reset():
    stats = PipelineStats()
    for ms in (10.0, 30.0, 20.0):
        stats.frame_processed(ms)
    stats.frame_read(False)
    stats.frame_read(True)
    snap = stats.snapshot(model="m")
    assert snap.inference_ms == 20.0 and snap.frames_dropped == 1 and snap.frames_read == 2
    stats.model_changed()
    assert stats.snapshot().inference_ms == 0.0
    stats.source_changed()
    assert stats.snapshot().frames_read == 0


def test_rate_meter():
    meter = RateMeter(window_s=10)
    for i in range(11):
        meter.tick(100.0 + i * 0.1)
    assert meter.rate(101.0) == pytest.approx(10.0)


def test_capture_names_and_unwritable_folder(tmp_path):
    assert capture_stem("my model/v2").endswith("-my_model_v2")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StudioError, match="cannot create output folder"):
        ensure_writable_folder(blocker / "sub")
    assert ensure_writable_folder(tmp_path / "new") == tmp_path / "new"


def test_settings_store_types(isolated_settings):
    from app.settings_store import SettingsStore

    s = SettingsStore()
    assert (s.scale, s.theme, s.opacity, s.loop, s.realtime, s.model, s.last_source) == (
        "full", "dark", 0.5, True, True, None, None)
    s.scale, s.theme, s.opacity, s.loop, s.model, s.last_source = "half", "light", 0.25, False, "m", "0"
    s.sync()
    again = SettingsStore()
    assert (again.scale, again.theme, again.opacity, again.loop, again.model, again.last_source) == (
        "half", "light", 0.25, False, "m", "0")
    assert str(isolated_settings) in again.qsettings.fileName()


def test_accuracy_texts_add_the_unseen_drive_figure():
    """The manage dialog and the picker's tooltip give the held-out-drive figure next to val's."""
    from app.dialogs.model_tasks import accuracy_text
    from app.panels.model_panel import entry_tooltip, short_text

    plain = entry("m", "tiny", "camvid", accuracy={"split": "val", "miou": 0.6, "images": 101})
    assert accuracy_text(plain) == "val mIoU 60.0 % (101 images)"
    assert short_text(plain) == "m · mIoU 60.0"
    plain.training = {"holdout_estimate": {"holdout_drive": "0006R0", "last": {"miou_holdout": 0.36}}}
    assert accuracy_text(plain) == "val mIoU 60.0 % (101 images); unseen drive 0006R0 mIoU 36.0 (estimate)"
    assert short_text(plain) == "m · unseen 36.0"  # the picker shows what other footage gets, not val's
    assert "on footage it never saw: unseen drive 0006R0 mIoU 36.0 (estimate)" in entry_tooltip(plain).splitlines()


def test_compare_chart_uses_the_unseen_drive_figure_only_when_every_model_has_it():
    from types import SimpleNamespace as P

    from app.compare.tradeoff_chart import VAL_TITLE, accuracy_axis

    both = [P(accuracy_miou=0.60, unseen=(0.45, "0006R0", True)), P(accuracy_miou=0.64, unseen=(0.36, "0006R0", False))]
    assert accuracy_axis(both) == ("mIoU % on unseen drive 0006R0 (est.)", [45.0, 36.0])
    one_missing = [both[0], P(accuracy_miou=0.64, unseen=None)]
    assert accuracy_axis(one_missing) == (VAL_TITLE, [60.0, 64.0])
    other_drive = [both[0], P(accuracy_miou=None, unseen=(0.5, "0001TP", False))]
    assert accuracy_axis(other_drive) == (VAL_TITLE, [60.0, None])
    assert accuracy_axis([P(accuracy_miou=0.5, unseen=(0.4, "0006R0", False))]) == ("mIoU % on unseen drive 0006R0", [40.0])

