"""Drawing class maps over frames with numpy/OpenCV (no Qt): colours, blending, boundaries, areas.

The one place colour masks are made, for the live view (app/playback/worker.py), ``segment`` and annotate's
overlay.mp4. uint8 class maps (what ``Segmenter`` returns) take OpenCV paths that are several times
faster than numpy indexing and release the GIL, so annotate's writer thread overlaps inference.
"""
from __future__ import annotations

import cv2
import numpy as np

# calcHist counts in float32, exact up to 2**24; larger maps are counted with numpy.
_CALCHIST_MAX_PIXELS = 1 << 24


def color_lut(palette_bgr: np.ndarray) -> np.ndarray:
    """256x1x3 uint8 lookup table of a BGR palette (ids past the palette are black).

    Build it once per model and pass it as ``lut=`` to :func:`colorize` / :func:`blend` per frame.
    """
    lut = np.zeros((256, 1, 3), np.uint8)
    palette = np.asarray(palette_bgr, np.uint8).reshape(-1, 3)[:256]
    lut[: len(palette), 0] = palette
    return lut


def colorize(labels: np.ndarray, palette_bgr: np.ndarray | None = None, *, lut: np.ndarray | None = None) -> np.ndarray:
    """HxWx3 uint8 colour image of a class map (a palette lookup; ids past the palette are black).

    Give ``palette_bgr``, or ``lut`` from :func:`color_lut` to skip rebuilding the table per frame.
    """
    if lut is None:
        if palette_bgr is None:
            raise TypeError("colorize needs palette_bgr or lut")
        lut = color_lut(palette_bgr)
    if labels.dtype == np.uint8 and labels.ndim == 2:
        return cv2.applyColorMap(labels, lut)
    return lut[:, 0][labels]


def boundary_mask(labels: np.ndarray) -> np.ndarray:
    """True where a pixel's right or lower neighbour has another class."""
    edges = np.zeros(labels.shape, bool)
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edges


def blend(frame_bgr: np.ndarray, labels: np.ndarray, palette_bgr: np.ndarray | None = None, opacity: float = 0.5,
          boundaries: bool = False, boundary_color: tuple[int, int, int] = (255, 255, 255), *,
          lut: np.ndarray | None = None) -> np.ndarray:
    """Class colours over the frame: opacity 0 = video only, 1 = mask only. Always a new array.

    Give ``palette_bgr``, or ``lut`` from :func:`color_lut` (see :func:`colorize`).
    """
    if labels.shape != frame_bgr.shape[:2]:
        raise ValueError(f"labels {labels.shape} do not match frame {frame_bgr.shape[:2]}")
    opacity = float(min(max(opacity, 0.0), 1.0))
    if opacity <= 0.0:
        out = frame_bgr.copy()
    else:
        colors = colorize(labels, palette_bgr, lut=lut)
        out = colors if opacity >= 1.0 else cv2.addWeighted(colors, opacity, frame_bgr, 1.0 - opacity, 0.0)
    if boundaries:
        out[boundary_mask(labels)] = boundary_color
    return out


def class_areas(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Percent of pixels per class (float64, length num_classes).

    uint8 maps are counted with cv2.calcHist (exact below 2**24 pixels, a few times faster than bincount).
    """
    if labels.dtype == np.uint8 and labels.size < _CALCHIST_MAX_PIXELS and num_classes <= 256:
        counts = cv2.calcHist([labels], [0], None, [256], [0, 256]).reshape(-1)
    else:
        counts = np.bincount(labels.reshape(-1), minlength=num_classes)
    counts = counts[:num_classes].astype(np.float64)
    return counts * (100.0 / (labels.size or 1))


def present_classes(labels: np.ndarray, class_names: list[str], min_percent: float = 0.0) -> list[tuple[int, str, float]]:
    """(id, name, percent) of the classes in the map, largest area first (for legends)."""
    areas = class_areas(labels, len(class_names))
    order = np.argsort(-areas, kind="stable")
    return [(int(i), class_names[i], float(areas[i])) for i in order if areas[i] > min_percent]
