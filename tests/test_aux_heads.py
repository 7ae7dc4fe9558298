"""Auxiliary heads (--aux-weight): they train, resume exactly, and never reach the shipped graph."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import run_command
from part_checks import check_shipped_recipe, rerun_with_a_resume

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def _args(data: Path, out: Path, epochs: int, aux: str = "0.4") -> list[str]:
    return ["train", "--variant", "tiny", "--data", str(data), "--out", str(out), "--epochs", str(epochs),
            "--batch", "4", "--crop", "96x128", "--limit", "8", "--val-limit", "2", "--eval-every", "1",
            "--warmup-iters", "2", "--lr", "1e-3", "--threads", "1", "--no-progress", "--aux-weight", aux]


def test_aux_heads_shapes_and_groups():
    from engine.training.aux_heads import AuxHeads, aux_param_groups
    from engine.training.trainer import TrainConfig, build_model

    model = build_model(TrainConfig(variant="small"))
    heads = AuxHeads("small", 11)
    feats = model.backbone(torch.zeros(1, 3, 64, 96))
    outs = heads(feats)
    assert len(outs) == len(feats) - 1 == 2
    assert [tuple(o.shape[2:]) for o in outs] == [tuple(f.shape[2:]) for f in feats[1:]]
    assert all(o.shape[1] == 11 for o in outs)
    groups = aux_param_groups(heads, 10.0, 0.01)
    names = [n for g in groups for n in g["names"]]
    assert len(names) == len(list(heads.parameters())) and all(n.startswith("aux.heads.") for n in names)
    assert {g["weight_decay"] for g in groups} == {0.0, 0.01} and {g["lr_mult"] for g in groups} == {10.0}


@pytest.mark.shared
def test_aux_run_resumes_exactly_changes_training_and_stays_out_of_the_model(camvid, tmp_path, capsys):
    straight, split, plain = tmp_path / "straight", tmp_path / "split", tmp_path / "plain"
    assert run_command(_args(camvid, straight, 2)) == 0
    cfg = json.loads((straight / "config.json").read_text())
    assert cfg["aux_weight"] == 0.4
    a, b = rerun_with_a_resume(straight, split, camvid)
    assert a["aux"] is not None and set(a["aux"]) == set(b["aux"])
    for key in a["aux"]:
        assert torch.equal(a["aux"][key], b["aux"][key]), key
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert any(n.startswith("aux.") for n in a["param_names"])

    # The same run without the heads trains other weights: the auxiliary loss reaches the backbone.
    assert run_command(_args(camvid, plain, 2, aux="0")) == 0
    c = torch.load(plain / "last.pth", weights_only=False)
    assert c["aux"] is None and set(c["model"]) == set(a["model"])  # the model has no aux keys
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"] if k.startswith("backbone."))
    best = torch.load(straight / "best.pth", weights_only=False)
    assert not any(k.startswith("aux") for k in best["state_dict"])

    # Shipping exports the TopFormer only, and the recipe records the part.
    check_shipped_recipe(straight, camvid, tmp_path, capsys, "aux_weight", 0.4, "aux heads x0.4")


def test_negative_aux_weight_is_one_line(tmp_path, capsys):
    data = tmp_path / "ds"
    assert run_command(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--aux-weight", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
