"""Training runs: a short real run, exact --resume, the CLI's one-line errors, held-out-drive
selection, shipping and reproduction by eval."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import run_command
from engine.models.registry import Registry
from fake_camvid import fake_camvid


def _small_args(data: Path, out: Path, epochs: int) -> list[str]:
    return ["train", "--variant", "tiny", "--data", str(data), "--out", str(out), "--epochs", str(epochs),
            "--batch", "4", "--crop", "96x128", "--limit", "8", "--val-limit", "2", "--eval-every", "1",
            "--warmup-iters", "2", "--lr", "1e-3", "--rare-crop", "0.5", "--threads", "1", "--no-progress"]


@pytest.mark.torch
@pytest.mark.shared
def test_train_resume_continues_exactly(camvid, tmp_path):
    """2 epochs straight == 1 epoch, interrupt, --resume 1 epoch: identical weights, EMA, optimizer."""
    torch = pytest.importorskip("torch")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_command(_small_args(camvid, straight, 2)) == 0
    for name in ("last.pth", "best.pth", "config.json", "log.jsonl"):
        assert (straight / name).is_file()
    log = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all(np.isfinite(r["loss"]) for r in log)
    assert all(0.0 <= r["miou"] <= 1.0 and "miou_ema" in r for r in log)

    from engine.training.trainer import TrainConfig, train

    cfg = json.loads((straight / "config.json").read_text())
    cfg.update(out=str(split), crop=tuple(cfg["crop"]), scale_range=tuple(cfg["scale_range"]))
    train(TrainConfig(**cfg), stop_after_epochs=1)  # "interrupted" after epoch 1
    assert torch.load(split / "last.pth", weights_only=False)["epoch"] == 1
    assert run_command(["train", "--out", str(split), "--resume", "--data", str(camvid), "--threads", "1",
                        "--no-progress"]) == 0
    a = torch.load(straight / "last.pth", weights_only=False)
    b = torch.load(split / "last.pth", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2 and a["iter"] == b["iter"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
        assert torch.equal(a["ema"]["state"][key], b["ema"]["state"][key]), key
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) for k in sa)
    # The resumed run logged the same validation numbers.
    log_b = [json.loads(line) for line in (split / "log.jsonl").read_text().splitlines()]
    assert [r["miou"] for r in log_b] == [r["miou"] for r in log]
    # And the weights really changed during training (not a no-op loop): compared with the
    # initialisation the trainer starts from (same seed), and the EMA is not the raw weights.
    from engine.training.trainer import TrainConfig as TC, build_model

    torch.manual_seed(0)
    init = build_model(TC(variant="tiny")).state_dict()
    floats = [k for k, v in init.items() if v.dtype.is_floating_point and "running" not in k]
    changed = sum(not torch.equal(init[k], a["model"][k]) for k in floats)
    assert changed > 0.9 * len(floats)
    assert b["ema"]["updates"] == 4
    assert any(not torch.equal(a["ema"]["state"][k], a["model"][k]) for k in floats)


@pytest.mark.torch
@pytest.mark.shared
def test_training_reduces_loss(camvid, tmp_path):
    """A few epochs on 4 images without colour jitter: the loss goes down."""
    pytest.importorskip("torch")
    from engine.training.trainer import TrainConfig, train

    cfg = TrainConfig(data=str(camvid), out=str(tmp_path / "r"), epochs=6, batch=4, crop=(96, 128), lr=2e-3,
                      warmup_iters=1, limit=4, val_limit=1, eval_every=1, threads=1, ema=0.0, drop_path=0.0,
                      scale_range=(1.0, 1.0))
    train(cfg)
    log = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"] * 0.9


def test_train_cli_user_errors(tmp_path, capsys):
    assert run_command(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: dataset folder not found")


@pytest.mark.torch
def test_resume_goes_on_with_the_runs_own_settings(tmp_path, capsys):
    """--resume without --data / --device / --threads / --workers / --amp continues the run as it
    was trained (a GPU run stays on the GPU, bfloat16 stays on); a moved dataset gets one clear
    line naming --data; settings given again replace the run's."""
    torch = pytest.importorskip("torch")
    data = fake_camvid(tmp_path / "ds", n=4, splits=("train",))
    fake_camvid(data, n=2, splits=("val",))
    out = tmp_path / "r"
    base = ["train", "--out", str(out), "--no-progress"]
    assert run_command(base + ["--data", str(data), "--variant", "tiny", "--epochs", "1", "--batch", "2",
                               "--crop", "32x64", "--eval-every", "1", "--threads", "1", "--workers", "2",
                               "--amp"]) == 0
    config = lambda: json.loads((out / "config.json").read_text())  # noqa: E731
    assert {k: config()[k] for k in ("threads", "workers", "amp", "device")} == {
        "threads": 1, "workers": 2, "amp": True, "device": "cpu"}

    moved = data.rename(tmp_path / "moved")
    capsys.readouterr()
    assert run_command(base + ["--resume", "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dataset folder" in err[0] and "--data" in err[0]
    assert run_command(base + ["--resume", "--epochs", "2", "--data", str(moved)]) == 0
    assert {k: config()[k] for k in ("threads", "workers", "amp", "device", "data", "epochs")} == {
        "threads": 1, "workers": 2, "amp": True, "device": "cpu", "data": str(moved), "epochs": 2}

    # A run trained on a GPU: resumed without --device it stays there, or says how to go on.
    ckpt = torch.load(out / "last.pth", weights_only=False)
    ckpt["config"]["device"] = "cuda"
    torch.save(ckpt, out / "last.pth")
    if not torch.cuda.is_available():
        capsys.readouterr()
        assert run_command(base + ["--resume", "--epochs", "3"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA device" in err[0] and "--device cpu" in err[0]
    assert run_command(base + ["--resume", "--epochs", "3", "--device", "cpu", "--threads", "2", "--no-amp"]) == 0
    assert {k: config()[k] for k in ("threads", "workers", "amp", "device", "epochs")} == {
        "threads": 2, "workers": 2, "amp": False, "device": "cpu", "epochs": 3}
    assert [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


@pytest.mark.torch
def test_resume_keeps_the_runs_recipe(tmp_path, capsys):
    """--resume continues a run with its own recipe: a recipe option given with a new value is one
    clear line and nothing trained (not silently ignored); the command that started the run,
    given again with --resume, goes on; the progress bar names the run's variant."""
    torch = pytest.importorskip("torch")
    data = fake_camvid(tmp_path / "ds", n=4, splits=("train",))
    fake_camvid(data, n=2, splits=("val",))
    out = tmp_path / "r"
    first = ["train", "--out", str(out), "--data", str(data), "--variant", "small", "--batch", "2",
             "--crop", "32x64", "--eval-every", "1", "--threads", "1", "--lr", "1e-3", "--rare-crop", "0.5"]
    assert run_command(first + ["--epochs", "1", "--no-progress"]) == 0
    for extra, said in ((["--variant", "base"], "--variant base (the run's small)"),
                        (["--lr", "2e-3", "--crop", "64x64"],
                         "--crop 64x64 (the run's 32x64); --lr 0.002 (the run's 0.001)"),
                        (["--recipe", "strong"], "--recipe strong (the run's none)")):
        capsys.readouterr()
        assert run_command(["train", "--out", str(out), "--resume", "--epochs", "2", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0] and "another --out" in err[0], err
    assert torch.load(out / "last.pth", weights_only=False)["epoch"] == 1
    capsys.readouterr()
    assert run_command(first + ["--epochs", "2", "--resume"]) == 0
    assert "small ep 2/2" in capsys.readouterr().err
    assert torch.load(out / "last.pth", weights_only=False)["epoch"] == 2


def test_modes_that_train_nothing_refuse_training_options(tmp_path, capsys):
    """--export-only, --holdout-estimate and --report train nothing: a recipe or run option given
    with them is one line and exit 2 (it used to be silently ignored), before anything is read or written."""
    models = tmp_path / "m"
    for mode, extra, said in ((["--export-only", str(tmp_path / "r"), "--name", "x"], ["--lr", "1e-4", "--rare-crop", "0.6"],
                               "--export-only trains nothing, so these training options would be ignored: --lr, --rare-crop"),
                              (["--export-only", str(tmp_path / "r"), "--name", "x", "--exposure-target", "100"],
                               ["--variant", "base", "--epochs", "3"], "ignored: --variant, --epochs:"),
                              (["--holdout-estimate", str(tmp_path / "r"), "--name", "x"], ["--exposure-target", "100"],
                               "--holdout-estimate trains nothing, so these training options would be ignored: --exposure-target"),
                              (["--report", str(tmp_path / "r")], ["--threads", "1"], "ignored: --threads")):
        capsys.readouterr()
        assert run_command(["train", *mode, "--models-dir", str(models), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0], err
    assert not models.exists()


@pytest.mark.torch
def test_train_cli_resume_without_run_and_empty_split(tmp_path, capsys):
    pytest.importorskip("torch")
    data = fake_camvid(tmp_path / "ds", n=3, splits=("train",))
    assert run_command(["train", "--export-only", str(tmp_path / "norun"), "--name", "x",
                        "--models-dir", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint" in err[0]
    assert not (tmp_path / "m").exists()
    assert run_command(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    # No val split in this folder: one clear line, exit 2.
    assert run_command(["train", "--data", str(data), "--out", str(tmp_path / "r2"), "--epochs", "1",
                        "--batch", "2", "--crop", "64x96", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no split 'val'" in err[0]


@pytest.mark.torch
@pytest.mark.shared
def test_ship_run_and_eval_cli_reproduce(camvid, tmp_path, capsys):
    """Export a (barely trained) run into a private models folder; eval --json reproduces
    the accuracy the manifest recorded, and the manifest holds command and epochs."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    run = tmp_path / "run"
    assert run_command(_small_args(camvid, run, 1) + ["--holdout-drive", "0001TP"]) == 0
    models = tmp_path / "models"
    from engine.jobs.evaluate import evaluate_model
    from engine.training.ship import ship_run

    info = ship_run(run, "camvid-test", models_dir=models, data=camvid, limit=2)
    manifest = json.loads((models / "manifest.json").read_text())
    (entry,) = manifest["models"]
    assert entry["name"] == "camvid-test" and entry["variant"] == "tiny" and entry["dataset"] == "camvid"
    assert entry["made_by"].startswith("python main.py train ") and "--epochs 1" in entry["made_by"]
    assert entry["made_by"].endswith(f" && python main.py train --export-only {run} --checkpoint best.pth --name camvid-test")
    assert entry["accuracy"]["epochs"] == 1 and entry["accuracy"]["split"] == "val"
    assert entry["classes"][0] == "sky" and len(entry["palette"]) == 11
    training = entry["training"]
    assert training["run"] == "run" and training["epochs_done"] == 1 and training["train_s"] > 0
    assert training["recipe"]["batch"] == 4
    capsys.readouterr()
    assert run_command(["eval", "--model", "camvid-test", "--models-dir", str(models), "--data", str(camvid),
                        "--limit", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"miou", "per_class", "pixel_acc"} <= set(out)
    assert out["images"] == 2 and len(out["per_class"]) == 11
    assert out["miou"] == pytest.approx(entry["accuracy"]["miou"], abs=1e-6) == pytest.approx(info["miou"], abs=1e-6)
    # A held-out run: the manifest says what it was selected on and measures that drive by eval.
    acc = entry["accuracy"]
    assert training["holdout_drive"] == "0001TP" and training["selected_on"] == "holdout 0001TP"
    assert training["recipe"]["loss"] == "ce" and training["recipe"]["photometric"] == "basic"
    assert "0001TP" not in training["train_frames"] and "without drive 0001TP" in entry["notes"]
    hold = acc["holdout"]
    assert hold["drive"] == "0001TP" and hold["images"] == 2 and hold["split"] == "train,val"
    again = evaluate_model("camvid-test", camvid, "train,val", models_dir=models, drives=["0001TP"], limit=2)
    assert again.metrics["miou"] == pytest.approx(hold["miou"], abs=1e-6) == pytest.approx(info["holdout_miou"], abs=1e-6)
    assert list(acc["per_drive"]) == ["0016E5"] and out["per_drive"]["0016E5"]["miou"] == pytest.approx(out["miou"])


def _holdout_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--variant", "tiny", "--data", str(data), "--out", str(out), "--epochs", "2",
            "--batch", "2", "--crop", "64x96", "--limit", "4", "--val-limit", "2", "--eval-every", "1",
            "--warmup-iters", "1", "--threads", "1", "--no-progress", "--holdout-drive", "0001TP", *extra]


@pytest.mark.torch
@pytest.mark.shared
def test_holdout_drive_training_selects_on_the_unseen_drive(camvid, tmp_path, capsys, shipped_models_copy):
    """--holdout-drive: no frame of that drive is trained on, the log has per-drive and
    held-out figures, best.pth is the best held-out score, the recipe is recorded."""
    torch = pytest.importorskip("torch")
    out = tmp_path / "hold"
    assert run_command(_holdout_args(camvid, out, "--recipe", "+ohem", "--ohem-min-kept", "500",
                                     "--ema", "0.9")) == 0
    stdout = capsys.readouterr().out
    assert "held-out 0001TP" in stdout and "per drive: 0001TP" in stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["holdout_drive"] == "0001TP" and cfg["train_splits"] == "train,val"
    assert "0001TP" not in cfg["extra"]["train_frames"] and sum(cfg["extra"]["train_frames"].values()) == 4
    assert cfg["recipe"] == "+ohem" and cfg["loss"] == "ohem" and cfg["photometric"] == "strong"
    assert cfg["scale_range"] == [0.5, 3.0] and cfg["ema"] == 0.9  # the flag overrides the recipe's 0
    assert cfg["ohem_min_kept"] == 500 and cfg["lr"] == 6e-4
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    for r in log:
        assert set(r["per_drive"]) == {"0001TP", "0016E5"}  # held-out frames + the mixed val split
        assert r["per_drive"]["0001TP"] == r["miou_holdout"] and r["per_drive"]["0016E5"] == r["miou"]
        assert r["select"] == "holdout 0001TP" and "miou_holdout_ema" in r
    scores = [(r[k], r["epoch"]) for r in log for k in ("miou_holdout", "miou_holdout_ema")]
    best = torch.load(out / "best.pth", weights_only=False)
    assert best["miou"] == max(s for s, _ in scores) and best["metric"] == "holdout 0001TP"
    assert set(best["per_drive"]) == {"0001TP", "0016E5"}
    assert log[-1]["best"]["miou"] == best["miou"]
    # The ablation table row of this run says the same.
    capsys.readouterr()
    assert run_command(["train", "--report", str(out)]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert len(table) == 3 and table[2].startswith(f"| `hold` | tiny | +ohem, warmup-iters 1, ohem-min-kept 500, ema 0.9 | 2/2 | held-out 0001TP | {best['miou'] * 100:.2f} (")
    assert run_command(["train", "--report", str(tmp_path / "nope")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    # A refit on every frame records this run's held-out figures (ship --selection-run).
    from engine.training.ship import selection_figures

    sel = selection_figures(out)
    assert sel["holdout_drive"] == "0001TP" and sel["best"]["miou_holdout"] == round(best["miou"], 6)
    assert sel["last"]["epoch"] == 2 and sel["last"]["miou_holdout"] == round(log[-1]["miou_holdout"], 6)
    assert sel["recipe"] == "+ohem, warmup-iters 1, ohem-min-kept 500, ema 0.9" and "--holdout-drive 0001TP" in sel["command"]
    # A model shipped without a held-out run gets this run as its held-out estimate (no export).
    before = Registry(shipped_models_copy).get("camvid-small")
    capsys.readouterr()
    assert run_command(["train", "--holdout-estimate", str(out), "--name", "camvid-small",
                        "--models-dir", str(shipped_models_copy)]) == 0
    assert "recorded for camvid-small: held-out 0001TP" in capsys.readouterr().out
    after = Registry(shipped_models_copy).get("camvid-small")
    estimate = after.training.pop("holdout_estimate")
    before.training.pop("holdout_estimate", None)  # the shipped entry may carry one already: it is replaced
    assert estimate == {**sel, "what": "the recipe of camvid-small run again with drive 0001TP held out (an estimate)"}
    assert after.training == before.training and after.accuracy == before.accuracy and after.sha256 == before.sha256
    assert run_command(["train", "--holdout-estimate", str(out), "--models-dir", str(shipped_models_copy)]) == 2
    # Re-planned on resume (--epochs 3): config.json and the report say so.
    assert run_command(["train", "--out", str(out), "--resume", "--epochs", "3", "--data", str(camvid),
                        "--threads", "1", "--no-progress"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["epochs"] == 3 and cfg["extra"]["epochs_changed"] == [{"at_epoch": 2, "from": 2, "to": 3}]
    assert "--holdout-drive 0001TP" in cfg["command"] and "--resume" in cfg["extra"]["resumed_with"]
    capsys.readouterr()
    assert run_command(["train", "--report", str(out)]) == 0
    assert "| 3/3 (planned 2) |" in capsys.readouterr().out


@pytest.mark.torch
@pytest.mark.shared
def test_holdout_drive_typo_is_one_line(camvid, tmp_path, capsys):
    pytest.importorskip("torch")
    assert run_command(_holdout_args(camvid, tmp_path / "r")[:-1] + ["0007XX"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0007XX" in err[0]
    assert not (tmp_path / "r").exists()


@pytest.mark.torch
def test_train_cli_progress_comes_from_callbacks(tmp_path, monkeypatch):
    """The trainer calls on_step once per iteration with the running totals."""
    pytest.importorskip("torch")
    from engine.training.trainer import TrainConfig, train

    root = fake_camvid(tmp_path / "ds", n=4, splits=("train",))
    fake_camvid(tmp_path / "ds2", n=2, splits=("val",))
    import shutil
    shutil.copytree(tmp_path / "ds2" / "images" / "val", root / "images" / "val")
    shutil.copytree(tmp_path / "ds2" / "labels" / "val", root / "labels" / "val")
    steps, lines = [], []
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "r"), epochs=2, batch=2, crop=(64, 96), warmup_iters=1,
                      eval_every=1, threads=1, ema=0.0)
    train(cfg, on_step=steps.append, on_log=lines.append)
    assert [s.iter for s in steps] == [1, 2, 3, 4] and {s.total for s in steps} == {4}
    assert [s.epoch for s in steps] == [1, 1, 2, 2] and all(np.isfinite(s.loss) for s in steps)
    assert len(lines) == 2 and lines[0].startswith("epoch 1:") and "per drive: -" in lines[0]


@pytest.mark.torch
def test_augmentation_threads_give_the_same_run(tmp_path):
    """--workers only changes speed: the crops, and so the weights, are the same."""
    torch = pytest.importorskip("torch")
    from engine.training.trainer import TrainConfig, train

    root = fake_camvid(tmp_path / "ds", n=4, splits=("train",))
    import shutil
    shutil.copytree(root / "images" / "train", root / "images" / "val")
    shutil.copytree(root / "labels" / "train", root / "labels" / "val")
    common = dict(data=str(root), epochs=1, batch=2, crop=(64, 96), warmup_iters=1, eval_every=1, threads=1,
                  ema=0.0, photometric="strong", scale_range=(0.5, 3.0))
    train(TrainConfig(out=str(tmp_path / "a"), workers=0, **common))
    train(TrainConfig(out=str(tmp_path / "b"), workers=2, **common))
    a = torch.load(tmp_path / "a" / "last.pth", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "last.pth", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.torch
def test_amp_path_runs_and_cuda_absence_is_one_line(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from engine.training.trainer import TrainConfig, train

    root = fake_camvid(tmp_path / "ds", n=2, splits=("train",))
    import shutil
    shutil.copytree(root / "images" / "train", root / "images" / "val")
    shutil.copytree(root / "labels" / "train", root / "labels" / "val")
    summary = train(TrainConfig(data=str(root), out=str(tmp_path / "amp"), epochs=1, batch=2, crop=(64, 96),
                                warmup_iters=1, eval_every=1, threads=1, ema=0.0, amp=True, loss="ohem",
                                ohem_min_kept=100))
    assert summary["iter"] == 1 and 0.0 <= summary["best"]["miou"] <= 1.0
    if not torch.cuda.is_available():
        assert run_command(["train", "--data", str(root), "--out", str(tmp_path / "gpu"), "--device", "cuda",
                            "--epochs", "1", "--batch", "2", "--crop", "64x96", "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA device" in err[0]
        assert not (tmp_path / "gpu").exists()
