"""Multi-scale inference (--multiscale): the averaged probabilities, eval and annotate with it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.cli import run_command
from engine.errors import StudioError
from engine.io.indexed_png import read_mask
from engine.run.multiscale import probabilities_on_grid, segment_multiscale
from engine.run.segmenter import Segmenter
from engine.scales import parse_factors

REPO = Path(__file__).resolve().parent.parent
MODEL = "camvid-tiny"


@pytest.fixture(scope="module")
def seg(shipped_models_dir) -> Segmenter:
    return Segmenter.load(MODEL, shipped_models_dir, threads=2)


def test_parse_factors():
    assert parse_factors("1,2") == (1.0, 2.0) and parse_factors(" 0.5 , 1.5 ") == (0.5, 1.5)
    for bad in ("", "1,,", "1,x", "1,1", "1,9"):
        with pytest.raises(StudioError):
            parse_factors(bad)


def test_probabilities_on_grid_are_a_softmax_and_resize_like_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (11, 9, 13)).astype(np.float32)
    same = probabilities_on_grid(logits, (9, 13))
    assert np.allclose(same.sum(0), 1.0, atol=1e-5)
    assert np.allclose(same, torch.softmax(torch.from_numpy(logits), 0).numpy(), atol=1e-6)
    up = probabilities_on_grid(logits, (27, 39))
    ref = torch.nn.functional.interpolate(torch.from_numpy(logits)[None], size=(27, 39), mode="bilinear",
                                          align_corners=False)[0]
    assert np.allclose(up, torch.softmax(ref, 0).numpy(), atol=1e-4)


@pytest.mark.shared
def test_one_factor_agrees_with_segment_and_two_differ(seg, camvid):
    frame = cv2.imread(str(sorted((camvid / "images" / "val").iterdir())[0]))
    single = seg.segment(frame, 1.0)
    one = segment_multiscale(seg, frame, (1.0,))
    assert one.labels.shape == frame.shape[:2] and one.labels.dtype == np.uint8
    assert np.mean(one.labels == single.labels) > 0.999  # the log of a softmax, upsampled, argmaxed
    assert one.confidence == pytest.approx(single.confidence, abs=1e-3)
    two = segment_multiscale(seg, frame, (1.0, 2.0))
    assert two.input_hw == seg.input_size(frame.shape[:2], 2.0)
    at2 = seg.segment(frame, 2.0).labels
    changed = np.mean(two.labels != single.labels)
    assert 0.001 < changed < 0.2 and np.mean(two.labels != at2) < changed + 0.2


@pytest.mark.shared
def test_eval_multiscale_json_and_errors(shipped_models_dir, camvid, capsys):
    base = ["eval", "--model", MODEL, "--models-dir", str(shipped_models_dir), "--data", str(camvid),
            "--limit", "3", "--json"]
    assert run_command(base + ["--multiscale", "1,2"]) == 0
    ms = json.loads(capsys.readouterr().out)
    assert run_command(base + ["--scale", "1"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert ms["scale"] == "multiscale 1,2" and ms["images"] == 3
    assert ms["miou"] != one["miou"]
    assert run_command(base + ["--multiscale", "1,2", "--scale", "half"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exclude each other" in err[0]


@pytest.mark.shared
def test_annotate_multiscale_masks_settings_and_resume(tmp_path, seg, shipped_models_dir, videos):
    video, out = videos / "highway-1280x720-short.mp4", tmp_path / "ms"

    def annotate(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "main.py"), "annotate", str(video), "--model", MODEL,
                               "--models-dir", str(shipped_models_dir), "--out", str(out), "--end", "0.2",
                               "--formats", "masks", "--no-progress", *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=300)

    proc = annotate("--multiscale", "0.5,1")
    assert proc.returncode == 0, proc.stderr
    assert "multiscale 0.5,1 (largest input 1280x704)" in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["multiscale"] == [0.5, 1.0]
    cap = cv2.VideoCapture(str(video))
    for index in range(5):
        ok, frame = cap.read()
        assert ok
        expect = segment_multiscale(seg, frame, (0.5, 1.0)).labels
        got = read_mask(out / "masks" / f"frame_{index:06d}.png")
        assert np.array_equal(got, expect), index
    cap.release()
    # A resume must ask for the same factors; plain full scale is other settings.
    again = annotate("--resume")
    assert again.returncode == 2 and "other settings" in again.stderr
    assert annotate("--multiscale", "0.5,1", "--resume").returncode == 0


@pytest.mark.shared
def test_segment_image_multiscale_writes_the_averaged_labels(tmp_path, seg, shipped_models_dir, camvid, capsys):
    image = sorted((camvid / "images" / "val").iterdir())[1]
    out, labels = tmp_path / "o.png", tmp_path / "l.png"
    args = ["segment", str(image), "--model", MODEL, "--models-dir", str(shipped_models_dir), "--out", str(out)]
    assert run_command(args + ["--labels", str(labels), "--multiscale", "1,2"]) == 0
    assert "multiscale 1,2" in capsys.readouterr().out
    expect = segment_multiscale(seg, cv2.imread(str(image)), (1.0, 2.0)).labels
    assert np.array_equal(cv2.imread(str(labels), cv2.IMREAD_UNCHANGED), expect)
    assert run_command(args + ["--multiscale", "1,2", "--scale", "half"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --multiscale and --scale exclude each other")
