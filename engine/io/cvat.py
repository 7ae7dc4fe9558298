"""CVAT "Segmentation mask 1.1" export: the labelmap, its palette and the zip, frame by frame.

CVAT (Datumaro) reads colour masks by colour, so the labelmap needs unique names and unique,
non-black colours; the masks are Pascal VOC indexed PNGs whose pixel values are labelmap positions
(class id + 1, background 0).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np

from ..errors import StudioError
from .indexed_png import encode_indexed_png

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed member dates: the same frames give the same zip bytes

Label = tuple[str, tuple[int, int, int]]


def cvat_label_colors(class_names: list[str], palette_rgb: np.ndarray) -> tuple[list[Label], dict]:
    """The CVAT labelmap: ``background`` (0,0,0) first, then class i at position i + 1.

    CVAT (Datumaro) needs unique names and decodes colour masks by colour, so colours must be
    unique and not black: a repeated name gets ``_<class id>`` appended (ADE20K has two "screen"),
    a repeated colour the nearest free one (ADE20K's road and skyscraper share one), ``:`` in a
    name becomes ``_``. Returns ([(name, rgb)], {"renamed": {...}, "recolored": {...}}).
    """
    labels: list[Label] = [("background", (0, 0, 0))]
    names, colors = {"background"}, {(0, 0, 0)}
    renamed, recolored = {}, {}
    for i, (name, color) in enumerate(zip(class_names, palette_rgb)):
        label = name.replace(":", "_").strip() or f"class_{i}"
        if label in names:
            label = f"{label}_{i}"
        if label != name:
            renamed[f"{i}:{name}"] = label
        rgb = tuple(int(c) for c in color)
        if rgb in colors:
            rgb = _free_color(rgb, colors)
            recolored[label] = list(rgb)
        names.add(label)
        colors.add(rgb)
        labels.append((label, rgb))
    return labels, {"renamed": renamed, "recolored": recolored}


def _free_color(rgb: tuple[int, int, int], used: set) -> tuple[int, int, int]:
    """The nearest colour not in ``used`` (one channel moved at a time), so a clash stays close to the original."""
    for step in range(1, 256):
        for delta in ((step, 0, 0), (0, step, 0), (0, 0, step), (-step, 0, 0), (0, -step, 0), (0, 0, -step)):
            cand = tuple(min(255, max(0, c + d)) for c, d in zip(rgb, delta))
            if cand not in used:
                return cand
    raise StudioError("no free colour for the CVAT labelmap")


def cvat_palette(labels: list[Label]) -> np.ndarray:
    """Palette of the CVAT colour masks, whose pixel values are class id + 1 (the labelmap position).

    That is the Pascal VOC form (SegmentationClass PNGs are indexed by position in the label list,
    background 0): readers that expand the palette (OpenCV, so Datumaro and CVAT) get the labelmap's
    RGB colours, readers that keep indices (Pillow) get the labelmap positions.
    """
    return np.array([rgb for _, rgb in labels], np.uint8)


def labelmap_text(labels: list[Label]) -> str:
    """``labelmap.txt`` of the zip: CVAT matches mask colours to labels through it."""
    lines = ["# label:color_rgb:parts:actions"]
    lines += [f"{name}:{r},{g},{b}::" for name, (r, g, b) in labels]
    return "\n".join(lines) + "\n"


class CvatZipWriter:
    """Writes a CVAT zip one frame at a time, so the export needs no second pass over the masks.

    Members are stored (PNGs do not compress further) with fixed dates; ``finish()`` adds the
    labelmap and the image list and closes the file, ``close()`` abandons it.
    """

    def __init__(self, path: Path | str, labels: list[Label]):
        self._labels = labels
        self._palette = cvat_palette(labels)
        self._names: list[str] = []
        self._zip: zipfile.ZipFile | None = zipfile.ZipFile(path, "w", zipfile.ZIP_STORED)

    def add(self, name: str, class_map: np.ndarray) -> None:
        """``SegmentationClass/<name>.png`` for a uint8 class map (ids shift by one: 0 is background)."""
        png = encode_indexed_png(cv2.add(class_map, 1), self._palette)
        self._zip.writestr(zipfile.ZipInfo(f"SegmentationClass/{name}.png", ZIP_DATE), png)
        self._names.append(name)

    def finish(self) -> None:
        """Write ``labelmap.txt`` and ``ImageSets/Segmentation/default.txt`` and close the zip."""
        self._zip.writestr(zipfile.ZipInfo("labelmap.txt", ZIP_DATE), labelmap_text(self._labels))
        self._zip.writestr(zipfile.ZipInfo("ImageSets/Segmentation/default.txt", ZIP_DATE),
                           "".join(f"{name}\n" for name in self._names))
        self._zip.close()
        self._zip = None

    def close(self) -> None:
        """Close without finishing (after an error); never raises."""
        if self._zip is not None:
            try:
                self._zip.close()
            except Exception:  # noqa: BLE001 - the error that stopped the job matters, not this one
                pass
            self._zip = None
