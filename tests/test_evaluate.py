"""Evaluation: metric code against hand-computed confusion matrices, the eval CLI, and the
shipped models reproducing the accuracy recorded for them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import run_command
from engine.evaluate import confusion_matrix, metrics_from_confusion

REPO = Path(__file__).resolve().parent.parent


def test_confusion_matrix_by_hand():
    label = np.array([[0, 0, 1], [1, 2, 3]])  # 3 = void for 3 classes
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    conf = confusion_matrix(pred, label, 3)
    expected = np.array([
        [1, 1, 0],  # gt 0: one right, one called 1
        [0, 2, 0],  # gt 1: both right
        [1, 0, 0],  # gt 2: called 0
    ])
    assert conf.tolist() == expected.tolist()  # the void pixel (pred 2) is not counted
    m = metrics_from_confusion(conf, ["a", "b", "c"])
    # IoU a = 1 / (2 + 2 - 1) = 1/3; b = 2 / (2 + 3 - 2) = 2/3; c = 0 / (1 + 0 - 0) = 0
    assert m["per_class"] == pytest.approx({"a": 1 / 3, "b": 2 / 3, "c": 0.0})
    assert m["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert m["pixel_acc"] == pytest.approx(3 / 5)
    assert m["pixels"] == 5


def test_absent_class_is_left_out_of_the_mean():
    conf = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 0]])  # class 2 never labelled nor predicted
    m = metrics_from_confusion(conf)
    assert m["per_class"]["2"] is None
    assert m["miou"] == pytest.approx((3 / 4 + 4 / 5) / 2)
    # ...but a class that is only predicted (false positives) scores 0 and counts.
    conf2 = np.array([[3, 1, 1], [0, 4, 0], [0, 0, 0]])
    assert metrics_from_confusion(conf2)["per_class"]["2"] == 0.0


def test_void_and_out_of_range_labels_ignored_and_sums_add_up():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 12, (40, 50)).astype(np.uint8)
    pred = rng.integers(0, 11, (40, 50)).astype(np.uint8)
    conf = confusion_matrix(pred, label, 11)
    assert conf.sum() == (label < 11).sum()
    assert np.trace(conf) == ((pred == label) & (label < 11)).sum()
    # Accumulating per image equals one matrix over everything.
    halves = confusion_matrix(pred[:20], label[:20], 11) + confusion_matrix(pred[20:], label[20:], 11)
    assert (halves == conf).all()
    with pytest.raises(ValueError):
        confusion_matrix(pred[:10], label, 11)
    with pytest.raises(ValueError, match="class id 11"):
        confusion_matrix(np.full_like(label, 11), label, 11)


def test_perfect_prediction():
    label = np.array([0, 1, 2, 11, 2])
    m = metrics_from_confusion(confusion_matrix(np.array([0, 1, 2, 0, 2]), label, 11))
    assert m["miou"] == 1.0 and m["pixel_acc"] == 1.0


def test_evaluate_module_does_not_import_torch():
    code = "import sys, engine.evaluate, engine.cli.eval_cmd, engine.training.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_eval_cli_missing_data_dir(tmp_path, capsys):
    assert run_command(["eval", "--model", "camvid-tiny", "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: dataset folder not found")


def test_eval_cli_empty_split_and_unknown_model(tmp_path, capsys):
    (tmp_path / "ds" / "images" / "val").mkdir(parents=True)
    (tmp_path / "ds" / "labels" / "val").mkdir(parents=True)
    assert run_command(["eval", "--model", "x", "--data", str(tmp_path / "ds")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert run_command(["eval", "--model", "no-such-model", "--models-dir", str(tmp_path / "m"),
                        "--data", str(REPO / "tests")]) == 2  # tests/ has no images/val: split error first
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


@pytest.mark.shared
def test_eval_cli_unknown_model(shared_dir, tmp_path, capsys):
    assert run_command(["eval", "--model", "no-such-model", "--models-dir", str(tmp_path),
                        "--data", str(shared_dir / "datasets" / "camvid")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-model" in err[0]


def _shipped_camvid_models() -> list[str]:
    manifest = json.loads((REPO / "models" / "manifest.json").read_text())
    return [m["name"] for m in manifest["models"] if m["dataset"] == "camvid" and not m["name"].endswith("-int8")]


def test_default_model_is_shipped():
    assert "camvid-tiny" in _shipped_camvid_models()


@pytest.mark.shared
@pytest.mark.parametrize("name", _shipped_camvid_models())
def test_shipped_model_reproduces_recorded_accuracy(name, shared_dir, capsys):
    """Every bundled model gives, through the app's Segmenter, the accuracy recorded for it
    when it was shipped: on the first 10 val images (affordable in CI; the full-val numbers,
    also in the manifest, reproduce the same way with `eval` and no --limit)."""
    manifest = json.loads((REPO / "models" / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["name"] == name)
    acc = entry["accuracy"]
    assert acc["split"] == "val" and acc["images"] == 101 and acc["miou"] > 0.5
    assert entry["made_by"].startswith("python main.py train ") and acc["epochs"] > 0
    assert entry["training"]["epochs_done"] > 0 and entry["training"]["train_s"] > 0
    check = acc["check"]
    assert run_command(["eval", "--model", name, "--data", str(shared_dir / "datasets" / "camvid"),
                        "--split", "val", "--limit", str(check["images"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == check["images"] == 10
    assert out["miou"] == pytest.approx(check["miou"], abs=5e-4)
    assert out["pixel_acc"] == pytest.approx(check["pixel_acc"], abs=5e-4)
