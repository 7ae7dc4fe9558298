"""Scene-fit hint: the Qt-free policy with fed confidences, and the notice in the real window."""
from __future__ import annotations

import json
import shutil

import pytest

from app.playback.scene_fit import SceneFitMonitor, expected_confidence, notice_text
from engine.models.registry import ModelEntry, Registry

from .conftest import wait_result

pytestmark = [pytest.mark.gui]


VAL_SHARES = {"sky": 0.09, "building": 0.24, "road": 0.28, "pavement": 0.09, "tree": 0.17, "car": 0.03}
INDOOR_SHARES = {"tree": 0.44, "sky": 0.40, "building": 0.12, "sign_symbol": 0.02}  # what Tiny paints indoors
STREET_SHARES = {"sky": 0.25, "road": 0.35, "tree": 0.15, "building": 0.10, "pavement": 0.05, "car": 0.05}


def entry(dataset: str = "camvid", confidence: float | None = 0.9, shares: dict | None = None) -> ModelEntry:
    acc = {"split": "val", "miou": 0.58} | ({"confidence": confidence} if confidence is not None else {})
    if shares:
        acc["class_shares"] = shares
    classes = ["sky", "building", "road", "car"] if dataset == "camvid" else [f"c{i}" for i in range(150)]
    return ModelEntry(name=f"{dataset}-tiny", variant="tiny", dataset=dataset, classes=classes,
                      palette=[[0, 0, 0]] * len(classes), onnx="x.onnx", sha256="", made_by="test", accuracy=acc)


def feed(monitor: SceneFitMonitor, values, fps: float = 10.0, t0: float = 0.0):
    """Feed one value per frame; returns the notices raised (with the time they were raised)."""
    raised = []
    for i, value in enumerate(values):
        text = monitor.feed(t0 + i / fps, value)
        if text:
            raised.append((t0 + i / fps, text))
    return raised


def test_low_confidence_for_a_few_seconds_raises_one_notice():
    monitor = SceneFitMonitor()
    monitor.reset(entry())
    raised = feed(monitor, [0.55] * 100)  # 10 s at 10 fps, far below 0.9 * 0.85
    assert len(raised) == 1
    when, text = raised[0]
    assert 2.0 <= when <= 3.5  # "a few seconds", not the first frame
    assert "street scenes" in text and "road, car, pedestrian" in text and "Models > Download" in text


def test_confident_scene_and_short_dips_raise_nothing():
    monitor = SceneFitMonitor()
    monitor.reset(entry())
    assert feed(monitor, [0.88] * 100) == []
    # a second of bad frames (a camera pan) inside a good scene is not a wrong scene
    assert feed(monitor, ([0.88] * 20 + [0.5] * 8) * 5, t0=20.0) == []


def test_just_below_the_validation_mean_is_not_well_below():
    monitor = SceneFitMonitor()
    monitor.reset(entry(confidence=0.9))
    assert feed(monitor, [0.9 * 0.93] * 100) == []  # and no class shares recorded to sharpen it


def test_reset_allows_a_new_notice_and_unknown_values_say_nothing():
    monitor = SceneFitMonitor()
    monitor.reset(entry())
    assert len(feed(monitor, [0.5] * 60)) == 1
    assert feed(monitor, [0.5] * 60, t0=10.0) == []  # once per model and source
    monitor.reset(entry())
    assert len(feed(monitor, [0.5] * 60, t0=20.0)) == 1
    monitor.reset(entry())
    assert feed(monitor, [None] * 60, t0=30.0) == []  # the engine does not report confidence
    monitor.reset(entry(confidence=None))
    assert feed(monitor, [0.1] * 60, t0=40.0) == []  # the manifest does not record the validation mean
    assert expected_confidence(entry(confidence=None)) is None and expected_confidence(entry()) == 0.9


def test_between_the_two_ratios_the_painted_classes_decide():
    # 0.925 of the validation mean: what Tiny measures at full scale both indoors and on a 720p highway
    monitor = SceneFitMonitor()
    monitor.reset(entry(shares=VAL_SHARES))
    assert feed_shares(monitor, 0.9 * 0.925, STREET_SHARES) == []
    monitor.reset(entry(shares=VAL_SHARES))
    assert len(feed_shares(monitor, 0.9 * 0.925, INDOOR_SHARES)) == 1
    monitor.reset(entry(shares=None))  # no shares recorded: confidence alone, which is not low enough
    assert feed_shares(monitor, 0.9 * 0.925, INDOOR_SHARES) == []
    monitor.reset(entry(shares=VAL_SHARES))  # a wrong mix at a confidence near the validation mean: nothing
    assert feed_shares(monitor, 0.9 * 0.97, INDOOR_SHARES) == []


