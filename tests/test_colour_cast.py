"""--colour-cast (engine.training.data.colour_cast): a white-balance jitter of training frames."""
from __future__ import annotations

import numpy as np
import pytest

from engine.training import data as D
from fake_camvid import check_recipe_flag


def test_cast_scales_red_and_blue_within_the_range_and_keeps_green():
    img = np.full((8, 8, 3), 100, np.uint8)
    ratios = []
    for seed in range(200):
        out = D.colour_cast(img, np.random.default_rng(seed), 0.25)
        assert out.dtype == np.uint8 and out.shape == img.shape
        assert (out[..., 1] == 100).all()
        ratios.append(out[0, 0, [0, 2]] / 100.0)
    ratios = np.array(ratios)
    assert ratios.min() >= 1 / 1.25 - 0.01 and ratios.max() <= 1.25 + 0.01
    # both directions for each channel, and the two gains drawn apart (a tint, not a brightness)
    assert (ratios < 0.9).any(axis=0).all() and (ratios > 1.1).any(axis=0).all()
    assert np.corrcoef(ratios[:, 0], ratios[:, 1])[0, 1] < 0.3


def test_augment_casts_only_the_image_and_only_when_asked():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    lbl = rng.integers(0, 11, (64, 96), dtype=np.uint8)
    plain = D.AugConfig(crop=(64, 96), scale_range=(1.0, 1.0), photometric="none", flip=False)
    cast = D.AugConfig(crop=(64, 96), scale_range=(1.0, 1.0), photometric="none", flip=False, colour_cast=0.3)
    a0, b0 = D.augment(img, lbl, np.random.default_rng(1), plain)
    a1, b1 = D.augment(img, lbl, np.random.default_rng(1), cast)
    assert np.array_equal(a0, img) and np.array_equal(b0, b1)
    assert not np.array_equal(a0, a1) and np.array_equal(a0[..., 1], a1[..., 1])


@pytest.mark.torch
def test_colour_cast_is_recorded_and_a_bad_value_is_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    cfg = check_recipe_flag(tmp_path, capsys, "--colour-cast", "0.2", "colour cast 0.2",
                            {v: f"--colour-cast {float(v):g}: must be between 0 (off) and 1" for v in ("-0.1", "2")})
    assert cfg["colour_cast"] == 0.2
