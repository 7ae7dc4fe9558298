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
from engine.jobs.evaluate import confusion_matrix, metrics_from_confusion

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


def test_evaluate_module_does_not_import_torch_nor_training():
    code = ("import sys, engine.jobs.evaluate, engine.cli.eval_cmd, engine.models.datasets; "
            "print('torch' in sys.modules, 'engine.training' in sys.modules, 'tqdm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False False"


def _imported_modules(path: Path) -> set[str]:
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_only_the_cli_draws_progress_bars():
    """The engine reports progress through callbacks (issue 12): evaluate and the trainer
    import no tqdm, and evaluate reaches no training module, not even lazily."""
    for rel in ("engine/jobs/evaluate.py", "engine/training/trainer.py", "engine/training/data.py",
                "engine/models/datasets.py"):
        mods = _imported_modules(REPO / rel)
        assert not any(m.split(".")[0] == "tqdm" for m in mods), rel
    mods = _imported_modules(REPO / "engine" / "jobs" / "evaluate.py")
    assert not any("training" in m for m in mods), mods
    assert "tqdm" in _imported_modules(REPO / "engine" / "cli" / "eval_cmd.py")


# ----------------------------------------------------------------- drives

def test_drive_of_frame_names():
    from engine.models.datasets import NO_DRIVE, drive_of

    assert drive_of("0001TP_006690") == "0001TP"
    assert drive_of("0016E5_07959") == "0016E5"
    assert drive_of("Seq05VD_f00000") == "Seq05VD"
    assert drive_of("frame7") == NO_DRIVE and drive_of("_x") == NO_DRIVE


def _drive_dataset(root: Path, frames: dict[str, list[str]], size=(36, 48)) -> Path:
    import cv2

    rng = np.random.default_rng(0)
    for split, names in frames.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for n in names:
            cv2.imwrite(str(root / "images" / split / f"{n}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
            cv2.imwrite(str(root / "labels" / split / f"{n}.png"), rng.integers(0, 12, size, dtype=np.uint8))
    return root


def test_select_samples_by_split_and_drive(tmp_path):
    from engine.models.datasets import select_samples
    from engine.errors import StudioError

    root = _drive_dataset(tmp_path / "ds", {"train": ["A1_0", "A1_1", "B2_0"], "val": ["C3_0", "A1_9"]})
    assert [s.name for s in select_samples(root, "train,val")] == ["A1_0", "A1_1", "B2_0", "A1_9", "C3_0"]
    held = select_samples(root, ["train", "val"], drives=["A1"])
    assert [s.name for s in held] == ["A1_0", "A1_1", "A1_9"]
    rest = select_samples(root, "train,val", exclude_drives=["A1"])
    assert [s.name for s in rest] == ["B2_0", "C3_0"]
    assert {s.name for s in held} | {s.name for s in rest} == {s.name for s in select_samples(root, "train,val")}
    with pytest.raises(StudioError, match="drive ZZ not in"):
        select_samples(root, "train", drives=["ZZ"])
    with pytest.raises(StudioError, match="excluded drive C3"):
        select_samples(root, "train", exclude_drives=["C3"])
    with pytest.raises(StudioError, match="no frames left"):
        select_samples(root, "val", exclude_drives=["A1", "C3"])


@pytest.mark.shared
def test_eval_per_drive_adds_up_and_matches_single_drive_runs(camvid, tmp_path, capsys):
    """Two frames of each CamVid drive in one folder: the per-drive figures equal those of
    evaluating each drive alone, the pixels add up, and the mixed mIoU is not their mean."""
    import shutil

    from engine.jobs.evaluate import evaluate_model, format_report

    root = tmp_path / "mixed"
    for sub in ("images/val", "labels/val"):
        (root / sub).mkdir(parents=True)
    picks = {"0001TP": "train", "0006R0": "train", "0016E5": "val"}
    for drive, split in picks.items():
        names = sorted(p.stem for p in (camvid / "images" / split).glob(f"{drive}_*"))[:2]
        for n in names:
            shutil.copy(camvid / "images" / split / f"{n}.jpg", root / "images" / "val")
            shutil.copy(camvid / "labels" / split / f"{n}.png", root / "labels" / "val")
    res = evaluate_model("camvid-tiny", root, "val")
    assert list(res.per_drive) == ["0001TP", "0006R0", "0016E5"]
    assert all(d["images"] == 2 for d in res.per_drive.values())
    assert sum(d["pixels"] for d in res.per_drive.values()) == res.metrics["pixels"]
    for drive, m in res.per_drive.items():
        alone = evaluate_model("camvid-tiny", root, "val", drives=[drive])
        assert alone.images == 2 and alone.metrics["miou"] == pytest.approx(m["miou"], abs=1e-12)
        assert list(alone.per_drive) == [drive]
    mean_of_drives = np.mean([d["miou"] for d in res.per_drive.values()])
    assert res.metrics["miou"] != pytest.approx(mean_of_drives, abs=1e-6)
    table = format_report(res).splitlines()
    assert table[1].split() == ["all", "0001TP", "0006R0", "0016E5"]
    assert table[2].split() == ["images", "6", "2", "2", "2"]
    assert run_command(["eval", "--model", "camvid-tiny", "--data", str(root), "--drive", "0006R0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == 2 and list(out["per_drive"]) == ["0006R0"]
    assert out["per_drive"]["0006R0"]["miou"] == pytest.approx(res.per_drive["0006R0"]["miou"], abs=1e-12)
    assert run_command(["eval", "--model", "camvid-tiny", "--data", str(root), "--drive", "0009XX"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0009XX" in err[0]


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
def test_eval_cli_unknown_model(camvid, tmp_path, capsys):
    assert run_command(["eval", "--model", "no-such-model", "--models-dir", str(tmp_path),
                        "--data", str(camvid)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-model" in err[0]


def _shipped_camvid_models() -> list[str]:
    manifest = json.loads((REPO / "models" / "manifest.json").read_text())
    return [m["name"] for m in manifest["models"] if m["dataset"] == "camvid" and not m["name"].endswith("-int8")]


def test_default_model_is_shipped():
    assert "camvid-tiny" in _shipped_camvid_models()


@pytest.mark.shared
@pytest.mark.parametrize("name", _shipped_camvid_models())
def test_shipped_model_reproduces_recorded_accuracy(name, camvid, capsys):
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
    assert run_command(["eval", "--model", name, "--data", str(camvid),
                        "--split", "val", "--limit", str(check["images"]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["images"] == check["images"] == 10
    assert out["miou"] == pytest.approx(check["miou"], abs=5e-4)
    assert out["pixel_acc"] == pytest.approx(check["pixel_acc"], abs=5e-4)
