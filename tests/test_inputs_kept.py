"""No command writes over, or removes, its own input: the video or picture it was given.

An atomic write renames its result over the target, and ``annotate --overwrite`` removes its
own names in the output folder, so an input reached by an output's name (``./x``, a symlink, a
hard link, a video named ``overlay.mp4`` in the output folder) would be lost.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parent.parent
CLIP = "indoor-people-768x432.mp4"
pytestmark = pytest.mark.shared


def run_main(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_segment_and_compare_never_write_over_their_input(tmp_path, shared_dir, videos):
    shutil.copy(shared_dir / "datasets" / "ade20k" / "samples" / "ADE_val_00000001.jpg", tmp_path / "photo.jpg")
    shutil.copy(videos / CLIP, tmp_path / "clip.mp4")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "photo.jpg")
    os.link(tmp_path / "clip.mp4", tmp_path / "hard.mp4")
    cv2.imwrite(str(tmp_path / "scan.png"), cv2.imread(str(tmp_path / "photo.jpg")))
    before = contents(tmp_path)
    cases = [
        ("segment", "photo.jpg", "--out", "photo.jpg"),
        ("segment", "photo.jpg", "--out", "./link.jpg"),
        ("segment", str(tmp_path / "scan.png"), "--out", "o.png", "--labels", "scan.png"),
        ("segment", "clip.mp4", "--out", "hard.mp4"),
        ("compare", "clip.mp4", "--models", "tiny,base", "--frames", "2", "--out", "clip.mp4"),
    ]
    for args in cases:
        assert "is the input" in one_line_error(run_main(*args, cwd=tmp_path)), args
    assert contents(tmp_path) == before


def test_annotate_never_replaces_or_removes_its_video(tmp_path, videos):
    """``annotate overlay.mp4 --out . --overwrite`` removed the video before reading it."""
    shutil.copy(videos / CLIP, tmp_path / "overlay.mp4")
    (tmp_path / "masks").mkdir()
    shutil.copy(videos / CLIP, tmp_path / "masks" / "clip.mp4")
    os.link(tmp_path / "overlay.mp4", tmp_path / "hard.mp4")
    before = contents(tmp_path)
    select = ("--model", "tiny", "--end", "0.5", "--no-progress")
    for video, clash in [("overlay.mp4", "is its overlay.mp4"), ("./overlay.mp4", "is its overlay.mp4"),
                         ("hard.mp4", "is its overlay.mp4"), ("masks/clip.mp4", "lies in its masks/")]:
        for extra in ((), ("--overwrite",), ("--resume",)):
            error = one_line_error(run_main("annotate", video, "--out", ".", *select, *extra, cwd=tmp_path))
            assert f"the video {Path(video)} {clash}, which annotate writes" in error, (video, extra)
    assert contents(tmp_path) == before and not (tmp_path / ".annotate.lock").exists()
    # beside its outputs, under another name, the video stays, --overwrite included
    for extra in ((), ("--overwrite",)):
        proc = run_main("annotate", "hard.mp4", "--out", "results", *select, *extra, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    shutil.rmtree(tmp_path / "results")
    assert contents(tmp_path) == before
