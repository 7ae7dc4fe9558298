"""--class-bias: per-class logit offsets put into the shipped classifier's bias, recorded and
measured alike on the selection run."""
from __future__ import annotations

import numpy as np
import pytest

from engine.cli import run_command
from engine.errors import StudioError

pytestmark = [pytest.mark.torch]

CLASSES = ("sky", "building", "pole", "road", "sign_symbol")


def test_specs_parse_to_offsets_and_back_to_flags():
    pytest.importorskip("torch")
    from engine.training.class_bias import class_bias_flags, parse_class_bias

    offsets = parse_class_bias(["pole,sign_symbol=0.5", "sky=-0.25", "road=0"], CLASSES)
    assert offsets == {"pole": 0.5, "sign_symbol": 0.5, "sky": -0.25}  # a zero offset is no offset
    assert class_bias_flags(offsets) == " --class-bias pole,sign_symbol=0.5 --class-bias sky=-0.25"
    assert parse_class_bias(None, CLASSES) == {} and class_bias_flags({}) == ""
    for bad, why in (("pole", "expected CLASS"), ("pole=x", "expected CLASS"), ("=0.5", "expected CLASS"),
                     ("pole=nan", "expected CLASS"), ("tree=0.5", "no class 'tree'"), ("pole,pole=1", "given twice")):
        with pytest.raises(StudioError, match=why):
            parse_class_bias([bad], CLASSES)


@pytest.mark.shared
def test_shipped_model_carries_the_offsets_in_its_classifier_bias(camvid, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from engine.jobs.evaluate import evaluate_model
    from engine.models.registry import Registry

    out, models = tmp_path / "run", tmp_path / "models"
    args = ["train", "--variant", "tiny", "--data", str(camvid), "--out", str(out), "--epochs", "1", "--batch", "2",
            "--crop", "64x96", "--limit", "2", "--val-limit", "1", "--eval-every", "1", "--warmup-iters", "1",
            "--threads", "1", "--no-progress", "--holdout-drive", "0001TP"]
    assert run_command(args) == 0
    ship = ["train", "--export-only", str(out), "--checkpoint", "last.pth", "--eval-split", "val",
            "--models-dir", str(models), "--selection-run", str(out)]
    assert run_command(ship + ["--name", "plain"]) == 0
    assert run_command(ship + ["--name", "biased", "--class-bias", "pole,sign_symbol=0.5",
                               "--class-bias", "sky=-1"]) == 0

    def seg_bias(name: str) -> np.ndarray:
        graph = onnx.load(str(models / f"{name}.onnx")).graph
        return next(numpy_helper.to_array(t) for t in graph.initializer if t.name.endswith("conv_seg.bias"))

    names = list(Registry(models).get("plain").classes)
    expected = seg_bias("plain").copy()
    for cls, offset in (("pole", 0.5), ("sign_symbol", 0.5), ("sky", -1.0)):
        expected[names.index(cls)] += np.float32(offset)
    assert np.array_equal(seg_bias("biased"), expected)
    state = torch.load(out / "last.pth", weights_only=False)["ema"]["state"]
    assert np.array_equal(seg_bias("plain"), state["decode_head.conv_seg.bias"].numpy())

    entry = Registry(models).get("biased")
    assert entry.training["class_bias"]["offsets"] == {"pole": 0.5, "sign_symbol": 0.5, "sky": -1.0}
    assert entry.training["weights"].endswith("with logit offsets")
    assert entry.notes.endswith("weights of epoch 1 (1 of 1 epochs done); logit offsets "
                                "--class-bias pole,sign_symbol=0.5 --class-bias sky=-1")
    assert entry.training["class_bias"]["flags"] == "--class-bias pole,sign_symbol=0.5 --class-bias sky=-1"
    last = entry.training["selection"]["last"]
    assert "logit offsets (--class-bias pole,sign_symbol=0.5 --class-bias sky=-1)" in last["weights"]
    held = evaluate_model("biased", camvid, "train,val", models_dir=models, drives=["0001TP"])
    assert last["miou_holdout"] == round(held.metrics["miou"], 6)  # the selection run was shipped alike

    capsys.readouterr()
    assert run_command(["train", "--export-only", str(out), "--class-bias", "pole=0.5"]) == 2
    assert run_command(ship + ["--name", "x", "--class-bias", "person=0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "give --name NAME" in err[0] and "no class 'person'" in err[1]
    assert sorted(Registry(models).names()) == ["biased", "plain"]
