"""Copy-paste of the thin classes (engine/training/data.py, trainer.augment_batch): pasted
pixels carry their labels, nothing else moves, runs without it keep their crops; the
command line records it and the Lovasz term, and bad settings are one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engine.cli import run_command
from engine.errors import StudioError
from engine.training import data as D

THIN = (2, 6, 7, 9, 10)  # pole, sign_symbol, fence, pedestrian, bicyclist


def _crop(seed: int, h: int = 24, w: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8), rng.integers(0, 12, (h, w), dtype=np.uint8)


def test_paste_copies_the_classes_pixels_with_their_labels_only():
    dst, src = _crop(0), _crop(1)
    img, lbl = D.paste_classes(dst, src, THIN)
    mask = np.isin(src[1], THIN)
    assert 0.2 < mask.mean() < 0.7
    assert np.array_equal(img[mask], src[0][mask]) and np.array_equal(lbl[mask], src[1][mask])
    assert np.array_equal(img[~mask], dst[0][~mask]) and np.array_equal(lbl[~mask], dst[1][~mask])
    assert not np.shares_memory(img, dst[0])  # the source crop is not modified in place
    plain = (src[0], np.zeros_like(src[1]))  # a donor without those classes changes nothing
    assert D.paste_classes(dst, plain, THIN) is dst


@pytest.mark.torch
def test_augment_batch_pastes_the_next_crops_thin_classes():
    pytest.importorskip("torch")
    from engine.training.trainer import augment_batch

    images = [_crop(s, 48, 64)[0] for s in range(4)]
    labels = [_crop(s, 48, 64)[1] for s in range(4)]
    base = D.AugConfig(crop=(32, 32), photometric="none", cat_max_ratio=1.0)
    plain = augment_batch(images, labels, np.arange(4), np.random.default_rng(5), base, None)
    again = augment_batch(images, labels, np.arange(4), np.random.default_rng(5),
                          D.AugConfig(crop=(32, 32), photometric="none", cat_max_ratio=1.0, paste=0.0,
                                      paste_classes=THIN), None)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(plain, again))  # off: the same crops
    pasted = augment_batch(images, labels, np.arange(4), np.random.default_rng(5),
                           D.AugConfig(crop=(32, 32), photometric="none", cat_max_ratio=1.0, paste=1.0,
                                       paste_classes=THIN), None)
    for k in range(4):
        donor = plain[(k + 1) % 4]
        expected = D.paste_classes(plain[k], donor, THIN)
        assert np.array_equal(pasted[k][0], expected[0]) and np.array_equal(pasted[k][1], expected[1])
        assert not np.array_equal(pasted[k][1], plain[k][1])


@pytest.mark.torch
def test_paste_settings_are_checked():
    pytest.importorskip("torch")
    from engine.training.config import TrainConfig
    from engine.training.trainer import paste_class_ids

    assert paste_class_ids(TrainConfig()) == ()
    assert paste_class_ids(TrainConfig(paste=0.5)) == THIN
    assert paste_class_ids(TrainConfig(paste=1.0, paste_classes="pedestrian,bicyclist")) == (9, 10)
    with pytest.raises(StudioError, match="no class lamppost"):
        paste_class_ids(TrainConfig(paste=0.5, paste_classes="pole,lamppost"))
    with pytest.raises(StudioError, match="give at least one class"):
        paste_class_ids(TrainConfig(paste=0.5, paste_classes=","))
    with pytest.raises(StudioError, match="--paste must be"):
        paste_class_ids(TrainConfig(paste=1.5))


@pytest.mark.torch
@pytest.mark.shared
def test_train_cli_records_paste_and_lovasz_and_rejects_bad_values(camvid, tmp_path, capsys):
    """A real two-iteration run with both recipe flags: the run's config and the ablation table name them."""
    pytest.importorskip("torch")
    out = tmp_path / "paste"
    args = ["train", "--data", str(camvid), "--out", str(out), "--epochs", "1", "--batch", "2", "--crop", "64x96",
            "--limit", "4", "--val-limit", "1", "--threads", "1", "--no-progress", "--ema", "0", "--paste", "0.5",
            "--lovasz-weight", "0.5", "--lovasz-stride", "2"]
    assert run_command(args) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["paste"] == 0.5 and cfg["paste_classes"] == "pole,sign_symbol,fence,pedestrian,bicyclist"
    assert cfg["lovasz_weight"] == 0.5 and cfg["lovasz_stride"] == 2
    capsys.readouterr()
    assert run_command(["train", "--report", str(out)]) == 0
    assert "paste 0.5, Lovasz x0.5 (stride 2)" in capsys.readouterr().out
    bad = tmp_path / "bad"
    for flag, value, message in [("--paste-classes", "pole,lamp", "no class lamp"), ("--lovasz-stride", "0", "--lovasz-stride")]:
        assert run_command([*args[:4], str(bad), *args[5:], flag, value]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
        assert not bad.exists()
