"""--decay-to-start (engine/training/anchor.py): the pull towards the start, in training and on resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import run_command
from fake_camvid import fake_camvid


def _args(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return ["train", "--variant", "tiny", "--data", str(data), "--out", str(out), "--epochs", str(epochs),
            "--batch", "2", "--crop", "32x64", "--eval-every", "1", "--warmup-iters", "1", "--lr", "1e-3",
            "--threads", "1", "--no-progress", *extra]


@pytest.mark.torch
def test_pull_moves_each_weight_that_share_of_the_way_back():
    torch = pytest.importorskip("torch")
    from engine.training.anchor import StartAnchor

    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    anchor = StartAnchor(model, strength=50.0, start_state=start)
    with torch.no_grad():
        model.weight.add_(1.0)
    anchor.pull(lr=0.004)  # 0.004 x 50 = 0.2 of the way back
    assert torch.allclose(model.weight, start["weight"] + 0.8)
    assert torch.equal(model.bias, start["bias"])
    assert anchor.distance() == pytest.approx(0.8 * 6 / 8)


@pytest.mark.torch
def test_decay_to_start_keeps_a_run_near_its_init_and_resumes_exactly(tmp_path, capsys):
    """A strong pull ends nearer the --init weights than no pull; the setting is recorded; a run
    interrupted and resumed gives the same weights as one straight run (the start is computed
    again on resume); without --init, or negative, it is one line and exit code 2."""
    torch = pytest.importorskip("torch")
    data = fake_camvid(tmp_path / "ds")
    root = tmp_path / "root"
    assert run_command(_args(data, root, 1)) == 0
    init = ["--init", str(root / "last.pth")]

    free, pulled = tmp_path / "free", tmp_path / "pulled"
    assert run_command(_args(data, free, 2, *init)) == 0
    assert run_command(_args(data, pulled, 2, *init, "--decay-to-start", "2000")) == 0
    assert json.loads((pulled / "config.json").read_text())["decay_to_start"] == 2000

    start = torch.load(root / "last.pth", weights_only=False)["ema"]["state"]

    def distance(run: Path) -> float:
        model = torch.load(run / "last.pth", weights_only=False)["model"]
        keys = [k for k, v in model.items() if v.is_floating_point() and "running" not in k]
        return sum(float((model[k] - start[k]).abs().sum()) for k in keys) / sum(model[k].numel() for k in keys)

    assert distance(pulled) < 0.5 * distance(free)
    logged = [json.loads(line) for line in (pulled / "log.jsonl").read_text().splitlines()]
    assert [r["distance_from_start"] > 0 for r in logged] == [True, True]
    assert logged[-1]["distance_from_start"] == pytest.approx(distance(pulled), rel=1e-4)
    assert "distance_from_start" not in (free / "log.jsonl").read_text()

    from engine.training.trainer import TrainConfig, train

    split = tmp_path / "split"
    cfg = TrainConfig.from_saved(json.loads((pulled / "config.json").read_text()), out=str(split))
    train(cfg, stop_after_epochs=1)
    assert run_command(["train", "--out", str(split), "--resume", "--no-progress"]) == 0
    a = torch.load(pulled / "last.pth", weights_only=False)["model"]
    b = torch.load(split / "last.pth", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    capsys.readouterr()
    assert run_command(_args(data, tmp_path / "no-init", 1, "--decay-to-start", "10")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--decay-to-start needs --init" in err[0]
    assert run_command(_args(data, tmp_path / "negative", 1, *init, "--decay-to-start", "-1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must be 0 (off) or more" in err[0]
