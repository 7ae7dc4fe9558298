"""Shipping the mean of several runs' weights (a model soup) and recording one held-out
figure per unseen drive with their mean (training.unseen_drives)."""
from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from engine.cli import run_command
from engine.errors import StudioError

pytestmark = [pytest.mark.torch, pytest.mark.shared]


def _train(out: Path, camvid: Path, init: Path | None, seed: int, drive: str) -> Path:
    args = ["train", "--variant", "tiny", "--data", str(camvid), "--out", str(out), "--epochs", "1", "--batch", "2",
            "--crop", "64x96", "--limit", "2", "--val-limit", "1", "--eval-every", "1", "--warmup-iters", "1",
            "--threads", "1", "--no-progress", "--holdout-drive", drive, "--lr", "1e-2", "--seed", str(seed)]
    assert run_command(args + (["--init", str(init)] if init else [])) == 0
    return out


@pytest.fixture(scope="module")
def runs(shared_dir, tmp_path_factory) -> dict[str, Path]:
    """Two seeds of one recipe holding out 0001TP, one run holding out 0006R0 (all from the
    ADE20K Tiny), and one from scratch (another start)."""
    pytest.importorskip("torch")
    camvid, ade = shared_dir / "datasets" / "camvid", shared_dir / "reference" / "topformer-tiny-ade20k.pth"
    root = tmp_path_factory.mktemp("soup")
    return {"a": _train(root / "a", camvid, ade, 0, "0001TP"), "b": _train(root / "b", camvid, ade, 1, "0001TP"),
            "c": _train(root / "c", camvid, ade, 0, "0006R0"), "scratch": _train(root / "s", camvid, None, 0, "0001TP")}


def test_a_soup_is_the_mean_of_the_runs_weights(runs):
    import torch

    from engine.training.run_weights import load_run_weights

    a, b = (torch.load(runs[k] / "last.pth", weights_only=False)["ema"]["state"] for k in "ab")
    moved = [k for k, v in a.items() if v.is_floating_point() and not torch.equal(v, b[k])]
    assert moved  # different seeds ended apart, so the mean is a real test
    model, _, cfg = load_run_weights(f"{runs['a']},{runs['b']}", "last.pth")
    for k, v in model.state_dict().items():
        expected = (a[k] + b[k]) / 2 if a[k].is_floating_point() else a[k]
        assert torch.allclose(v, expected, atol=1e-6), k
    assert cfg["seed"] == 0
    with pytest.raises(StudioError, match="their init differs .* a soup needs runs from one start"):
        load_run_weights(f"{runs['a']},{runs['scratch']}", "last.pth")
    with pytest.raises(StudioError, match="appears twice"):
        load_run_weights(f"{runs['a']},{runs['a']}", "last.pth")


def test_ship_a_soup_with_one_selection_run_per_drive(runs, shared_dir, tmp_path, capsys):
    from engine.jobs.evaluate import evaluate_model
    from engine.models.registry import ModelEntry, Registry

    camvid, models = shared_dir / "datasets" / "camvid", tmp_path / "models"
    soup = f"{runs['a']},{runs['b']}"
    args = ["train", "--export-only", soup, "--checkpoint", "last.pth", "--name", "souped", "--data", str(camvid),
            "--models-dir", str(models), "--selection-run", soup, "--selection-run", str(runs["c"])]
    assert run_command(args) == 0
    entry = Registry(models).get("souped")
    training = entry.training
    assert training["run"] == "a + b" and training["soup"]["runs"] == [str(runs["a"]), str(runs["b"])]
    assert training["weights"] == "mean of 2 runs' ema" and "mean of 2 runs' ema weights" in entry.notes
    assert "--export-only" in entry.made_by and soup in entry.made_by
    # One figure per drive, each measured on the weights as shipped; the soup's equals eval of the model
    # itself on 0001TP (the same weights: the shipped soup is its own selection here).
    unseen = training["unseen_drives"]
    assert set(unseen["drives"]) == {"0001TP", "0006R0"} and list(unseen["runs"]["0001TP"]) == ["a + b"]
    held = evaluate_model("souped", camvid, "train,val", models_dir=models, drives=["0001TP"])
    assert unseen["drives"]["0001TP"] == round(held.metrics["miou"], 6) == training["selection"]["last"]["miou_holdout"]
    assert unseen["mean"] == pytest.approx(sum(unseen["drives"].values()) / 2, abs=1e-6)
    # The unseen figure the app shows: the model's own held-out eval wins, else the mean of the drives.
    assert entry.unseen_drive_miou[1] == "0001TP" and entry.unseen_drive_miou[2] is False
    refit = ModelEntry.from_dict({**asdict(entry), "accuracy": {k: v for k, v in entry.accuracy.items() if k != "holdout"}})
    assert refit.unseen_drive_miou == (unseen["mean"], "0001TP+0006R0", True)
    assert refit.unseen_text() == f"unseen drives 0001TP, 0006R0: mean mIoU {100 * unseen['mean']:.1f} (estimate)"
    # Two seeds of one drive: each measured, their mean is the drive's figure.
    seeds = args[:-4] + ["--name", "x", "--selection-run", str(runs["a"]), "--selection-run", str(runs["b"]),
                         "--selection-run", str(runs["c"])]
    assert run_command(seeds) == 0
    unseen = Registry(models).get("x").training["unseen_drives"]
    by_run = unseen["runs"]["0001TP"]
    assert list(by_run) == ["a", "b"] and by_run["a"] != by_run["b"]
    assert unseen["drives"]["0001TP"] == pytest.approx((by_run["a"] + by_run["b"]) / 2, abs=1e-6)
    assert unseen["mean"] == pytest.approx((unseen["drives"]["0001TP"] + unseen["drives"]["0006R0"]) / 2, abs=1e-6)
    # One-line errors, nothing more installed.
    capsys.readouterr()
    twice = args[:-4] + ["--name", "z", "--selection-run", str(runs["a"]), "--selection-run", str(runs["a"])]
    assert run_command(twice) == 2
    mixed = ["train", "--export-only", f"{runs['a']},{runs['c']}", "--checkpoint", "last.pth", "--name", "y",
             "--data", str(camvid), "--models-dir", str(models), "--selection-run", f"{runs['a']},{runs['c']}"]
    assert run_command(mixed) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "each run once, not a twice" in err[0] and "their holdout_drive differs" in err[1]
    assert "a soup needs runs trained on the same frames" in err[1]
    # Another run of the same folder name would overwrite a's figure in unseen_drives.runs.
    namesake = tmp_path / "elsewhere" / "a"
    shutil.copytree(runs["a"], namesake)
    same_name = args[:-4] + ["--name", "w", "--selection-run", str(runs["a"]), "--selection-run", str(namesake)]
    assert run_command(same_name) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "two runs named a in different folders" in err[0] and "rename one" in err[0]
    assert Registry(models).names() == ["souped", "x"]
