"""Checks shared by the tests of training-only parts (auxiliary heads, LwF, SAM, MixStyle): a run stopped
and resumed ends where an uninterrupted one does, and the shipped model is the TopFormer
alone while the manifest and ``train --report`` record the part."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.cli import run_command


def rerun_with_a_resume(straight: Path, split: Path, data: Path) -> tuple[dict, dict]:
    """Run ``straight``'s config again into ``split``, stopped after one epoch and resumed
    from the command line; returns both ``last.pth`` checkpoints."""
    import torch
    from engine.training.trainer import TrainConfig, train

    cfg = json.loads((straight / "config.json").read_text())
    cfg.update(out=str(split), crop=tuple(cfg["crop"]), scale_range=tuple(cfg["scale_range"]))
    train(TrainConfig(**cfg), stop_after_epochs=1)
    assert run_command(["train", "--out", str(split), "--resume", "--data", str(data), "--threads", "1",
                        "--no-progress"]) == 0
    return (torch.load(straight / "last.pth", weights_only=False),
            torch.load(split / "last.pth", weights_only=False))


def check_shipped_recipe(run: Path, data: Path, tmp_path: Path, capsys, key: str, value, words: str) -> None:
    """Ship ``run`` into a scratch models folder: its recipe holds ``key: value`` and the
    ablation table of the run says ``words``."""
    pytest.importorskip("onnx")
    from engine.training.ship import ship_run

    ship_run(run, "part-test", models_dir=tmp_path / "models", data=data, limit=2)
    (entry,) = json.loads((tmp_path / "models" / "manifest.json").read_text())["models"]
    assert entry["training"]["recipe"][key] == value
    capsys.readouterr()
    assert run_command(["train", "--report", str(run)]) == 0
    assert words in capsys.readouterr().out


def part_args(flag: str) -> Callable[[Path, Path, str], list[str]]:
    """The short Tiny run of these tests (two epochs on 8 frames), with ``flag VALUE`` added."""
    def args(data: Path, out: Path, value: str) -> list[str]:
        return ["train", "--variant", "tiny", "--data", str(data), "--out", str(out), "--epochs", "2",
                "--batch", "4", "--crop", "96x128", "--limit", "8", "--val-limit", "2", "--eval-every", "1",
                "--warmup-iters", "2", "--lr", "1e-3", "--threads", "1", "--no-progress", flag, value]
    return args


def check_part_run(args: Callable[[Path, Path, str], list[str]], data: Path, tmp_path: Path, capsys,
                   on: str, key: str, value, words: str) -> None:
    """A run with the part switched on (``args(data, out, on)``) resumes bit-identically, ends
    with other backbone weights than the same run with it off (``"0"``), and is recorded in the
    shipped model's recipe as ``key: value`` and in ``train --report`` as ``words``."""
    import torch

    straight, split, plain = tmp_path / "straight", tmp_path / "split", tmp_path / "plain"
    assert run_command(args(data, straight, on)) == 0
    assert json.loads((straight / "config.json").read_text())[key] == value
    a, b = rerun_with_a_resume(straight, split, data)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k

    assert run_command(args(data, plain, "0")) == 0
    c = torch.load(plain / "last.pth", weights_only=False)
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"] if k.startswith("backbone."))

    check_shipped_recipe(straight, data, tmp_path, capsys, key, value, words)
