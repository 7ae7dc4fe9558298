"""Short clips and their single-video reference outputs, shared by tests/test_batch*.py.

Three clips cut from ../shared/videos with OpenCV (first frames, half resolution) and one corrupt
"video"; each clip annotated alone through the ordinary single-video job, the reference every
batch executor must reproduce byte for byte.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pytest

from engine.jobs import annotate as ann

REPO = Path(__file__).resolve().parent.parent
MODEL = "camvid-tiny"  # shipped in models/
SCALE = "half"
FRAMES = {"dashcam-highway-960x540.mp4": 12, "highway-1280x720-short.mp4": 12, "indoor-people-768x432.mp4": 20}
CORRUPT = "broken.mp4"


def cut_clip(src: Path, dst: Path, frames: int) -> None:
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = None
    try:
        for _ in range(frames):
            ok, image = cap.read()
            assert ok, f"cannot read {src}"
            image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
            if writer is None:
                writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (image.shape[1], image.shape[0]))
            writer.write(image)
    finally:
        cap.release()
        if writer is not None:
            writer.release()


def masks_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / ann.MASKS_DIR).glob("*.png"))}


def cli_args(*args) -> list[str]:
    return [sys.executable, str(REPO / "main.py"), "annotate", *map(str, args)]


@pytest.fixture(scope="session")
def clips(tmp_path_factory, videos) -> Path:
    """A folder with the three clips; the corrupt file lies beside it, not in it."""
    root = tmp_path_factory.mktemp("batch-clips")
    folder = root / "clips"
    folder.mkdir()
    for name, frames in FRAMES.items():
        cut_clip(videos / name, folder / name, frames)
    (root / CORRUPT).write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    return folder


@pytest.fixture(scope="session")
def singles(tmp_path_factory, clips) -> dict[str, dict[str, bytes]]:
    """Masks of each clip annotated alone (the ordinary single-video job, default threads)."""
    root = tmp_path_factory.mktemp("batch-singles")
    refs = {}
    for name in FRAMES:
        out = root / Path(name).stem
        ann.AnnotateJob(ann.AnnotateOptions(video=clips / name, model=MODEL, out=out, scale=SCALE)).prepare().run()
        refs[Path(name).stem] = masks_of(out)
        assert len(refs[Path(name).stem]) == FRAMES[name]
    return refs


def assert_identical(out: Path, singles: dict[str, dict[str, bytes]], names=None) -> None:
    for stem in names or singles:
        got = masks_of(out / stem)
        assert got.keys() == singles[stem].keys(), stem
        assert got == singles[stem], f"{stem}: masks differ from the single-video run"


def assert_same_folder(got: Path, want: Path) -> None:
    """Every output file of a job folder byte for byte (masks, overlay.mp4, stats.csv, cvat.zip);
    summary.json only in its settings (its ``run`` section says what each run did)."""
    import json

    masks = sorted(p.name for p in (want / ann.MASKS_DIR).iterdir())
    assert sorted(p.name for p in (got / ann.MASKS_DIR).iterdir()) == masks
    for name in masks:
        assert (got / ann.MASKS_DIR / name).read_bytes() == (want / ann.MASKS_DIR / name).read_bytes(), name
    for name in (ann.OVERLAY_FILE, ann.STATS_FILE, ann.CVAT_FILE):
        assert (got / name).read_bytes() == (want / name).read_bytes(), f"{name} differs from the single run"
    summary = json.loads((got / ann.SUMMARY_FILE).read_text())
    assert summary["settings"] == json.loads((want / ann.SUMMARY_FILE).read_text())["settings"]
