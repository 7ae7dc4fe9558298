"""--drive-balance (engine.training.data.drive_weights): every drive drawn equally often."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from engine.errors import StudioError
from engine.training import data as D
from fake_camvid import check_recipe_flag


def test_power_one_gives_each_drive_the_same_share_and_zero_is_the_plain_shuffle():
    drives = ["A"] * 6 + ["B"] * 2 + ["C"] * 1
    p = D.drive_weights(drives, 1.0)
    share = {d: p[[i for i, x in enumerate(drives) if x == d]].sum() for d in "ABC"}
    assert all(v == pytest.approx(1 / 3) for v in share.values())
    half = D.drive_weights(drives, 0.5)  # sqrt: between the shuffle and equal drives
    assert 6 / 9 > half[:6].sum() > 1 / 3
    assert D.drive_weights(drives, 0.0) is None
    for bad in (-0.5, 1.5):
        with pytest.raises(StudioError, match="--drive-balance"):
            D.drive_weights(drives, bad)


def test_batches_follow_the_weights():
    drives = ["big"] * 90 + ["small"] * 10
    rng = np.random.default_rng(0)
    drawn = Counter(drives[i] for _ in range(50) for b in D.make_batches(100, 8, rng, D.drive_weights(drives, 1.0))
                    for i in b)
    assert 0.45 < drawn["small"] / sum(drawn.values()) < 0.55  # 10 % of the frames, half the draws
    plain = [i for b in D.make_batches(100, 8, np.random.default_rng(0)) for i in b]
    assert len(set(plain)) == len(plain) == 96  # without weights: a permutation, last batch dropped


@pytest.mark.torch
def test_a_run_records_the_setting_and_a_bad_value_is_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    cfg = check_recipe_flag(tmp_path, capsys, "--drive-balance", "1", "drive-balance 1", {
        "2": "--drive-balance 2: must be between 0 (off) and 1 (every drive equally often)"})
    assert cfg["drive_balance"] == 1.0
