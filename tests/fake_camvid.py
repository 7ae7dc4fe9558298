"""A small CamVid-layout folder of random frames and labels, shared by the training tests.

For code paths that need the layout, not real street scenes (and a one-epoch run on it that
checks a recipe flag, :func:`check_recipe_flag`): 64x96 frames, labels 0..11
(11 = void), one random generator over the splits in order, so a folder is the same every time.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def fake_camvid(root: Path, n: int = 4, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """``n`` frames per split under ``root/images/<split>`` and ``root/labels/<split>``."""
    rng = np.random.default_rng(0)
    for split in splits:
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(root / "images" / split / f"f{i}.png"), rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
            cv2.imwrite(str(root / "labels" / split / f"f{i}.png"), rng.integers(0, 12, (64, 96), dtype=np.uint8))
    return root


def quick_train_args(data: Path) -> list[str]:
    """A one-epoch Tiny ``train`` command on a fake folder (add ``--out`` and the flag under test):
    seconds on CPU, enough to check that a recipe flag is accepted, recorded or refused."""
    return ["train", "--variant", "tiny", "--data", str(data), "--epochs", "1", "--batch", "2", "--crop", "32x64",
            "--eval-every", "1", "--warmup-iters", "1", "--threads", "1", "--no-progress"]


def check_recipe_flag(tmp_path: Path, capsys, flag: str, good: str, described: str, bad: dict[str, str],
                      good_needs: tuple[str, ...] = ()) -> dict:
    """A run with ``flag good`` (plus ``good_needs``, the flags it depends on) is recorded in
    config.json and worded ``described`` in the recipe table; each bad value (key), given alone,
    fails with its one-line message (value) and writes nothing. Returns the good run's config."""
    import json

    from engine.cli import run_command
    from engine.training.report import describe_recipe

    args = quick_train_args(fake_camvid(tmp_path / "camvid", n=2))
    assert run_command([*args, "--out", str(tmp_path / "r"), *good_needs, flag, good]) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert described in describe_recipe(cfg)
    capsys.readouterr()
    for i, (value, message) in enumerate(bad.items()):
        assert run_command([*args, "--out", str(tmp_path / f"bad{i}"), flag, value]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
        assert not (tmp_path / f"bad{i}").exists()  # refused before anything is written
    return cfg
