"""Training data: the CamVid loader, class weights and the augmentations (scale, crop, photometric)."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import StudioError
from engine.models.datasets import list_samples
from engine.training import data as D
from fake_camvid import fake_camvid


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
