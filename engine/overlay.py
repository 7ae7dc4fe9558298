"""Drawing class maps over frames with numpy/OpenCV (no Qt): colours, blending, boundaries, areas."""
from __future__ import annotations

import cv2
import numpy as np


def colorize(labels: np.ndarray, palette_bgr: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 colour image of a class map (a palette lookup; ids past the palette are black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(palette_bgr)] = palette_bgr[:256]
    return lut[labels]


def boundary_mask(labels: np.ndarray) -> np.ndarray:
    """True where a pixel's right or lower neighbour has another class."""
    edges = np.zeros(labels.shape, bool)
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edges


def blend(frame_bgr: np.ndarray, labels: np.ndarray, palette_bgr: np.ndarray, opacity: float = 0.5,
          boundaries: bool = False, boundary_color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Class colours over the frame: opacity 0 = video only, 1 = mask only."""
    if labels.shape != frame_bgr.shape[:2]:
        raise ValueError(f"labels {labels.shape} do not match frame {frame_bgr.shape[:2]}")
    opacity = float(min(max(opacity, 0.0), 1.0))
    colors = colorize(labels, palette_bgr)
    if opacity >= 1.0:
        out = colors
    elif opacity <= 0.0:
        out = frame_bgr.copy()
    else:
        out = cv2.addWeighted(colors, opacity, frame_bgr, 1.0 - opacity, 0.0)
    if boundaries:
        out[boundary_mask(labels)] = boundary_color
    return out


def class_areas(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Percent of pixels per class (float64, length num_classes)."""
    counts = np.bincount(labels.reshape(-1), minlength=num_classes)[:num_classes].astype(np.float64)
    total = labels.size or 1
    return counts * (100.0 / total)


def present_classes(labels: np.ndarray, class_names: list[str], min_percent: float = 0.0) -> list[tuple[int, str, float]]:
    """(id, name, percent) of the classes in the map, largest area first (for legends)."""
    areas = class_areas(labels, len(class_names))
    order = np.argsort(-areas, kind="stable")
    return [(int(i), class_names[i], float(areas[i])) for i in order if areas[i] > min_percent]
