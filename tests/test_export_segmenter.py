"""ONNX export (network + in-graph normalisation, logits out) and the Segmenter's exact labels."""
from __future__ import annotations

import glob

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from engine.models.checkpoint import load_model  # noqa: E402
from engine.errors import StudioError  # noqa: E402
from engine.run.postprocess import labels_from_logits  # noqa: E402
from engine.models.registry import Registry  # noqa: E402
from engine.run.segmenter import Segmenter  # noqa: E402
from engine.models.topformer import MEAN_RGB, STD_RGB  # noqa: E402

pytestmark = [pytest.mark.torch]


def torch_labels(model, frame_bgr: np.ndarray, in_hw, out_hw) -> np.ndarray:
    """The official pipeline in PyTorch: resize, normalise, logits, bilinear upsample, argmax."""
    x = cv2.resize(frame_bgr, (in_hw[1], in_hw[0]), interpolation=cv2.INTER_LINEAR)[:, :, ::-1].astype(np.float32)
    x = (x - np.array(MEAN_RGB, np.float32)) / np.array(STD_RGB, np.float32)
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])
        up = F.interpolate(logits, size=out_hw, mode="bilinear", align_corners=False)
    return up.argmax(1)[0].numpy().astype(np.uint8)


@pytest.mark.parametrize("classes", [2, 6, 11, 150])
def test_boundary_upsample_equals_full_upsample(classes):
    """The numpy boundary-only labels equal torch's full bilinear upsample + argmax, pixel for pixel."""
    gen = torch.Generator().manual_seed(classes)
    sizes = [((7, 9), (56, 72)), ((12, 20), (90, 161)), ((5, 5), (5, 5)), ((10, 12), (7, 9)),
             ((22, 40), (176, 320)), ((23, 41), (180, 321)), ((44, 80), (720, 1280))]
    for (h, w), (oh, ow) in sizes:
        coarse = torch.randn(1, classes, (h + 1) // 2, (w + 1) // 2, generator=gen) * 3
        logits = F.interpolate(coarse, scale_factor=2, mode="nearest")[:, :, :h, :w].contiguous()  # plateaus + boundaries
        full = F.interpolate(logits, size=(oh, ow), mode="bilinear", align_corners=False).argmax(1)[0].numpy()
        fast = labels_from_logits(logits[0].numpy(), (oh, ow))
        assert fast.shape == (oh, ow)
        assert np.array_equal(full, fast), f"{(h, w)}->{(oh, ow)}: {(full != fast).sum()} pixels differ"


@pytest.mark.shared
def test_x8_path_equals_torch_on_real_logits(videos):
    """Half scale computes labels at exactly 8x the logits (postprocess.labels_x8): on the
    shipped models' real logits they equal torch's full upsample + argmax, contiguous."""
    from engine.run import postprocess

    cap = cv2.VideoCapture(str(videos / "dashcam-highway-960x540.mp4"))
    frames = [cap.read()[1] for _ in range(12)][::4]
    cap.release()
    for name in ("camvid-tiny", "camvid-base"):
        seg = Segmenter.load(name)
        for frame in frames:
            for scale in ("half", 0.25):
                in_hw = seg.input_size(frame.shape[:2], scale)
                logits = seg.logits(seg.prepare(frame, in_hw))
                assert in_hw == (8 * logits.shape[1], 8 * logits.shape[2])
                full = F.interpolate(torch.from_numpy(logits)[None], size=in_hw, mode="bilinear",
                                     align_corners=False).argmax(1)[0].numpy()
                fast, _ = postprocess.labels_and_confidence(logits, in_hw)
                assert fast.flags.c_contiguous and np.array_equal(full, fast), (name, scale)
                view, _ = postprocess.labels_and_confidence(logits, in_hw, contiguous=False)
                assert np.array_equal(view, fast)


def test_graph_is_the_network_with_metadata(tmp_path):
    """The export ends at conv_seg's logits, keeps the node name, and carries its metadata."""
    import onnx

    from engine.models.export import export_onnx
    from engine.models.graph import GRAPH_FORMAT, decode_metadata
    from engine.models.topformer import create_model

    model = create_model("tiny", 11).eval()
    path = export_onnx(model, tmp_path / "m.onnx", metadata={"name": "x", "dataset": "camvid"})
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["image"] and [o.name for o in proto.graph.output] == ["logits"]
    last = [n for n in proto.graph.node if n.output[0] == "logits"][0]
    assert last.op_type == "Conv" and "conv_seg" in last.name
    meta = decode_metadata({p.key: p.value for p in proto.metadata_props})
    assert meta["graph"] == GRAPH_FORMAT and meta["variant"] == "tiny" and meta["dataset"] == "camvid"
    assert len(meta["classes"]) == 11 and len(meta["palette"]) == 11 and meta["input_multiple"] == 32
    assert meta["normalisation"]["mean_rgb"] == list(MEAN_RGB)
    x = torch.randint(0, 256, (1, 64, 96, 3), dtype=torch.uint8)
    import onnxruntime as ort

    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    rgb = x.permute(0, 3, 1, 2).flip(1).float()
    with torch.no_grad():
        ref = model((rgb - torch.tensor(MEAN_RGB).view(1, 3, 1, 1)) / torch.tensor(STD_RGB).view(1, 3, 1, 1))
    assert out.shape == (1, 11, 8, 12)
    assert np.abs(out - ref.numpy()).max() < 1e-3


@pytest.mark.shared
def test_onnx_matches_pytorch_on_real_images(shared_dir, camvid, random_models_dir):
    model, _ = load_model(shared_dir / "reference" / "topformer-tiny-ade20k.pth")
    seg = Segmenter.load("ade20k-tiny", random_models_dir)
    images = sorted(glob.glob(str(camvid / "images" / "val" / "*.jpg")))[:4]
    assert images
    for in_hw in [(352, 480), (224, 288)]:  # two input sizes; 224x288 is not a multiple of 64
        agree = total = 0
        for path in images:
            frame = cv2.imread(path)
            ours = seg.run(seg.prepare(frame, in_hw), frame.shape[:2])  # graph + post-processing, labels at image size
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
        result = seg.segment(frame, scale)
        labels = result.labels
        assert labels.shape == (720, 1280) and labels.dtype == np.uint8
        assert labels.max() < seg.num_classes
        assert 1.0 / seg.num_classes <= result.confidence <= 1.0
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
    from engine.run.segmenter import CancelToken, InferenceCancelled

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

