"""ONNX export (in-graph pre/post-processing) and the ONNX Runtime Segmenter."""
from __future__ import annotations

import glob

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from engine.checkpoint import load_model  # noqa: E402
from engine.errors import StudioError  # noqa: E402
from engine.export import labels_from_logits  # noqa: E402
from engine.registry import Registry  # noqa: E402
from engine.segmenter import Segmenter  # noqa: E402
from engine.topformer import MEAN_RGB, STD_RGB  # noqa: E402

pytestmark = [pytest.mark.torch]


def torch_labels(model, frame_bgr: np.ndarray, in_hw, out_hw) -> np.ndarray:
    """The official pipeline in PyTorch: resize, normalise, logits, bilinear upsample, argmax."""
    x = cv2.resize(frame_bgr, (in_hw[1], in_hw[0]), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].astype(np.float32)
    x = (x - np.array(MEAN_RGB, np.float32)) / np.array(STD_RGB, np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])
        up = F.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)
    return up.argmax(1)[0].numpy().astype(np.uint8)


def test_boundary_upsample_equals_full_upsample():
    gen = torch.Generator().manual_seed(0)
    for (h, w), (oh, ow) in [((7, 9), (56, 72)), ((12, 20), (90, 161)), ((5, 5), (5, 5))]:
        coarse = torch.randn(1, 6, h, w, generator=gen)
        logits = F.interpolate(coarse, scale_factor=2, mode="nearest")  # plateaus + boundaries
        full = F.interpolate(logits, size=(oh, ow), mode="bilinear", align_corners=False).argmax(1)[0]
        fast = labels_from_logits(logits, torch.tensor([oh, ow]))
        assert torch.equal(full.to(torch.uint8), fast)


@pytest.mark.shared
def test_onnx_matches_pytorch_on_real_images(shared_dir, random_models_dir):
    model, _ = load_model(shared_dir / "reference" / "topformer-tiny-ade20k.pth")
    seg = Segmenter.load("ade20k-tiny", random_models_dir)
    images = sorted(glob.glob(str(shared_dir / "datasets" / "camvid" / "images" / "val" / "*.jpg")))[:4]
    assert images
    for in_hw in [(352, 480), (224, 288)]:  # two input sizes; 224x288 is not a multiple of 64
        agree = total = 0
        for path in images:
            frame = cv2.imread(path)
            ours = seg.run(seg.prepare(frame, in_hw), frame.shape[:2])  # the graph, labels at image size
            ref = torch_labels(model, frame, in_hw, frame.shape[:2])
            assert ours.shape == frame.shape[:2] and ours.dtype == np.uint8
            agree += int((ours == ref).sum())
            total += ref.size
        assert agree / total >= 0.999, f"{in_hw}: {agree / total:.5f}"


@pytest.mark.shared
def test_real_ade20k_weights_pixel_accuracy(shared_dir, random_models_dir):
    """Official test resize: short side 512, sides rounded to multiples of 32, labels at image size."""
    seg = Segmenter.load("ade20k-tiny", random_models_dir)
    correct = valid = 0
    for jpg in sorted((shared_dir / "datasets" / "ade20k" / "samples").glob("*.jpg")):
        image = cv2.imread(str(jpg))
        gt = cv2.imread(str(jpg.with_suffix(".png")), cv2.IMREAD_UNCHANGED).astype(np.int64) - 1  # 0 = void
        h, w = image.shape[:2]
        factor = 512 / min(h, w)
        if max(h, w) * factor > 2048:
            factor = 2048 / max(h, w)
        size = (int(round(h * factor / 32)) * 32, int(round(w * factor / 32)) * 32)
        pred = seg.segment(image, size=size).labels
        mask = gt >= 0
        correct += int((pred[mask] == gt[mask]).sum())
        valid += int(mask.sum())
    accuracy = correct / valid
    assert accuracy >= 0.60, accuracy


@pytest.mark.shared
def test_segmenter_full_and_half(random_models_dir, videos):
    seg = Segmenter.load("tiny-random", random_models_dir)
    cap = cv2.VideoCapture(str(videos / "highway-1280x720-short.mp4"))
    ok, frame = cap.read()
    cap.release()
    assert ok
    assert seg.input_size(frame.shape[:2], "full") == (704, 1280)
    assert seg.input_size(frame.shape[:2], "half") == (352, 640)
    for scale in ("full", "half"):
        labels = seg.segment(frame, scale).labels
        assert labels.shape == (720, 1280) and labels.dtype == np.uint8
        assert labels.max() < seg.num_classes
    gray = seg.segment(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), "half").labels
    assert gray.shape == (720, 1280)
    # half: labels computed at input resolution, then scaled to the frame (nearest)
    assert seg.output_size((352, 640), (720, 1280)) == (352, 640)
    assert seg.output_size((704, 1280), (720, 1280)) == (720, 1280)
    with pytest.raises(StudioError, match="unknown scale"):
        seg.segment(frame, "quarter")


@pytest.mark.shared
@pytest.mark.shared
def test_inference_can_be_cancelled_from_another_thread(random_models_dir):
    from engine.segmenter import CancelToken, InferenceCancelled

    seg = Segmenter.load("base-random", random_models_dir)
    token = CancelToken()
    token.cancel()
    with pytest.raises(InferenceCancelled):
        seg.segment(np.zeros((720, 1280, 3), np.uint8), "full", cancel=token)
    assert seg.segment(np.zeros((64, 64, 3), np.uint8), cancel=CancelToken()).labels.shape == (64, 64)


@pytest.mark.shared
def test_segmenter_rejects_missing_and_damaged_models(models_copy):
    with pytest.raises(StudioError, match="no model named 'nope'"):
        Segmenter.load("nope", models_copy)
    registry = Registry(models_copy)
    path = registry.onnx_path(registry.get("tiny-random"))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(StudioError, match="checksum"):
        Segmenter.load("tiny-random", models_copy)
    path.unlink()
    with pytest.raises(StudioError, match="missing"):
        Segmenter.load("tiny-random", models_copy)
