"""The measuring modes run the real window as a subprocess: benchmark JSON and screenshot PNG."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import cv2
import pytest

from app.launch import build_parser

from .conftest import INDOOR

pytestmark = [pytest.mark.gui]
REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def run_main(args: list[str], tmp_path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path / "config"))
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_parser_accepts_the_documented_options():
    args = build_parser().parse_args(["--source", "0", "--model", "m", "--models-dir", "d",
                                      "--benchmark-frames", "3", "--scale", "half"])
    assert (args.source, args.model, args.models_dir, args.benchmark_frames, args.scale) == ("0", "m", "d", 3, "half")
    assert build_parser().parse_args(["--fullscreen"]).fullscreen is True


@pytest.mark.shared
def test_benchmark_prints_one_json_line(shipped_models_dir, videos, tmp_path):
    proc = run_main(["--source", str(videos / INDOOR), "--benchmark-frames", "6", "--models-dir",
                     str(shipped_models_dir), "--model", "tiny", "--scale", "half"], tmp_path)  # tiny: camvid-tiny
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    report = json.loads(lines[0])
    assert report["frames"] == 6 and report["model"] == "camvid-tiny" and report["scale"] == "half"
    assert report["input_size"] == [224, 384] and report["frame_size"] == [432, 768]
    assert report["input_note"] == ""  # Tiny records no best size: half is what runs
    assert report["source_fps"] > 0 and report["e2e_fps"] > 0 and report["inference_ms_median"] > 0
    assert report["frames_read"] >= report["frames"] and 0 <= report["frames_dropped"] < report["frames_read"]
    assert 0 <= report["ui_stall_max_ms"] < 2000
    assert report["ui_tick_gap_max_ms"] >= report["ui_tick_interval_ms"]
    assert report["gc_collections"] >= 0 and 0 <= report["gc_pause_max_ms"] < 2000
    assert report["gc_collections_off_ui_thread"] == 0
    assert report["notices"] == []  # random models record no validation confidence: no scene-fit hint


def test_benchmark_reports_errors_and_exits_2(tmp_path):
    proc = run_main(["--source", str(tmp_path / "missing.mp4"), "--benchmark-frames", "3",
                     "--models-dir", str(tmp_path / "none")], tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == "" and "missing.mp4 does not exist" in proc.stderr


@pytest.mark.shared
def test_benchmark_without_a_model_is_refused_before_the_window(tmp_path, videos):
    """The window would play the video unsegmented and never count a frame (the watchdog, 300 s)."""
    broken, empty = tmp_path / "broken", tmp_path / "empty"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    empty.mkdir()
    for models, message in ((broken, "is not a valid model manifest"), (empty, "no model is installed in"),
                            (tmp_path / "absent", "no model is installed in")):
        proc = run_main(["--source", str(videos / INDOOR), "--benchmark-frames", "3", "--models-dir", str(models)],
                        tmp_path, timeout=60)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr.count("\n") == 1 and message in proc.stderr  # before Qt: one line, no plugin chatter


@pytest.mark.shared
def test_benchmark_of_a_still_is_refused_at_once(shipped_models_dir, shared_dir, tmp_path):
    """A picture is segmented once, so N frames never come: refused when it opens, not at the watchdog."""
    picture = shared_dir / "datasets" / "ade20k" / "samples" / "ADE_val_00000002.jpg"
    one = tmp_path / "one.avi"
    writer = cv2.VideoWriter(str(one), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    writer.write(cv2.resize(cv2.imread(str(picture)), (320, 240)))
    writer.release()
    cases = [(picture, "is a still picture", []), (one, "is a video of one frame", []),
             (picture, "is a still picture", ["--compare", "tiny:half,tiny:full"])]  # the compare view's too
    for source, what, compare in cases:
        started = time.monotonic()
        proc = run_main(["--source", str(source), "--benchmark-frames", "5", "--models-dir", str(shipped_models_dir),
                         *compare], tmp_path, timeout=120)
        assert proc.returncode == 2 and proc.stdout == "" and time.monotonic() - started < 60
        assert f"{source.name} {what}" in proc.stderr and f"bench --frame {source}" in proc.stderr


@pytest.mark.shared
def test_screenshot_saves_the_window(shipped_models_dir, videos, tmp_path):
    out = tmp_path / "shot.png"
    proc = run_main(["--source", str(videos / INDOOR), "--models-dir", str(shipped_models_dir), "--model",
                     "camvid-tiny", "--scale", "half", "--screenshot", str(out), "--screenshot-after", "0.5",
                     "--window-size", "1200x760"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    image = cv2.imread(str(out))
    assert image is not None and image.shape[:2] == (760, 1200)
