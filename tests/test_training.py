"""Training: CamVid loader, augmentations, lr schedule, a short real run, exact --resume, shipping."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import run_command
from engine.errors import StudioError
from engine.models.datasets import list_samples
from engine.models.registry import Registry
from engine.training import data as D
from fake_camvid import fake_camvid

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def camvid(shared_dir) -> Path:
    return shared_dir / "datasets" / "camvid"


# ----------------------------------------------------------------- loader and augmentation

def test_list_samples_errors(tmp_path):
    with pytest.raises(StudioError, match="not found"):
        list_samples(tmp_path / "missing", "train")
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    with pytest.raises(StudioError, match="empty"):
        list_samples(tmp_path, "val")
    with pytest.raises(StudioError, match="no split"):
        list_samples(tmp_path, "test")
    (tmp_path / "images" / "val" / "a.jpg").write_bytes(b"x")
    with pytest.raises(StudioError, match="no label"):
        list_samples(tmp_path, "val")


def test_any_folder_in_the_layout_works(tmp_path):
    root = fake_camvid(tmp_path / "ds", n=2, splits=("train",))
    images, labels = D.load_split(root, "train")
    assert [im.shape for im in images] == [(64, 96, 3)] * 2
    assert [lb.shape for lb in labels] == [(64, 96)] * 2 and labels[0].dtype == np.uint8


@pytest.mark.shared
def test_real_camvid_samples_load(camvid):
    samples = list_samples(camvid, "train")
    assert len(samples) == 367
    images, labels = D.load_split(camvid, "val", limit=2)
    assert images[0].shape == (360, 480, 3) and labels[0].shape == (360, 480)
    assert labels[0].max() <= 11 and set(np.unique(labels[0])) - set(range(12)) == set()


@pytest.mark.shared
def test_augment_shapes_and_ignore_padding(camvid):
    images, labels = D.load_split(camvid, "train", limit=2)
    rng = np.random.default_rng(1)
    cfg = D.AugConfig(crop=(288, 384))
    for img, lbl in zip(images, labels):
        for _ in range(5):
            a, b = D.augment(img, lbl, rng, cfg)
            assert a.shape == (288, 384, 3) and a.dtype == np.uint8
            assert b.shape == (288, 384) and b.dtype == np.uint8
            assert b.max() <= 11
    # At scale 0.5 the image (180x240) is smaller than the crop: padding must be void.
    small = D.AugConfig(crop=(288, 384), scale_range=(0.5, 0.5), flip=False, photometric=False)
    a, b = D.augment(images[0], labels[0], np.random.default_rng(0), small)
    assert (b[180:, :] == 11).all() and (b[:, 240:] == 11).all()
    assert (a[180:, :] == 0).all()
    assert (b[:180, :240] == D.random_scale(images[0], labels[0], np.random.default_rng(0), 0.5, 0.5)[1]).all()
    # Flip mirrors image and label together (same rng: same crop, then the flip draw).
    kw = dict(crop=(288, 384), scale_range=(1.0, 1.0), photometric=False)
    flips = 0
    for seed in range(8):
        a0, b0 = D.augment(images[0], labels[0], np.random.default_rng(seed), D.AugConfig(flip=False, **kw))
        a1, b1 = D.augment(images[0], labels[0], np.random.default_rng(seed), D.AugConfig(flip=True, **kw))
        if not np.array_equal(b0, b1):
            flips += 1
            assert np.array_equal(b1, b0[:, ::-1]) and np.array_equal(a1, a0[:, ::-1])
        else:
            assert np.array_equal(a0, a1)
    assert 0 < flips < 8


@pytest.mark.shared
def test_rare_crop_centres_on_rare_classes(camvid):
    images, labels = D.load_split(camvid, "train", limit=6)
    freq = D.class_frequencies(labels, 11)
    weight = 1.0 / np.sqrt(np.maximum(freq, 1e-6))
    rare = freq < 0.02  # pole, sign, fence, pedestrian, bicyclist...
    cfg_on = D.AugConfig(crop=(96, 128), scale_range=(1.0, 1.0), rare_crop=1.0, photometric=False)
    cfg_off = D.AugConfig(crop=(96, 128), scale_range=(1.0, 1.0), rare_crop=0.0, photometric=False)
    rng_on, rng_off = np.random.default_rng(0), np.random.default_rng(0)
    on = off = 0.0
    for _ in range(5):
        for img, lbl in zip(images, labels):
            on += rare[np.minimum(D.augment(img, lbl, rng_on, cfg_on, weight)[1], 10)].mean()
            off += rare[np.minimum(D.augment(img, lbl, rng_off, cfg_off, weight)[1], 10)].mean()
    assert on > 1.3 * off


def test_augment_is_deterministic_given_the_rng():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (100, 140, 3), dtype=np.uint8)
    lbl = rng.integers(0, 12, (100, 140), dtype=np.uint8)
    cfg = D.AugConfig(crop=(64, 96))
    a1, b1 = D.augment(img, lbl, np.random.default_rng(3), cfg)
    a2, b2 = D.augment(img, lbl, np.random.default_rng(3), cfg)
    assert (a1 == a2).all() and (b1 == b2).all()
    a3, _ = D.augment(img, lbl, np.random.default_rng(4), cfg)
    assert not np.array_equal(a1, a3)


def test_class_weights():
    freq = np.array([0.5, 0.3, 0.15, 0.05])
    assert D.class_weights(freq, "none") is None
    w = D.class_weights(freq, "sqrt")
    assert w.mean() == pytest.approx(1.0) and (np.diff(w) > 0).all()
    with pytest.raises(StudioError):
        D.class_weights(freq, "bogus")


# ----------------------------------------------------------------- torch parts

@pytest.mark.torch
def test_lr_schedule_warmup_and_poly():
    pytest.importorskip("torch")
    from engine.training.trainer import TrainConfig, lr_factor

    cfg = TrainConfig(lr=1e-3, warmup_iters=100)
    assert lr_factor(0, 1000, cfg) < 1e-5
    assert lr_factor(50, 1000, cfg) == pytest.approx(0.5 * (1 - 50 / 1000), rel=1e-3)
    assert lr_factor(100, 1000, cfg) == pytest.approx(0.9)
    assert lr_factor(550, 1000, cfg) == pytest.approx(0.45)
    assert lr_factor(1000, 1000, cfg) == 0.0


@pytest.mark.torch
def test_head_gets_ten_times_the_lr_and_norms_no_decay():
    pytest.importorskip("torch")
    from engine.models.topformer import create_model
    from engine.training.trainer import TrainConfig, param_groups

    model = create_model("tiny", 11)
    groups = param_groups(model, TrainConfig(weight_decay=0.01, head_lr_mult=10))
    head = {id(p) for p in model.decode_head.parameters()}
    for g in groups:
        is_head = {id(p) in head for p in g["params"]}
        assert len(is_head) == 1
        assert g["lr_mult"] == (10 if is_head.pop() else 1)
        assert g["weight_decay"] == (0.01 if all(p.ndim > 1 for p in g["params"]) else 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


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


@pytest.mark.torch
def test_optimizer_state_is_matched_by_parameter_name():
    """A checkpoint written when the model registered its modules in another order (the
    head once put conv_seg after linear_fuse) still resumes with the right AdamW moments."""
    torch = pytest.importorskip("torch")
    from engine.models.topformer import create_model
    from engine.training.trainer import TrainConfig, load_optimizer_state, param_groups

    cfg = TrainConfig()
    model = create_model("tiny", 11)
    old_groups = param_groups(model, cfg)
    for g in old_groups:  # another registration order
        g["params"].reverse()
        g["names"].reverse()
    opt_old = torch.optim.AdamW(old_groups, lr=1e-3)
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    opt_old.step()
    saved_names = [n for g in opt_old.param_groups for n in g["names"]]
    opt_new = torch.optim.AdamW(param_groups(model, cfg), lr=1e-3)
    load_optimizer_state(opt_new, opt_old.state_dict(), saved_names)
    params = dict(model.named_parameters())
    for g in opt_new.param_groups:
        for name, p in zip(g["names"], g["params"]):
            assert p is params[name]
            assert torch.equal(opt_new.state[p]["exp_avg"], opt_old.state[p]["exp_avg"]), name


# ----------------------------------------------------------------- held-out drive, recipe

def _block_pair(h: int = 90, w: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """An image whose colour encodes its label: blocks of 15 px, class (by+bx) % 11, image
    value 20 * (class + 1) in every channel (void: 240); padding will show as 0."""
    ys, xs = np.mgrid[0:h, 0:w]
    lbl = ((ys // 15 + xs // 15) % 11).astype(np.uint8)
    lbl[:, :6] = 11
    img = np.repeat((lbl.astype(np.int32) * 20 + 20).astype(np.uint8)[..., None], 3, axis=2)
    return img, lbl


def test_augmentation_keeps_image_and_label_aligned_at_scales_up_to_3():
    """Random scale 0.5-3.0, pad, crop, flip: where the label says class c, the image still
    shows 20*(c+1) (off block edges, where bilinear and nearest resizing differ by design),
    and padded pixels (image 0) are void."""
    import cv2

    img, lbl = _block_pair()
    cfg = D.AugConfig(crop=(64, 96), scale_range=(0.5, 3.0), photometric="none", cat_max_ratio=1.0)
    rng = np.random.default_rng(0)
    k = np.ones((5, 5), np.uint8)
    checked = padded = 0
    for _ in range(30):
        a, b = D.augment(img, lbl, rng, cfg)
        assert a.shape == (64, 96, 3) and b.shape == (64, 96)
        pad = a[..., 0] == 0
        assert (b[pad] == 11).all()
        padded += pad.sum()
        flat = (cv2.dilate(b, k) == cv2.erode(b, k)) & ~cv2.dilate(pad.astype(np.uint8), k).astype(bool)
        flat[:2, :] = flat[-2:, :] = flat[:, :2] = flat[:, -2:] = False
        diff = np.abs(a[..., 0].astype(int) - (b.astype(int) * 20 + 20))[flat]
        assert (diff <= 2).mean() > 0.99
        checked += flat.sum()
    assert checked > 30 * 64 * 96 // 3 and padded > 0  # the check saw most pixels, and some padding


def test_log_scale_sampling_draws_as_often_below_the_geometric_mean_as_above():
    """--scale-sampling log: factors stay in range, and half fall below sqrt(lo * hi) (1.22 for
    0.5-3.0), where uniform puts 70 % above it; an unknown mode is a one-line error."""
    lbl = np.zeros((100, 100), np.uint8)
    img = np.zeros((100, 100, 3), np.uint8)

    def factors(mode: str) -> np.ndarray:
        rng = np.random.default_rng(0)
        return np.array([D.random_scale(img, lbl, rng, 0.5, 3.0, mode)[1].shape[0] / 100 for _ in range(2000)])

    log, uniform = factors("log"), factors("uniform")
    assert log.min() >= 0.5 and log.max() <= 3.0
    gm = np.sqrt(0.5 * 3.0)
    assert abs((log < gm).mean() - 0.5) < 0.04 and (uniform < gm).mean() < 0.33
    with pytest.raises(StudioError, match="unknown scale sampling 'cubic'"):
        D.random_scale(img, lbl, np.random.default_rng(0), 0.5, 3.0, "cubic")


def test_strong_photometric_changes_only_the_image():
    img, lbl = _block_pair()
    base = D.AugConfig(crop=(64, 96), scale_range=(1.0, 1.0), photometric="none")
    strong = D.AugConfig(crop=(64, 96), scale_range=(1.0, 1.0), photometric="strong")
    changed = 0
    for seed in range(6):
        a0, b0 = D.augment(img, lbl, np.random.default_rng(seed), base)
        a1, b1 = D.augment(img, lbl, np.random.default_rng(seed), strong)
        assert np.array_equal(b0, b1) and a1.shape == a0.shape and a1.dtype == np.uint8
        changed += not np.array_equal(a0, a1)
    assert changed >= 5
    # blur, noise, JPEG each with probability 0.3: about 66 % of draws change the image
    outs = [D.degrade(img, np.random.default_rng(s)) for s in range(40)]
    assert 15 <= sum(not np.array_equal(o, img) for o in outs) <= 38
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    with pytest.raises(StudioError):
        D.photometric_mode("wild")
    assert D.photometric_mode(True) == "basic" and D.photometric_mode(False) == "none"


def test_recipes_are_cumulative_rows():
    from engine.training.config import RECIPES

    rows = ["baseline", "+scale", "+photometric", "+ohem", "+ema"]
    changes = [{k for k in RECIPES[b] if RECIPES[a][k] != RECIPES[b][k]} for a, b in zip(rows, rows[1:])]
    assert changes == [{"scale_range"}, {"photometric"}, {"loss"}, {"ema"}]
    assert RECIPES["+scale"]["scale_range"] == (0.5, 3.0) and RECIPES["baseline"]["ema"] == 0.0
    assert RECIPES["strong"] == RECIPES["+ema"]


@pytest.mark.torch
def test_ohem_keeps_the_hardest_pixels():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from engine.training.losses import ohem_cross_entropy, ohem_mask

    # 2 classes, 1x1x10 pixels, all labelled 0; logit margin m gives p(true) = sigmoid(m)
    margins = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    logits = torch.stack([margins, torch.zeros(10)]).reshape(1, 2, 1, 10)
    target = torch.zeros(1, 1, 10, dtype=torch.long)
    target[0, 0, 9] = 255  # ignored: never kept although its margin would say "easy"
    p = torch.sigmoid(margins)
    # thresh 0.7: p < 0.7 for margins <= 0.5 -> 4 pixels, more than min_kept 2
    mask = ohem_mask(logits, target, 255, 0.7, 2)[0, 0]
    assert mask.tolist() == [bool(v) for v in (p < 0.7).tolist()[:9]] + [False]
    # min_kept 6 > 4 hard ones: the 6 lowest probabilities
    mask = ohem_mask(logits, target, 255, 0.7, 6)[0, 0]
    assert mask.tolist() == [True] * 6 + [False] * 4
    # The loss is the mean cross-entropy over exactly those pixels.
    loss = ohem_cross_entropy(logits, target, 255, 0.7, 6)
    per_pixel = F.cross_entropy(logits, target.clamp(max=1), reduction="none")[0, 0]
    assert loss.item() == pytest.approx(per_pixel[:6].mean().item(), rel=1e-6)
    # More than the plain mean: hard pixels are not diluted by easy ones.
    plain = F.cross_entropy(logits, target, ignore_index=255)
    assert loss.item() > plain.item()
    # Gradient flows only through the kept pixels.
    x = logits.clone().requires_grad_(True)
    ohem_cross_entropy(x, target, 255, 0.7, 6).backward()
    g = x.grad.abs().sum(1)[0, 0]
    assert (g[:6] > 0).all() and (g[6:] == 0).all()
    # All ignored: zero loss, no NaN.
    assert ohem_cross_entropy(logits, torch.full_like(target, 255), 255, 0.7, 6).item() == 0.0


@pytest.mark.torch
def test_ema_update_math_and_state_round_trip():
    torch = pytest.importorskip("torch")
    from torch import nn

    from engine.training.ema import EMA

    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    w = [1.0]
    for step, value in enumerate([3.0, 5.0, 7.0, 9.0, 11.0, 13.0], start=1):
        with torch.no_grad():
            model[0].weight.fill_(value)
        d = min(0.9, (1 + step) / (10 + step))
        assert ema.current_decay() == pytest.approx(d)
        ema.update(model)
        w.append(d * w[-1] + (1 - d) * value)
        assert ema.state["0.weight"][0, 0].item() == pytest.approx(w[-1], rel=1e-6)
    assert ema.updates == 6
    assert ema.state["1.num_batches_tracked"].item() == model[1].num_batches_tracked.item()  # copied, not averaged
    # A restored EMA continues exactly like the original.
    other = EMA(model, decay=0.5)
    other.load_state_dict({k: (v if k != "state" else {n: t.clone() for n, t in v.items()})
                           for k, v in ema.state_dict().items()})
    assert other.decay == 0.9 and other.updates == 6
    ema.update(model)
    other.update(model)
    assert all(torch.equal(ema.state[k], other.state[k]) for k in ema.state)


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


def test_each_recipe_setting_is_a_flag_a_config_field_and_recorded_when_shipped():
    """RECIPE_FIELDS is the one list of recipe settings: each is a TrainConfig field, has its
    train flag, and the manifest records it (always, or with the optional part that uses it)."""
    import argparse

    from engine.cli.train_cmd import add_arguments
    from engine.training.config import OPTIONAL_RECIPE_PARTS, RECIPE_FIELDS, RECORDED_RECIPE, TrainConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {action.dest for action in parser._actions}
    optional = {k for _, fields in OPTIONAL_RECIPE_PARTS for k in fields}
    for key in RECIPE_FIELDS:
        assert key in TrainConfig.__dataclass_fields__, key
        assert key in flags, f"--{key.replace('_', '-')} missing"
        assert (key in RECORDED_RECIPE) != (key in optional), key
    assert set(RECORDED_RECIPE) <= set(TrainConfig.__dataclass_fields__)


def test_report_names_every_setting_that_differs_from_the_named_recipe():
    """A setting describe_recipe does not word itself still shows, as "flag value"; one equal to
    its recipe (or to the default, without a recipe) does not."""
    from engine.training.report import describe_recipe

    assert describe_recipe({"recipe": "strong", "drop_path": 0.2, "rare_crop": 0.3}) == "strong, drop-path 0.2"
    assert describe_recipe({"recipe": "+scale", "scale_range": [0.5, 2.0]}) == "+scale, scale-range 0.5-2"
    assert describe_recipe({"recipe": "strong", "scale_range": [0.5, 3.0], "loss": "ohem"}) == "strong"
    assert describe_recipe({"lr": 2e-4, "ohem_thresh": 0.9}) == "-, lr 0.0002, ohem-thresh 0.9"
    fine_tune = {"recipe": "strong", "init": "x.pth", "lr": 2e-4, "head_lr_mult": 10, "freeze_bn": True}
    assert describe_recipe(fine_tune) == "strong, init x.pth, lr 0.0002, frozen BN"


def test_report_names_what_each_run_changed():
    """The ablation table's recipe column: named recipe, then a fine-tune's start and any class weighting."""
    from engine.training.report import describe_recipe

    assert describe_recipe({"recipe": "+scale"}) == "+scale"
    cfg = {"recipe": "strong", "init": "x/topformer-tiny-ade20k.pth", "lr": 2e-4, "head_lr_mult": 10,
           "freeze_bn": True, "class_weight": "sqrt",
           "extra": {"init_from": "ade20k TopFormer-tiny (official checkpoint)"}}
    assert describe_recipe(cfg) == "strong, init ade20k TopFormer-tiny, lr 0.0002, frozen BN, class weight sqrt"
    assert describe_recipe({**cfg, "class_weight": "none", "head_lr_mult": 50}).endswith("lr 0.0002 (head x50), frozen BN")
    grown = {**cfg, "class_weight": "none", "init": "runs/t/last.pth", "extra": {
        "init_from": "the weights of runs/t/last.pth; grown tiny -> small (function-preserving widening)"}}
    assert describe_recipe(grown) == "strong, init runs/t/last.pth, grown tiny -> small, lr 0.0002, frozen BN"
    official = {**grown, "extra": {"init_from": "ade20k TopFormer-tiny (official checkpoint); grown tiny -> base (w)"}}
    assert describe_recipe(official).startswith("strong, init ade20k TopFormer-tiny, grown tiny -> base, lr")
    assert describe_recipe({**grown, "extra": {}}) == "strong, init last.pth, lr 0.0002, frozen BN"
    kd = {"recipe": "baseline", "teacher": "camvid-tiny", "distill_weight": 2.0, "distill_temp": 1.0,
          "extra": {"unlabelled_frames": 66}}
    assert describe_recipe(kd) == "baseline, teacher camvid-tiny (x2), 66 unlabelled frames"
    assert describe_recipe({**kd, "distill_temp": 4.0, "extra": {}}) == "baseline, teacher camvid-tiny (x2, T 4)"
