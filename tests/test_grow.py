"""Growing a Tiny into a Small or Base, or a Small into a Base (engine/training/grow.py): the grown network computes
the Tiny's function, its copied channels stay near-copies under AdamW unless ``--grow-noise`` sets them apart,
and ``train --init`` uses it."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from engine.cli import run_command
from engine.errors import StudioError

pytestmark = [pytest.mark.torch]
torch = pytest.importorskip("torch")

from engine.models.topformer import create_model  # noqa: E402
from engine.training.grow import grow_state, widening  # noqa: E402


def _trained_looking_tiny(seed: int = 0, variant: str = "tiny"):
    """A Tiny (or ``variant``) whose BatchNorms are not the identity, so a wrong copy of statistics shows."""
    torch.manual_seed(seed)
    model = create_model(variant, 11)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return model.eval()


@pytest.mark.parametrize("source, target", [("tiny", "small"), ("tiny", "base"), ("small", "base")])
def test_grown_model_computes_the_sources_logits(source, target):
    tiny = _trained_looking_tiny(variant=source)
    grown = create_model(target, 11)
    grown.load_state_dict(grow_state(tiny.state_dict(), source, target, 11), strict=True)
    grown.eval()
    x = torch.randn(2, 3, 224, 288)
    with torch.no_grad():
        ref, out = tiny(x), grown(x)
    assert out.shape == ref.shape
    assert float((out - ref).abs().max()) < 1e-4 * float(ref.abs().max()) + 1e-5
    # A grown model is really wider: most of its weights are not the Tiny's.
    assert sum(p.numel() for p in grown.parameters()) > 1.5 * sum(p.numel() for p in tiny.parameters())


def test_growing_via_the_small_is_the_two_steps_and_another_layout_than_growing_directly():
    """A Tiny state meant to line up with a Base that grew from a grown Small (LwF's classifier,
    the blend start) must take the same two seeded steps: the direct growth computes the same
    function with its channels elsewhere."""
    state = _trained_looking_tiny(2).state_dict()
    via = grow_state(state, "tiny", "base", 11, via="small")
    steps = grow_state(grow_state(state, "tiny", "small", 11), "small", "base", 11)
    direct = grow_state(state, "tiny", "base", 11)
    assert all(torch.equal(via[k], steps[k]) for k in steps)
    key = "decode_head.conv_seg.weight"
    assert via[key].shape == direct[key].shape and not torch.allclose(via[key], direct[key])
    base = create_model("base", 11).eval()
    base.load_state_dict(via, strict=True)
    x = torch.randn(1, 3, 160, 192)
    with torch.no_grad():
        ref = _trained_looking_tiny(2)(x)
        assert float((base(x) - ref).abs().max()) < 1e-4 * float(ref.abs().max()) + 1e-5


def _copies_steps(noise: float, steps: int = 5) -> list[float]:
    """How far apart the steps of each live copy pair of a grown Small's layer-4 hidden channels
    are after a few optimiser steps: |step_i - step_j| / |step_i|."""
    tiny = _trained_looking_tiny(1)
    layout = grow_state(tiny.state_dict(), "tiny", "small", 11)["backbone.tpm.layer4.conv.0.c.weight"]
    pairs = [(i, j) for i in range(48, 72) for j in range(48) if torch.equal(layout[i], layout[j])]
    grown = create_model("small", 11)
    grown.load_state_dict(grow_state(tiny.state_dict(), "tiny", "small", 11, noise=noise))
    grown.eval()  # BatchNorm as --freeze-bn keeps it
    weight = grown.backbone.tpm.layer4.conv[0].c.weight
    start = weight.detach().clone()
    opt = torch.optim.AdamW(grown.parameters(), lr=1e-3, weight_decay=0.01)
    gen, live = torch.Generator().manual_seed(0), pairs
    for _ in range(steps):
        opt.zero_grad()
        grown(torch.randn(1, 3, 160, 192, generator=gen)).square().mean().backward()
        live = [(i, j) for i, j in live if float(weight.grad[j].abs().sum()) > 0]  # (random BNs leave some dead)
        opt.step()
    assert live, "hidden channels 48.. should start as copies of live channels"
    step = (weight.detach() - start).flatten(1)
    return [float((step[i] - step[j]).norm() / step[i].norm()) for i, j in live]


def test_copies_take_nearly_the_same_adamw_steps_unless_grow_noise_sets_them_apart():
    """Copies see the same input, so their outgoing weights take the same steps, and AdamW takes
    the share's scale out of their incoming gradients: the copies' steps differ by a few per cent
    and the extra width stays mostly unused (measured on real runs too: grow.py's doc).
    --grow-noise starts the copies apart, and their steps differ many times more."""
    plain, jittered = statistics.median(_copies_steps(0.0)), statistics.median(_copies_steps(0.1))
    assert plain < 0.06 and jittered > 5 * plain


def test_grow_noise_keeps_the_layout_and_jitters_only_copied_channels():
    state = _trained_looking_tiny(3).state_dict()
    plain = grow_state(state, "tiny", "small", 11)
    noisy = grow_state(state, "tiny", "small", 11, noise=0.1)
    assert all(torch.equal(a, b) for a, b in zip(noisy.values(), grow_state(state, "tiny", "small", 11, noise=0.1).values()))
    for key in ("backbone.tpm.stem.0.c.weight", "decode_head.conv_seg.weight"):  # no channel copied: untouched
        assert torch.equal(plain[key], noisy[key])
    key = "backbone.tpm.layer4.conv.0.c.weight"  # 48 -> 72 hidden channels, 24 of them copies
    changed = [i for i in range(72) if not torch.equal(plain[key][i], noisy[key][i])]
    assert 24 <= len(changed) < 72  # the copies and their originals; channels without a copy stay
    ratio = (noisy[key][changed] / plain[key][changed]).flatten()
    assert 0.05 < float(ratio.std()) < 0.15 and abs(float(ratio.mean()) - 1) < 0.05
    assert all(torch.equal(plain[k], noisy[k]) for k in plain if not k.endswith("weight") or plain[k].ndim != 4)


def test_grow_noise_is_recorded_and_refused_without_a_grown_start(tmp_path, capsys):
    from fake_camvid import check_recipe_flag, fake_camvid, quick_train_args

    tiny = tmp_path / "tiny.pth"
    torch.save({"model": _trained_looking_tiny(4).state_dict()}, tiny)
    cfg = check_recipe_flag(tmp_path, capsys, "--grow-noise", "0.1", "grow-noise 0.1", {
        "0.1": "--grow-noise: the run starts from scratch; it acts on an --init that is grown "
               "(a Tiny into a Small or Base)",
        "-0.1": "--grow-noise must be between 0 and 0.5 (e.g. 0.1), not -0.1",
        "nan": "--grow-noise must be between 0 and 0.5 (e.g. 0.1), not nan"},
        good_needs=("--variant", "small", "--freeze-bn", "--init", str(tiny)))
    assert cfg["grow_noise"] == 0.1 and "copies jittered x0.1" in cfg["extra"]["init_from"]
    args = quick_train_args(fake_camvid(tmp_path / "camvid2", n=2))
    assert run_command([*args, "--out", str(tmp_path / "same"), "--init", str(tiny), "--grow-noise", "0.1"]) == 2
    assert capsys.readouterr().err.strip() == f"error: --grow-noise: {tiny} is already a TopFormer-tiny; nothing is grown"
    assert not (tmp_path / "same").exists()


def test_shares_of_copies_add_up_to_one():
    w = widening(10, 17, torch.Generator().manual_seed(3))
    assert list(w.index[:10]) == list(range(10)) and int(w.index.max()) < 10
    total = torch.zeros(10).index_add_(0, w.index, w.share)
    assert torch.allclose(total, torch.ones(10))


def test_only_narrower_variants_grow():
    state = create_model("base", 11).state_dict()
    with pytest.raises(StudioError, match="cannot grow a TopFormer-base into a small"):
        grow_state(state, "base", "small", 11)


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


@pytest.mark.shared
def test_a_base_grown_from_a_small_run_records_it_and_blends_with_the_start_grown_alike(shared_dir, tmp_path):
    """Tiny -> Small -> Base: the Base run records ``grow_via`` so that its LwF classifier and
    the blend start (a Tiny) grow through the Small as its own weights did."""
    ade_tiny = str(shared_dir / "reference" / "topformer-tiny-ade20k.pth")
    common = ["--data", str(shared_dir / "datasets" / "camvid"), "--epochs", "1", "--batch", "2", "--crop", "64x96",
              "--limit", "2", "--val-limit", "1", "--eval-every", "1", "--warmup-iters", "1", "--threads", "1",
              "--no-progress", "--freeze-bn"]
    small, base = tmp_path / "small", tmp_path / "base"
    assert run_command(["train", "--variant", "small", "--init", ade_tiny, "--out", str(small), *common]) == 0
    assert run_command(["train", "--variant", "base", "--init", str(small / "last.pth"), "--out", str(base),
                        "--lwf-weight", "0.3", "--lwf-start", ade_tiny, *common]) == 0
    cfg = json.loads((base / "config.json").read_text())
    assert cfg["grow_via"] == "small"
    assert "grown small -> base (function-preserving widening)" in cfg["extra"]["init_from"]

    from engine.training.pretrained import TrainConfig, blend_with_init, init_weights
    trained = torch.load(base / "last.pth", weights_only=False)["model"]
    start = init_weights(Path(ade_tiny), TrainConfig.from_saved({**cfg, "extra": {}}))
    key = "decode_head.conv_seg.weight"
    direct = init_weights(Path(ade_tiny), TrainConfig.from_saved({**cfg, "extra": {}, "grow_via": None}))
    assert not torch.allclose(start[key], direct[key])
    blended = blend_with_init(trained, cfg, 0.5, ade_tiny)
    assert torch.allclose(blended[key], 0.5 * trained[key] + 0.5 * start[key])
