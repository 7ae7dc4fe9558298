"""Training from the official ADE20K TopFormer-Tiny: weights copied, classifier rows mapped,
BatchNorm statistics frozen while fine-tuning."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import run_command
from engine.errors import StudioError

pytestmark = [pytest.mark.torch]


@pytest.fixture(scope="module")
def ade_tiny(shared_dir) -> Path:
    return shared_dir / "reference" / "topformer-tiny-ade20k.pth"


@pytest.mark.shared
def test_classifier_rows_come_from_the_mapped_ade20k_classes(ade_tiny):
    pytest.importorskip("torch")
    from engine.models.checkpoint import read_state_dict
    from engine.models.datasets import dataset_info
    from engine.training.pretrained import CLASS_MAP, SEG_BIAS, SEG_WEIGHT, official_init

    source = read_state_dict(ade_tiny)
    state, how = official_init(ade_tiny, "tiny")
    assert "ade20k TopFormer-tiny" in how and "mapped ade20k -> camvid" in how
    ade = dataset_info("ade20k").classes
    for row, cls in enumerate(dataset_info("camvid").classes):
        src_row = ade.index(CLASS_MAP[("ade20k", "camvid")][cls])
        assert np.array_equal(state[SEG_WEIGHT][row].numpy(), source[SEG_WEIGHT][src_row].numpy())
        assert float(state[SEG_BIAS][row]) == float(source[SEG_BIAS][src_row])
    assert state[SEG_WEIGHT].shape[0] == 11
    others = [k for k in source if k not in (SEG_WEIGHT, SEG_BIAS)]
    assert others and all(state[k] is source[k] or bool((state[k] == source[k]).all()) for k in others)


@pytest.mark.shared
def test_mapped_model_already_segments_a_street_frame(ade_tiny, shared_dir):
    """Zero-shot, before any CamVid training: road and sky are found on an unseen drive.
    A wrong map (or a wrong normalisation) gives near-zero IoU for them."""
    torch = pytest.importorskip("torch")
    import cv2

    from engine.models.datasets import read_image_bgr, read_label, select_samples
    from engine.models.topformer import MEAN_RGB, STD_RGB, create_model
    from engine.training.pretrained import official_init

    model = create_model("tiny", 11)
    model.load_state_dict(official_init(ade_tiny, "tiny")[0])
    model.eval()
    sample = select_samples(shared_dir / "datasets" / "camvid", "train", ["0006R0"])[0]
    rgb = cv2.resize(read_image_bgr(sample.image)[:, :, ::-1].astype(np.float32), (640, 480))
    x = torch.from_numpy(((rgb - MEAN_RGB) / STD_RGB).transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        logits = model(x)
    label = read_label(sample.label)
    pred = torch.nn.functional.interpolate(logits, size=label.shape, mode="bilinear").argmax(1)[0].numpy()
    for cls in (0, 3):  # sky, road
        inter = np.sum((pred == cls) & (label == cls))
        union = np.sum(((pred == cls) | (label == cls)) & (label != 11))
        assert inter / union > 0.6, (cls, inter / union)


@pytest.mark.shared
def test_wrong_variant_is_refused(shared_dir):
    pytest.importorskip("torch")
    from engine.training.pretrained import official_init

    with pytest.raises(StudioError, match="is a TopFormer-small, not tiny"):
        official_init(shared_dir / "reference" / "random-small.pth", "tiny")


@pytest.mark.shared
def test_train_cli_init_from_ade20k_is_recorded(ade_tiny, shared_dir, tmp_path, capsys):
    out = tmp_path / "ft"
    args = ["train", "--variant", "tiny", "--data", str(shared_dir / "datasets" / "camvid"), "--out", str(out),
            "--epochs", "1", "--batch", "2", "--crop", "64x96", "--limit", "2", "--val-limit", "1",
            "--eval-every", "1", "--warmup-iters", "1", "--threads", "1", "--no-progress", "--init", str(ade_tiny)]
    assert run_command(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["init"] == str(ade_tiny) and "mapped ade20k -> camvid" in cfg["extra"]["init_from"]
    capsys.readouterr()
    bad = args[:-1] + [str(shared_dir / "reference" / "random-base.pth")]
    bad[bad.index("--out") + 1] = str(tmp_path / "bad")
    assert run_command(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TopFormer-base, not tiny" in err[0]
    assert not (tmp_path / "bad").exists()


def test_frozen_bn_keeps_statistics_through_training_and_validation(tmp_path):
    """--freeze-bn: BatchNorm normalises with (and keeps) its running statistics through
    training steps and the in-loop validation; without it they move."""
    torch = pytest.importorskip("torch")
    import cv2

    from engine.training.trainer import TrainConfig, set_train_mode, train

    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / "images" / split / f"f{i}.png"), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
            cv2.imwrite(str(root / "labels" / split / f"f{i}.png"), rng.integers(0, 12, (64, 96), dtype=np.uint8))
    stats = {}
    for frozen in (True, False):
        out = tmp_path / f"run-{frozen}"
        cfg = TrainConfig(data=str(root), out=str(out), epochs=2, batch=2, crop=(64, 96), warmup_iters=1,
                          eval_every=1, threads=1, ema=0.0, freeze_bn=frozen)
        train(cfg)
        ckpt = torch.load(out / "last.pth", weights_only=False)
        stats[frozen] = {k: v for k, v in ckpt["model"].items() if k.endswith("running_mean")}
        assert json.loads((out / "config.json").read_text())["freeze_bn"] is frozen
    from engine.models.topformer import create_model

    start = {k: v for k, v in create_model("tiny", 11).state_dict().items() if k.endswith("running_mean")}
    assert all(torch.equal(stats[True][k], start[k]) for k in start)
    assert not all(torch.equal(stats[False][k], start[k]) for k in start)
    model = create_model("tiny", 11)
    set_train_mode(model, True)
    assert model.training and all(not m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.shared
def test_blend_init_ships_the_mean_of_trained_and_start_weights(ade_tiny, shared_dir, tmp_path, capsys):
    """--blend-init W: the shipped weights are W x trained + (1 - W) x the run's start, the
    manifest says so, and the selection run's held-out figure is re-measured on its blended
    weights (the same number eval gives for the installed model)."""
    torch = pytest.importorskip("torch")
    from engine.jobs.evaluate import evaluate_model
    from engine.models.registry import Registry
    from engine.training.pretrained import blend_with_init, official_init
    from engine.training.run_weights import load_run_weights
    from engine.training.ship import ship_run

    camvid, out = shared_dir / "datasets" / "camvid", tmp_path / "ft"
    args = ["train", "--variant", "tiny", "--data", str(camvid), "--out", str(out), "--epochs", "1", "--batch", "2",
            "--crop", "64x96", "--limit", "2", "--val-limit", "1", "--eval-every", "1", "--warmup-iters", "1",
            "--threads", "1", "--no-progress", "--holdout-drive", "0001TP", "--lr", "1e-2", "--init", str(ade_tiny)]
    assert run_command(args) == 0
    ckpt = torch.load(out / "last.pth", weights_only=False)
    trained, cfg = ckpt["ema"]["state"], ckpt["config"]
    start = official_init(ade_tiny, "tiny")[0]
    assert all(torch.equal(v, trained[k]) for k, v in blend_with_init(trained, cfg, 1.0).items())
    half = blend_with_init(trained, cfg, 0.5)
    moved = [k for k, v in trained.items() if v.is_floating_point() and not torch.equal(v, start[k])]
    assert moved  # the fine-tune changed weights, so the blend is a real test
    for k, v in half.items():
        if v.is_floating_point():
            assert torch.allclose(v, (trained[k] + start[k]) / 2, atol=1e-6), k
        else:
            assert torch.equal(v, trained[k]), k
    model, _, _ = load_run_weights(out, "last.pth", blend_init=0.5)
    assert all(torch.equal(v, half[k]) for k, v in model.state_dict().items())
    # --blend-start: another start (here all-zero weights in a run checkpoint) replaces the run's --init.
    zeros = tmp_path / "zeros.pth"
    torch.save({"model": {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in trained.items()}}, zeros)
    to_zero = blend_with_init(trained, cfg, 0.5, start=zeros)
    assert all(torch.equal(v, trained[k] * 0.5) for k, v in to_zero.items() if v.is_floating_point())
    model, _, _ = load_run_weights(out, "last.pth", blend_init=0.5, blend_start=zeros)
    assert all(torch.equal(v, to_zero[k]) for k, v in model.state_dict().items())
    with pytest.raises(StudioError, match="needs the --blend-start weights: --init: no checkpoint"):
        blend_with_init(trained, cfg, 0.5, start=tmp_path / "gone.pth")
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(StudioError, match="--blend-init must be above 0"):
            blend_with_init(trained, cfg, bad)
    with pytest.raises(StudioError, match="did not start from --init"):
        blend_with_init(trained, {**cfg, "init": None}, 0.5)
    with pytest.raises(StudioError, match="needs the run's start weights: --init: no checkpoint"):
        blend_with_init(trained, {**cfg, "init": str(tmp_path / "gone.pth")}, 0.5)

    models = tmp_path / "models"
    summary = ship_run(out, "blended", models_dir=models, data=camvid, checkpoint="last.pth", limit=2,
                       selection_run=out, blend_init=0.5)
    entry = Registry(models).get("blended")
    assert entry.training["blend_init"]["weight"] == 0.5 and entry.training["weights"] == "0.5 x ema + 0.5 x start"
    assert "0.5 x ema + 0.5 x start weights of epoch 1" in entry.notes
    last = entry.training["selection"]["last"]
    held = evaluate_model("blended", camvid, "train,val", models_dir=models, drives=["0001TP"])
    assert held.images == 62 and last["miou_holdout"] == round(held.metrics["miou"], 6)
    assert last["in_loop"]["miou_holdout_ema"] is not None and "--blend-init 0.5" in last["weights"]
    assert entry.unseen_drive_miou == (summary["holdout_miou"], "0001TP", False)  # this model's own held-out eval
    # One-line errors from the command line, nothing installed.
    capsys.readouterr()
    assert run_command(["train", "--export-only", str(out), "--blend-init", "0.5"]) == 2
    assert run_command(["train", "--export-only", str(out), "--checkpoint", "last.pth", "--name", "x",
                        "--blend-init", "2", "--models-dir", str(models)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "give --name NAME" in err[0] and "must be above 0" in err[1]
    assert Registry(models).names() == ["blended"]
    assert run_command(["train", "--export-only", str(out), "--checkpoint", "last.pth", "--name", "y",
                        "--blend-start", str(zeros), "--models-dir", str(models)]) == 2
    assert "give --blend-init too" in capsys.readouterr().err
    with pytest.raises(StudioError, match="give --blend-init too"):  # the library path refuses it alike
        ship_run(out, "z", models_dir=models, data=camvid, checkpoint="last.pth", blend_start=zeros)
    ship_run(out, "to-zero", models_dir=models, data=camvid, checkpoint="last.pth", limit=1, blend_init=0.5,
             blend_start=zeros)
    entry = Registry(models).get("to-zero")
    assert entry.training["blend_init"]["start"] == str(zeros)