def feed_shares(monitor: SceneFitMonitor, confidence: float, shares: dict, frames: int = 60, fps: float = 10.0):
    return [t for t in (monitor.feed(i / fps, confidence, shares) for i in range(frames)) if t]


def test_slow_devices_still_get_the_notice():
    monitor = SceneFitMonitor()
    monitor.reset(entry())
    assert len(feed(monitor, [0.5] * 10, fps=1.0)) == 1  # one segmented frame a second


def test_a_street_model_unsure_indoors_suggests_the_installed_ade20k_model_before_a_download():
    street, small = entry("camvid"), entry("ade20k")
    small.name, small.variant = "ade-small", "small"
    broad = entry("ade20k")  # ade20k-tiny, the street model's own variant: preferred
    monitor = SceneFitMonitor()
    monitor.reset(street, [street, small, broad])
    assert monitor.switch_to == "ade20k-tiny"
    (_, text), = feed(monitor, [0.5] * 40)
    assert "switch to ade20k-tiny, the installed ADE20K model" in text and "download" not in text
    monitor.reset(street, [street])  # none installed: download one
    assert monitor.switch_to is None and "download an ADE20K model" in feed(monitor, [0.5] * 40)[0][1]
    monitor.reset(broad, [street, broad])  # an ADE20K model is never sent to another one
    assert monitor.switch_to is None


@pytest.mark.shared
def test_the_notice_link_switches_to_the_installed_ade20k_model(qtbot, make_window, videos, tmp_path,
                                                                 random_models_dir):
    models = Registry(tmp_path / "models")
    for source, name in ((Registry(), "camvid-tiny"), (Registry(random_models_dir), "ade20k-tiny")):
        models.add(source.get(name), source.verify(source.get(name)))
    window = make_window(models.dir, source=str(videos / "indoor-people-768x432.mp4"), model="camvid-tiny")
    qtbot.waitUntil(lambda: window.serving is not None and window.source_info is not None, timeout=30000)
    assert window.scene_fit.switch_to == "ade20k-tiny"
    window.show_notice("This model knows street scenes and is unsure about this one.")
    banner = window.banner.banners()[-1]
    assert banner.link.text().endswith(">Use ade20k-tiny</a>")
    banner.link.linkActivated.emit("Use ade20k-tiny")
    qtbot.waitUntil(lambda: window.serving is not None and window.serving.name == "ade20k-tiny", timeout=30000)
    assert window.banner.messages("scene") == [] and window.models_dialog is None


def test_ade20k_notice_does_not_send_the_user_to_ade20k():
    text = notice_text(entry("ade20k"))
    assert "150 classes" in text and "For indoor scenes download an ADE20K" not in text


# -- end to end: the real window, real models, the shared clips --------------------------------------------
def _models_with_confidence(tmp_path):
    """A copy of the shipped models; their manifest records the validation confidence the notice compares with."""
    out = tmp_path / "models"
    shutil.copytree(Registry().dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    for model in manifest["models"]:
        if model["name"] in ("camvid-tiny", "camvid-small", "camvid-base"):
            assert 0.5 < model["accuracy"]["confidence"] < 1.0, model["name"]
    return out


@pytest.mark.shared
@pytest.mark.parametrize("scale", ["full", "half"])
def test_indoor_clip_through_camvid_raises_the_notice(qtbot, make_window, videos, tmp_path, scale):
    window = make_window(_models_with_confidence(tmp_path), source=str(videos / "indoor-people-768x432.mp4"),
                         model="camvid-tiny", scale=scale)
    qtbot.waitUntil(lambda: bool(window.notices), timeout=30000)
    assert "street scenes" in window.notices[0]
    assert any(not b.error and "Models > Download" in b.text() for b in window.banner.banners())


@pytest.mark.shared
@pytest.mark.parametrize("clip,scale", [("dashcam-highway-960x540.mp4", "full"), ("dashcam-highway-960x540.mp4", "half"),
                                        ("highway-1280x720-short.mp4", "full")])
def test_street_footage_raises_no_notice(qtbot, make_window, videos, tmp_path, clip, scale):
    window = make_window(_models_with_confidence(tmp_path), source=str(videos / clip),
                         model="camvid-tiny", scale=scale)
    wait_result(qtbot, window, lambda result: result.stats.frames_processed >= 40, timeout=60000)
    assert window.notices == []
