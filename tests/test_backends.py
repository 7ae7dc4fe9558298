"""Backends (ONNX Runtime, OpenVINO, auto), the logits-v2 graph's metadata check, per-frame confidence.

Real parts: the shipped models in models/ and frames of the shared highway clip.
OpenVINO tests skip with a visible reason when it is not installed (CI installs it: dev extra).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.run import postprocess
from engine.run.backends import create_backend, openvino_available
from engine.errors import StudioError
from engine.fileio import folder_lock
from engine.models.registry import Registry
from engine.run.segmenter import CancelToken, InferenceCancelled, Segmenter

REPO = Path(__file__).resolve().parent.parent
needs_openvino = pytest.mark.skipif(not openvino_available(), reason="needs OpenVINO: pip install '.[openvino]'")


def highway_frames(videos: Path, count: int = 3) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(videos / "highway-1280x720-short.mp4"))
    frames = []
    for i in range(count * 10):
        ok, frame = cap.read()
        if not ok:
            break
        if i % 10 == 0:
            frames.append(frame)
    cap.release()
    assert frames
    return frames


def test_shipped_models_are_logits_graphs_with_metadata():
    for name in ("camvid-tiny", "camvid-small", "camvid-base"):
        seg = Segmenter.load(name, backend="onnxruntime")
        assert not seg.legacy
        meta = seg.metadata
        assert meta["graph"] == "topformer-studio/logits-v2"
        assert meta["variant"] == seg.entry.variant and meta["dataset"] == "camvid"
        assert meta["classes"] == seg.class_names and meta["palette"] == seg.entry.palette
        assert meta["input_multiple"] == 32 and meta["normalisation"]["std_rgb"] == [58.395, 57.12, 57.375]
        logits = seg.logits(seg.prepare(np.zeros((64, 96, 3), np.uint8), (64, 96)))
        assert logits.shape == (11, 8, 12) and logits.dtype == np.float32


def _copy_with_entry(tmp_path: Path, **changes) -> Path:
    src = Registry()
    entry = src.get("camvid-tiny")
    for key, value in changes.items():
        setattr(entry, key, value)
    out = tmp_path / "models"
    Registry(out).add(entry, src.onnx_path(src.get("camvid-tiny")))
    return out


def test_reinstalling_a_model_keeps_its_place_in_the_manifest(tmp_path):
    src = Registry()
    onnx = src.onnx_path(src.get("camvid-tiny"))
    out = Registry(tmp_path / "models")
    for name in ("a", "b", "c"):
        out.add(replace(src.get("camvid-tiny"), name=name), onnx)
    out.add(replace(src.get("camvid-tiny"), name="b", notes="again"), onnx)
    assert out.names() == ["a", "b", "c"] and out.get("b").notes == "again"


def test_a_manifest_change_from_another_process_waits_instead_of_being_lost(tmp_path):
    """`models quantize` in a terminal while the app installs a download: each reads, changes
    and rewrites the manifest; without the folder lock the later writer drops the other's change."""
    src = Registry()
    out = Registry(tmp_path / "models")
    out.add(replace(src.get("camvid-tiny"), name="a"), src.onnx_path(src.get("camvid-tiny")))
    code = ("import sys; from engine.models.registry import Registry; print('ready', flush=True); "
            "Registry(sys.argv[1]).update_input('a', best_long_side=640)")
    with folder_lock(out.dir):  # this process is in the middle of its own change
        proc = subprocess.Popen([sys.executable, "-c", code, str(out.dir)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        assert proc.poll() is None, "the other process wrote while this one held the manifest"
        models = out._load()
        models[0]["notes"] = "changed meanwhile"
        out._write(models)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    entry = out.get("a")
    assert entry.notes == "changed meanwhile" and entry.best_long_side == 640


@pytest.mark.parametrize("changes, word", [({"variant": "base"}, "variant"),
                                           ({"classes": [f"c{i}" for i in range(11)]}, "classes"),
                                           ({"dataset": "cityscapes"}, "dataset")])
def test_metadata_mismatch_is_one_line_error(tmp_path, changes, word):
    models = _copy_with_entry(tmp_path, **changes)
    with pytest.raises(StudioError) as err:
        Segmenter.load("camvid-tiny", models, backend="onnxruntime")
    message = str(err.value)
    assert word in message and "manifest" in message and "\n" not in message


def test_confidence_is_mean_top_softmax_of_the_logits():
    seg = Segmenter.load("camvid-tiny", backend="onnxruntime")
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((11, 20, 30)).astype(np.float32) * 3
    e = np.exp(logits - logits.max(0))
    assert postprocess.confidence(logits) == pytest.approx(float((e.max(0) / e.sum(0)).mean()), rel=1e-5)
    result = seg.segment(np.zeros((128, 160, 3), np.uint8))
    assert 1 / 11 <= result.confidence <= 1.0


@pytest.mark.shared
def test_street_model_is_less_confident_indoors(videos):
    """camvid-tiny (street classes) on the shared clips: mean confidence lower indoors than on the highway."""
    seg = Segmenter.load("camvid-tiny", backend="onnxruntime")

    def mean_confidence(name: str) -> float:
        cap = cv2.VideoCapture(str(videos / name))
        values = []
        for i in range(21):
            ok, frame = cap.read()
            if ok and i % 10 == 0:
                values.append(seg.segment(frame, "half").confidence)
        cap.release()
        return float(np.mean(values))

    assert mean_confidence("indoor-people-768x432.mp4") < mean_confidence("highway-1280x720-short.mp4")


@pytest.mark.shared
def test_labels_equal_full_upsample_on_real_logits(videos):
    """On a real model's logits the boundary-only labels equal every plane upsampled + argmax."""
    seg = Segmenter.load("camvid-small", backend="onnxruntime")
    frame = highway_frames(videos, 1)[0]
    for in_hw in [(704, 1280), (352, 640)]:
        logits = seg.logits(seg.prepare(frame, in_hw))
        full = np.stack([cv2.resize(p, (1280, 720), interpolation=cv2.INTER_LINEAR) for p in logits]).argmax(0)
        fast = postprocess.labels_from_logits(logits, (720, 1280))
        assert (fast == full).mean() >= 0.99999  # OpenCV's float weights differ from torch's in the last bits


@needs_openvino
@pytest.mark.shared
def test_openvino_f32_labels_match_onnxruntime(videos):
    ort_seg = Segmenter.load("camvid-tiny", backend="onnxruntime")
    ov_seg = Segmenter.load("camvid-tiny", backend="openvino")
    assert ov_seg.backend_name == "openvino" and ov_seg.backend.precision == "f32"
    for scale in ("full", "half"):
        same = total = 0
        for frame in highway_frames(videos):
            a, b = ort_seg.segment(frame, scale).labels, ov_seg.segment(frame, scale).labels
            same += int((a == b).sum())
            total += a.size
        assert same / total >= 0.999, f"{scale}: {same / total:.5f}"
    assert len(ov_seg.backend._compiled) == 2  # one compiled model per input size, reused across frames


@needs_openvino
def test_openvino_cancel_and_auto_choice():
    seg = Segmenter.load("camvid-tiny", backend="openvino")
    token = CancelToken()
    token.cancel()
    with pytest.raises(InferenceCancelled):
        seg.segment(np.zeros((256, 320, 3), np.uint8), cancel=token)
    auto = Segmenter.load("camvid-tiny", backend="auto")
    labels = auto.segment(np.zeros((128, 160, 3), np.uint8)).labels
    assert labels.shape == (128, 160)
    (timings,) = auto.backend.timings.values()
    assert set(timings) == {"onnxruntime", "openvino"}
    chosen = next(iter(auto.backend.choice.values())).name
    assert chosen == min(timings, key=timings.get)


def test_backend_errors_are_one_line():
    path = Registry().onnx_path(Registry().get("camvid-tiny"))
    with pytest.raises(StudioError, match="unknown backend"):
        create_backend(path, "tensorrt")
    with pytest.raises(StudioError, match="needs --backend openvino"):
        create_backend(path, "onnxruntime", precision="bf16")
    if not openvino_available():
        with pytest.raises(StudioError, match="pip install"):
            create_backend(path, "openvino")
