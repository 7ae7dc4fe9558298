"""Growing a Tiny into a Small or Base (engine/training/grow.py): the grown network computes
the Tiny's function, its copied channels still learn apart, and ``train --init`` uses it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.cli import run_command
from engine.errors import StudioError

pytestmark = [pytest.mark.torch]
torch = pytest.importorskip("torch")

from engine.models.topformer import create_model  # noqa: E402
from engine.training.grow import grow_state, widening  # noqa: E402


def _trained_looking_tiny(seed: int = 0):
    """A Tiny whose BatchNorms are not the identity, so a wrong copy of statistics shows."""
    torch.manual_seed(seed)
    model = create_model("tiny", 11)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return model.eval()


@pytest.mark.parametrize("target", ["small", "base"])
def test_grown_model_computes_the_tinys_logits(target):
    tiny = _trained_looking_tiny()
    grown = create_model(target, 11)
    grown.load_state_dict(grow_state(tiny.state_dict(), "tiny", target, 11), strict=True)
    grown.eval()
    x = torch.randn(2, 3, 224, 288)
    with torch.no_grad():
        ref, out = tiny(x), grown(x)
    assert out.shape == ref.shape
    assert float((out - ref).abs().max()) < 1e-4 * float(ref.abs().max()) + 1e-5
    # A grown model is really wider: most of its weights are not the Tiny's.
    assert sum(p.numel() for p in grown.parameters()) > 1.5 * sum(p.numel() for p in tiny.parameters())


def test_copies_learn_apart():
    """Copies of one channel get different gradients (random shares), so training uses the width."""
    tiny = _trained_looking_tiny(1)
    grown = create_model("small", 11)
    grown.load_state_dict(grow_state(tiny.state_dict(), "tiny", "small", 11))
    grown.eval()
    x = torch.randn(1, 3, 160, 192)
    grown(x).square().mean().backward()
    grad = grown.backbone.tpm.layer4.conv[0].c.weight.grad  # 48 -> 72 hidden: 24 copies
    weight = grown.backbone.tpm.layer4.conv[0].c.weight.detach()
    copies = [(i, j) for i in range(48, 72) for j in range(48) if torch.equal(weight[i], weight[j])]
    live = [(i, j) for i, j in copies if float(grad[j].abs().sum()) > 0]  # (random BNs leave some dead)
    assert live, "hidden channels 48.. should start as copies of live channels"
    assert all(not torch.allclose(grad[i], grad[j], rtol=1e-2, atol=0) for i, j in live)


def test_shares_of_copies_add_up_to_one():
    w = widening(10, 17, torch.Generator().manual_seed(3))
    assert list(w.index[:10]) == list(range(10)) and int(w.index.max()) < 10
    total = torch.zeros(10).index_add_(0, w.index, w.share)
    assert torch.allclose(total, torch.ones(10))


def test_only_tiny_grows():
    state = create_model("small", 11).state_dict()
    with pytest.raises(StudioError, match="cannot grow a TopFormer-small into a base"):
        grow_state(state, "small", "base", 11)


@pytest.mark.shared
def test_ade20k_tiny_grown_into_small_labels_a_street_frame_like_the_tiny(shared_dir):
    import cv2

    from engine.models.datasets import read_image_bgr, select_samples
    from engine.models.topformer import MEAN_RGB, STD_RGB
    from engine.training.pretrained import official_init

    ade_tiny = shared_dir / "reference" / "topformer-tiny-ade20k.pth"
    sample = select_samples(shared_dir / "datasets" / "camvid", "train", ["0006R0"])[0]
    rgb = cv2.resize(read_image_bgr(sample.image)[:, :, ::-1].astype(np.float32), (480, 352))
    x = torch.from_numpy(((rgb - MEAN_RGB) / STD_RGB).transpose(2, 0, 1)[None].astype(np.float32))
    labels = {}
    for variant in ("tiny", "small"):
        state, how = official_init(ade_tiny, variant)
        model = create_model(variant, 11)
        model.load_state_dict(state, strict=True)
        with torch.no_grad():
            labels[variant] = model.eval()(x).argmax(1).numpy()
    assert "grown tiny -> small" in how
    assert float((labels["tiny"] == labels["small"]).mean()) > 0.999


@pytest.mark.shared
def test_train_small_from_the_ade20k_tiny_records_the_growth(shared_dir, tmp_path):
    out = tmp_path / "grown"
    args = ["train", "--variant", "small", "--data", str(shared_dir / "datasets" / "camvid"), "--out", str(out),
            "--epochs", "1", "--batch", "2", "--crop", "64x96", "--limit", "2", "--val-limit", "1",
            "--eval-every", "1", "--warmup-iters", "1", "--threads", "1", "--no-progress", "--freeze-bn",
            "--init", str(shared_dir / "reference" / "topformer-tiny-ade20k.pth")]
    assert run_command(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["variant"] == "small"
    assert "grown tiny -> small (function-preserving widening)" in cfg["extra"]["init_from"]
