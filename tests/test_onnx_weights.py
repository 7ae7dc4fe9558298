"""Training can start from an installed model's ONNX file: its folded weights read back exactly."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import run_command
from engine.errors import StudioError

pytestmark = [pytest.mark.torch]
torch = pytest.importorskip("torch")

from engine.models.export import DeployGraph  # noqa: E402
from engine.models.topformer import create_model  # noqa: E402
from engine.training.onnx_weights import _check_same_logits, conv_order, onnx_state  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.mark.parametrize("name", ["camvid-tiny", "camvid-small", "camvid-base"])
def test_bundled_model_read_back_gives_its_logits(name):
    import onnxruntime as ort

    state, variant, classes = onnx_state(MODELS / f"{name}.onnx")
    assert (variant, classes) == (name.split("-")[1], 11)
    model = create_model(variant, classes)
    model.load_state_dict(state, strict=True)
    image = np.random.default_rng(3).integers(0, 256, (1, 224, 288, 3), dtype=np.uint8)  # not the built-in check's size
    with torch.no_grad():
        ours = DeployGraph(model.eval())(torch.from_numpy(image)).numpy()
    session = ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    theirs = session.run(None, {"image": image})[0]
    assert np.abs(ours - theirs).max() < 1e-3
    assert (ours.argmax(1) == theirs.argmax(1)).mean() > 0.999
    # Every BatchNorm follows a conv and only adds the folded bias.
    pairs = conv_order(model)
    assert sum(bn is not None for _, bn in pairs) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    bn = next(bn for _, bn in pairs if bn)
    assert torch.equal(state[f"{bn}.weight"], torch.ones_like(state[f"{bn}.weight"]))


def test_tiny_read_back_grows_into_a_small_with_its_logits():
    """Folded BatchNorms (weight 1, mean 0) grow like any others: the Small starts where the Tiny is."""
    from engine.training.grow import grow_state

    state, _, _ = onnx_state(MODELS / "camvid-tiny.onnx")
    tiny, small = create_model("tiny", 11), create_model("small", 11)
    tiny.load_state_dict(state, strict=True)
    small.load_state_dict(grow_state(state, "tiny", "small", 11), strict=True)
    x = torch.randn(1, 3, 160, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(tiny.eval()(x), small.eval()(x), atol=1e-4)


def test_misread_weights_and_other_files_are_refused(tmp_path):
    state, variant, classes = onnx_state(MODELS / "camvid-tiny.onnx")
    conv = next(c for c, bn in conv_order(create_model(variant, classes)) if bn)
    bad = dict(state, **{f"{conv}.weight": state[f"{conv}.weight"].flip(0)})
    with pytest.raises(StudioError, match="do not reproduce its output"):
        _check_same_logits(MODELS / "camvid-tiny.onnx", create_model(variant, classes), bad)
    with pytest.raises(StudioError, match="an INT8 copy"):
        onnx_state(MODELS / "camvid-tiny-int8.onnx")
    with pytest.raises(StudioError, match="no model file"):
        onnx_state(tmp_path / "gone.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(StudioError, match="not a readable ONNX file"):
        onnx_state(tmp_path / "junk.onnx")


@pytest.mark.shared
def test_train_small_grown_from_the_installed_tiny(shared_dir, tmp_path, capsys):
    """The shipped Tiny's ONNX grown into a Small (the start of the shipped Small's chain)."""
    out = tmp_path / "grown"
    args = ["train", "--variant", "small", "--data", str(shared_dir / "datasets" / "camvid"), "--out", str(out),
            "--epochs", "1", "--batch", "2", "--crop", "64x96", "--limit", "2", "--val-limit", "1",
            "--eval-every", "1", "--warmup-iters", "1", "--threads", "1", "--no-progress",
            "--init", str(MODELS / "camvid-tiny.onnx")]
    capsys.readouterr()
    assert run_command(args) == 2  # without --freeze-bn batch statistics would undo the folding
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "add --freeze-bn" in err[0] and not out.exists()
    assert run_command([*args, "--freeze-bn"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["extra"]["init_from"].endswith("(ONNX, BatchNorm folded); grown tiny -> small (function-preserving widening)")
    from engine.training.pretrained import blend_with_init
    from engine.training.run_weights import load_run_weights

    model, _, _ = load_run_weights(out, "last.pth", blend_init=0.5)  # blends with the ONNX start it came from
    assert model.variant == "small"
    trained = model.state_dict()
    with pytest.raises(StudioError, match="an ONNX start blends only with a run that started from an ONNX file"):
        blend_with_init(trained, {**cfg, "init": str(shared_dir / "reference" / "topformer-tiny-ade20k.pth")},
                        0.5, start=MODELS / "camvid-tiny.onnx")
