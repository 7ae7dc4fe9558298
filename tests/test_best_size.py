"""A model's best input size: measured by `models best-size`, recorded in the manifest, and a
cap on `full`/`half` (never on an explicit factor), shown next to the input size in the app."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.cli import run_command
from engine.models.registry import Registry
from engine.run.segmenter import Segmenter



@pytest.fixture()
def tiny_copy(tmp_path, shipped_models_dir) -> Path:
    """A writable models folder holding only the shipped camvid-tiny."""
    out = tmp_path / "models"
    out.mkdir()
    shutil.copy2(shipped_models_dir / "camvid-tiny.onnx", out)
    manifest = json.loads((shipped_models_dir / "manifest.json").read_text())
    manifest["models"] = [m for m in manifest["models"] if m["name"] == "camvid-tiny"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_best_size_caps_named_scales_only(tiny_copy):
    Registry(tiny_copy).update_input("camvid-tiny", best_long_side=640)
    seg = Segmenter.load("camvid-tiny", tiny_copy)
    assert seg.entry.best_long_side == 640
    assert seg.input_size((720, 1280), "full") == (352, 640)
    assert seg.input_size((720, 1280), "half") == (352, 640)
    assert seg.input_size((720, 1280), 1.0) == (704, 1280)  # an explicit factor is a measurement
    assert seg.input_size((360, 480), "full") == (352, 480)  # smaller frames are not enlarged
    assert "long side 640" in seg.input_note((720, 1280), "full")
    assert seg.input_note((720, 1280), 1.0) == "" and seg.input_note((360, 480), "full") == ""
    result = seg.segment(__import__("numpy").zeros((720, 1280, 3), "uint8"), "full")
    assert result.input_hw == (352, 640) and result.labels.shape == (720, 1280)
    Registry(tiny_copy).update_input("camvid-tiny", best_long_side=None)
    assert Segmenter.load("camvid-tiny", tiny_copy).input_size((720, 1280), "full") == (704, 1280)


def test_best_scale_runs_at_the_best_size_up_or_down(tiny_copy):
    from engine.scales import scale_name

    Registry(tiny_copy).update_input("camvid-tiny", best_long_side=960)
    seg = Segmenter.load("camvid-tiny", tiny_copy)
    assert seg.input_size((360, 480), "best") == (704, 960)  # enlarged 2x (720 rounded to the multiple 32)
    assert seg.input_size((360, 480), "full") == (352, 480)  # full never enlarges
    assert seg.input_size((720, 1280), "best") == seg.input_size((720, 1280), "full") == (544, 960)
    assert "long side 960" in seg.input_note((360, 480), "best") and seg.input_note((360, 480), "full") == ""
    assert scale_name("best") == scale_name(" Best ") == "best"
    Registry(tiny_copy).update_input("camvid-tiny", best_long_side=None)
    plain = Segmenter.load("camvid-tiny", tiny_copy)  # no best size measured: best is full
    assert plain.input_size((360, 480), "best") == (352, 480) and plain.input_note((360, 480), "best") == ""


@pytest.mark.shared
def test_eval_best_scale_equals_the_factor_it_resolves_to(shipped_models_dir, camvid, capsys):
    base = ["eval", "--model", "camvid-tiny", "--models-dir", str(shipped_models_dir),
            "--data", str(camvid), "--limit", "2", "--json"]
    assert run_command(base + ["--scale", "best"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert run_command(base + ["--scale", "2"]) == 0  # 480x360 frames, best long side 960
    two = json.loads(capsys.readouterr().out)
    assert best["scale"] == "best" and best["miou"] == two["miou"]


def test_stats_line_says_what_runs():
    from app.measure.stats import StatsSnapshot

    line = StatsSnapshot(model="camvid-base", input_size=(544, 960), scale="full",
                         input_note="the model's best size, long side 960").lines()[0]
    assert line == "camvid-base  960x544 (full: the model's best size, long side 960)"
    assert StatsSnapshot(model="m", input_size=(352, 640), scale="half").lines()[0] == "m  640x352 (half)"


@pytest.mark.shared
def test_best_size_command_measures_and_records(tiny_copy, camvid, capsys):
    data = str(camvid)
    args = ["models", "best-size", "camvid-tiny", "--models-dir", str(tiny_copy), "--data", data, "--factors", "0.5,1"]
    assert run_command(args) == 0
    out = capsys.readouterr().out
    entry = Registry(tiny_copy).get("camvid-tiny")
    measured = entry.input["best_measured"]
    assert set(measured["miou_by_factor"]) == {"0.5", "1"} and measured["frames_long_side"] == 480
    best = max(measured["miou_by_factor"], key=measured["miou_by_factor"].get)
    assert entry.best_long_side == round(float(best) * 480) and f"long side {entry.best_long_side}" in out
    assert "models best-size camvid-tiny" in measured["measured_by"]
    assert run_command(["models", "best-size", "camvid-tiny", "--models-dir", str(tiny_copy), "--clear"]) == 0
    assert Registry(tiny_copy).get("camvid-tiny").best_long_side is None
    capsys.readouterr()
    assert run_command(args[:-1] + ["1,x"]) == 2
    assert "--factors" in capsys.readouterr().err
