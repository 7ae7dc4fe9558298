"""`main.py compare` and engine/jobs/compare.py on the shipped models and real clips (few frames: CI has 2 cores)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from engine.cli import run_command
from engine.jobs.compare import (AgreementMeter, PaneSet, PaneSpec, agreement_pct, confusion, cross_specs, miou_pct,
                            parse_pane_spec, parse_pane_specs)
from engine.errors import StudioError
from engine.models.registry import Registry

DASHCAM = "dashcam-highway-960x540.mp4"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry(None)


def compare_json(capsys, *args: str) -> list[dict]:
    assert run_command(["compare", *args, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    data = json.loads(out[0])
    assert list(data) == ["rows"]
    return data["rows"]


# -- specs and metrics (no ../shared) ----------------------------------------------------------------------
def test_pane_specs_resolve_short_names_and_scales(registry):
    assert parse_pane_spec("tiny:half", registry) == PaneSpec("camvid-tiny", "half")
    assert parse_pane_spec("camvid-base", registry) == PaneSpec("camvid-base", "full")
    assert parse_pane_spec("Small:0.5", registry) == PaneSpec("camvid-small", "half")
    assert parse_pane_spec("tiny:0.75", registry).scale == "0.75"
    specs = cross_specs("tiny,base", "full,half", registry)
    assert [(s.model, s.scale) for s in specs] == [("camvid-tiny", "full"), ("camvid-tiny", "half"),
                                                   ("camvid-base", "full"), ("camvid-base", "half")]
    assert [s.scale for s in cross_specs("tiny:half,base", "full", registry)] == ["half", "full"]


@pytest.mark.parametrize("text", ["nope:full", "tiny:quarter", "tiny:", ":half", "tiny:half:full", "tiny,,base"])
def test_bad_pane_specs_are_one_clear_error(registry, text):
    with pytest.raises(StudioError) as info:
        parse_pane_specs(text, registry)
    assert "\n" not in str(info.value)


def test_pane_count_is_checked(registry):
    with pytest.raises(StudioError, match="1 to 4"):
        parse_pane_specs("tiny,tiny,tiny,tiny,tiny", registry)


def test_agreement_and_miou_against_a_reference():
    ref = np.zeros((4, 4), np.uint8)
    ref[:, 2:] = 1
    same = confusion(ref, ref, 3)
    assert agreement_pct(same) == 100.0 and miou_pct(same) == 100.0
    other = ref.copy()
    other[:, 3] = 2  # a quarter of the pixels change class 1 -> 2
    m = confusion(ref, other, 3)
    assert agreement_pct(m) == pytest.approx(75.0)
    # IoU: class 0 = 1, class 1 = 4/8, class 2 = 0/4 -> mean 0.5
    assert miou_pct(m) == pytest.approx(50.0)
    # the OpenCV path (uint8, few classes) counts exactly like the numpy one
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 12, (54, 96), dtype=np.uint8), rng.integers(0, 12, (54, 96), dtype=np.uint8)
    assert (confusion(a, b, 12) == confusion(a.astype(np.int64), b.astype(np.int64), 12)).all()
    assert confusion(a, b, 12).sum() == a.size
    meter = AgreementMeter(3, window=1)
    meter.add(ref, other)
    meter.add(ref, ref)  # the window holds only the newest frame
    assert meter.agreement_pct == 100.0 and meter.last_agreement_pct == 100.0


# -- the real thing -------------------------------------------------------------------------------------
@pytest.mark.shared
def test_cli_json_one_row_per_model_and_scale(capsys, videos):
    rows = compare_json(capsys, str(videos / DASHCAM), "--models", "tiny,camvid-base", "--scales", "full,half",
                        "--frames", "3")
    assert [(r["model"], r["scale"]) for r in rows] == [("camvid-tiny", "full"), ("camvid-tiny", "half"),
                                                       ("camvid-base", "full"), ("camvid-base", "half")]
    for r in rows:
        assert {"model", "scale", "ms_median", "fps", "agreement_pct", "miou_vs_ref"} <= set(r)
        assert 0 < r["ms_median"] < 20000 and r["fps"] == pytest.approx(1000 / r["ms_median"], rel=0.02)
        assert 0 <= r["agreement_pct"] <= 100 and 0 <= r["miou_vs_ref"] <= 100
    assert rows[0]["agreement_pct"] == 100.0 and rows[0]["miou_vs_ref"] == 100.0  # the reference
    assert 50 < rows[1]["agreement_pct"] < 100  # half is a different segmentation, but of the same road
    tiny_full, tiny_half, base_full, base_half = (r["ms_median"] for r in rows)
    assert tiny_half < tiny_full and base_half < base_full
    assert tiny_full < base_full


@pytest.mark.shared
def test_a_model_compared_with_itself_agrees_completely(capsys, videos):
    rows = compare_json(capsys, str(videos / "indoor-people-768x432.mp4"), "--models", "tiny:half,camvid-tiny:half",
                        "--frames", "2")
    assert rows[1]["agreement_pct"] == 100.0 and rows[1]["miou_vs_ref"] == 100.0


@pytest.mark.shared
def test_side_by_side_video_reads_back(capsys, videos, tmp_path):
    out = tmp_path / "side.mp4"
    assert run_command(["compare", str(videos / DASHCAM), "--models", "tiny", "--scales", "half,full",
                        "--frames", "3", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "camvid-tiny" in table and "reference" in table
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    assert len(frames) == 3
    assert frames[0].shape == (540, 2 * 960, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["side.mp4"]  # no temporary left behind
    # each pane carries its label box (dark) at the top left, and the panes differ (two scales)
    assert frames[0][10:20, 10:60].mean() < 80 and frames[0][10:20, 970:1020].mean() < 80


@pytest.mark.shared
def test_three_panes_take_no_longer_than_the_models_one_after_another(videos):
    """CPU sharing: a frame through 3 panes costs about the sum of the three alone, never much more."""
    specs = [PaneSpec("camvid-tiny", "half"), PaneSpec("camvid-tiny", "full"), PaneSpec("camvid-small", "half")]
    cap = cv2.VideoCapture(str(videos / DASHCAM))
    frames = [cap.read()[1] for _ in range(5)]
    cap.release()
    panes = PaneSet(specs)
    panes.warm_up(frames[0])
    alone = []
    for f in frames:  # interleaved, so a busy machine slows both measurements alike
        alone.append(sum(p.segmenter.segment(f, p.spec.scale).inference_ms for p in panes.panes))
        panes.segment(f)
    alone_ms = sorted(alone)[len(alone) // 2]
    together = panes.frame_ms.median
    assert together <= 1.5 * alone_ms + 10.0, (together, alone)


@pytest.mark.shared
@pytest.mark.parametrize("args, words", [
    (["--models", "nope"], "nope"),
    (["--models", "tiny:quarter"], "quarter"),
    (["--models", "tiny", "--scales", "full,,half"], "scale"),
    (["--models", "tiny", "--out", "OUTDIR"], "video file"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, videos, tmp_path, args, words):
    args = [str(tmp_path) if a == "OUTDIR" else a for a in args]
    assert run_command(["compare", str(videos / DASHCAM), *args, "--frames", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0]


def test_corrupt_or_missing_video_is_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(range(256)) * 40)
    for path in (bad, tmp_path / "missing.mp4"):
        assert run_command(["compare", str(path), "--models", "tiny", "--out", str(tmp_path / "o.mp4")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and path.name in err[0]
    assert not (tmp_path / "o.mp4").exists()
