"""Overlay colours: the dataset's own palette, or one where the street classes are distinct.

CamVid's official colours put road (128,64,128), car (64,0,128) and pavement (60,40,222)
within a few shades of purple-blue; blended over a frame they are hard to tell apart. The
"distinct" palette gives the classes people look for clearly different hues and keeps the
dataset colour for every class it does not name.
"""
from __future__ import annotations

import numpy as np

PALETTES = ("distinct", "dataset")
DISTINCT_RGB = {
    "road": (128, 64, 128), "pavement": (255, 220, 0), "sidewalk": (255, 220, 0),
    "car": (255, 40, 40), "truck": (255, 120, 40), "bus": (255, 150, 90),
    "pedestrian": (255, 0, 200), "person": (255, 0, 200), "bicyclist": (150, 0, 255), "rider": (150, 0, 255),
    "sky": (70, 130, 180), "building": (115, 115, 115), "tree": (60, 170, 60), "vegetation": (60, 170, 60),
    "pole": (250, 250, 250), "sign_symbol": (0, 255, 255), "traffic sign": (0, 255, 255), "fence": (150, 100, 50),
}


def palette_rgb(mode: str, class_names: list[str], dataset_rgb: np.ndarray) -> np.ndarray:
    """uint8 [C, 3] RGB colours for ``mode`` ("distinct" or "dataset")."""
    out = np.array(dataset_rgb, dtype=np.uint8).reshape(-1, 3).copy()
    if mode == "distinct" and len(out) <= 20:  # street datasets; ADE20K's 150 colours are already distinct
        for i, name in enumerate(class_names[:len(out)]):
            if name in DISTINCT_RGB:
                out[i] = DISTINCT_RGB[name]
    return out


class PaletteCache:
    """(RGB, BGR) colours of the serving model in a mode, computed once per model (inference thread)."""

    def __init__(self):
        self._key: tuple | None = None  # (segmenter, mode): holds the segmenter, so its id is never reused
        self._value = (np.zeros((0, 3), np.uint8), np.zeros((0, 3), np.uint8))

    def get(self, segmenter, mode: str) -> tuple[np.ndarray, np.ndarray]:
        if segmenter is None:
            return np.zeros((0, 3), np.uint8), np.zeros((0, 3), np.uint8)
        if self._key is None or self._key[0] is not segmenter or self._key[1] != mode:
            rgb = palette_rgb(mode, segmenter.class_names, segmenter.palette_rgb)
            self._key, self._value = (segmenter, mode), (rgb, np.ascontiguousarray(rgb[:, ::-1]))
        return self._value
