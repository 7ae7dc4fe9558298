"""A small CamVid-layout folder of random frames and labels, shared by the training tests.

For code paths that need the layout, not real street scenes: 64x96 frames, labels 0..11
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
