"""Checks shared by the tests of training-only parts (auxiliary heads, LwF): a run stopped
and resumed ends where an uninterrupted one does, and the shipped model is the TopFormer
alone while the manifest and ``train --report`` record the part."""
from __future__ import annotations

import json
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
