"""Datasets: class names and colours of the known ones (engine/data/<name>.json), and the
torch-free readers of a labelled folder in the CamVid layout.

Layout: ``DIR/images/<split>/NAME.jpg|png`` and ``DIR/labels/<split>/NAME.png`` (single
channel class ids). Any folder in that layout works, not only the shared CamVid copy.
Evaluation and training both read data through this module, so ``engine.jobs.evaluate`` never
needs the training package (or torch).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import StudioError

_DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # RGB per class
    ignore_index: int | None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def known_datasets() -> list[str]:
    return sorted(p.stem for p in _DATA_DIR.glob("*.json"))


def dataset_for_classes(num_classes: int) -> str | None:
    """The known dataset with this many classes, or None (an official checkpoint names none)."""
    matches = [name for name in known_datasets() if dataset_info(name).num_classes == num_classes]
    return matches[0] if len(matches) == 1 else None


@lru_cache(maxsize=None)
def dataset_info(name: str) -> DatasetInfo:
    path = _DATA_DIR / f"{name}.json"
    if not path.is_file():
        raise StudioError(f"unknown dataset {name!r}; known: {', '.join(known_datasets())}")
    data = json.loads(path.read_text())
    return DatasetInfo(
        name=data["name"],
        title=data["title"],
        classes=tuple(c["name"] for c in data["classes"]),
        palette=tuple(tuple(c["color"]) for c in data["classes"]),
        ignore_index=data["ignore_index"],
    )


# --------------------------------------------------------------------------- labelled folders

IMAGE_EXTS = (".jpg", ".jpeg", ".png")
NO_DRIVE = "-"  # drive of a frame whose name has no "DRIVE_" prefix


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    label: Path

    @property
    def drive(self) -> str:
        return drive_of(self.name)


def drive_of(name: str) -> str:
    """The recording (drive) a frame comes from: its name's prefix before the first ``_``
    (CamVid: 0001TP, 0006R0, 0016E5). Neighbouring frames of one drive look alike, so
    accuracy on a drive the model never saw is what predicts unseen footage."""
    head, sep, _ = name.partition("_")
    return head if sep and head else NO_DRIVE


def list_samples(root: str | Path, split: str) -> list[Sample]:
    """Pairs of (image, label) files of one split, sorted by name.

    Raises StudioError for a missing folder, an empty split or images without labels,
    because those are user mistakes the CLI reports in one line.
    """
    root = Path(root)
    if not root.is_dir():
        raise StudioError(f"dataset folder not found: {root}")
    img_dir, lbl_dir = root / "images" / split, root / "labels" / split
    if not img_dir.is_dir() or not lbl_dir.is_dir():
        raise StudioError(f"{root} has no split {split!r} (expected {img_dir} and {lbl_dir})")
    samples = []
    for img in sorted(img_dir.iterdir()):
        if img.suffix.lower() not in IMAGE_EXTS:
            continue
        lbl = lbl_dir / f"{img.stem}.png"
        if not lbl.is_file():
            raise StudioError(f"no label for {img.name}: expected {lbl}")
        samples.append(Sample(img.stem, img, lbl))
    if not samples:
        raise StudioError(f"split {split!r} of {root} is empty (no images in {img_dir})")
    return samples


def parse_splits(text: str | Sequence[str]) -> list[str]:
    """``"train,val"`` (or a list) -> ["train", "val"]: several splits read as one set."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    splits = [p.strip() for p in parts if p.strip()]
    if not splits:
        raise StudioError("no split given (e.g. val or train,val)")
    return splits


def select_samples(root: str | Path, splits: str | Sequence[str], drives: Iterable[str] | None = None,
                   exclude_drives: Iterable[str] | None = None) -> list[Sample]:
    """Samples of one or more splits, optionally only (or all but) some drives.

    A drive asked for that no frame belongs to is a user mistake (a typo in
    ``--drive``/``--holdout-drive`` would otherwise silently select nothing or everything)."""
    samples: list[Sample] = []
    seen: set[str] = set()
    for split in parse_splits(splits):
        for s in list_samples(root, split):
            if s.name in seen:
                raise StudioError(f"frame {s.name} is in more than one of the splits {splits}")
            seen.add(s.name)
            samples.append(s)
    present = {s.drive for s in samples}
    for flag, wanted in (("drive", drives), ("excluded drive", exclude_drives)):
        missing = sorted(set(wanted or ()) - present)
        if missing:
            raise StudioError(f"{flag} {', '.join(missing)} not in {root} {','.join(parse_splits(splits))} "
                              f"(drives there: {', '.join(sorted(present))})")
    if drives is not None:
        samples = [s for s in samples if s.drive in set(drives)]
    if exclude_drives:
        samples = [s for s in samples if s.drive not in set(exclude_drives)]
    if not samples:
        raise StudioError(f"no frames left in {root} {','.join(parse_splits(splits))} after the drive selection")
    return samples


def read_image_bgr(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise StudioError(f"cannot read image {path}")
    return img


def read_label(path: Path) -> np.ndarray:
    lbl = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lbl is None:
        raise StudioError(f"cannot read label {path}")
    if lbl.ndim == 3:  # a label saved as 3 identical channels
        lbl = lbl[..., 0]
    return lbl.astype(np.uint8)
