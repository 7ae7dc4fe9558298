"""Exposure normalisation (engine/models/exposure.py): dark frames brightened to a target mean,
the same rule in training (numpy) and in the shipped graph (ONNX), recorded in the manifest."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.cli import run_command
from engine.errors import StudioError
from engine.models.exposure import brighten, check_target, exposure_gain

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_gain_brightens_dark_frames_only_and_clips():
    dark = np.array([[[10, 20, 30], [200, 60, 0]]], np.uint8)  # mean 53.33
    out = brighten(dark, 80.0)
    assert exposure_gain(dark.mean(), 80.0) == pytest.approx(1.5)
    assert out.tolist() == [[[15, 30, 45], [255, 90, 0]]]  # one gain on every channel, clipped at 255
    bright = np.full((2, 2, 3), 120, np.uint8)
    assert brighten(bright, 100.0) is bright  # never darkened
    assert brighten(dark, None) is dark
    assert check_target(0) is None and check_target(None) is None and check_target(100) == 100.0
    for bad in (-1.0, 256.0, float("nan")):
        with pytest.raises(StudioError, match="--exposure-target must be"):
            check_target(bad)


@pytest.mark.torch
def test_graph_applies_the_training_rule_and_reads_back(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from engine.models.export import DeployGraph, export_onnx
    from engine.models.graph import decode_metadata
    from engine.models.topformer import create_model
    from engine.training.onnx_weights import onnx_state

    state, _, _ = onnx_state(MODELS / "camvid-tiny.onnx")  # real weights, not a random network
    model = create_model("tiny", 11).eval()
    model.load_state_dict(state, strict=True)
    meta = {"name": "x", "dataset": "camvid"}
    lit = export_onnx(model, tmp_path / "lit.onnx", metadata=meta, exposure_target=100.0)
    plain = export_onnx(model, tmp_path / "plain.onnx", metadata=meta)
    run = {p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (lit, plain)}
    rng = np.random.default_rng(0)
    dark = (rng.integers(0, 256, (1, 96, 128, 3)) * 0.3).astype(np.uint8)  # mean about 38
    bright = rng.integers(0, 256, (1, 96, 128, 3)).astype(np.uint8)  # mean about 127
    with torch.no_grad():
        trained_view = DeployGraph(model)(torch.from_numpy(brighten(dark, 100.0))).numpy()
    assert np.allclose(run[lit].run(None, {"image": dark})[0], trained_view, atol=1e-5)
    assert not np.allclose(run[plain].run(None, {"image": dark})[0], trained_view, atol=1e-5)
    assert np.array_equal(run[lit].run(None, {"image": bright})[0], run[plain].run(None, {"image": bright})[0])
    assert decode_metadata(run[lit].get_modelmeta().custom_metadata_map)["exposure"] == {"target_mean": 100.0}
    assert "exposure" not in decode_metadata(run[plain].get_modelmeta().custom_metadata_map)
    again, variant, classes = onnx_state(lit)  # an exposure model is a valid --init too
    assert (variant, classes) == ("tiny", 11) and all(torch.equal(again[k], state[k]) for k in state)

    # Taken out again (a teacher shown frames the run brightened already): the plain graph's numbers.
    import onnx

    from engine.models.graph import without_exposure

    proto = onnx.load(str(lit))
    stripped = without_exposure(proto)
    assert {"Round", "ReduceMean"} & {n.op_type for n in proto.graph.node} == {"Round", "ReduceMean"}
    assert not {"Round", "ReduceMean"} & {n.op_type for n in stripped.graph.node}
    onnx.checker.check_model(stripped)
    session = ort.InferenceSession(stripped.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.array_equal(session.run(None, {"image": dark})[0], run[plain].run(None, {"image": dark})[0])
    assert "exposure" not in decode_metadata(session.get_modelmeta().custom_metadata_map)
    plain_proto = onnx.load(str(plain))
    assert without_exposure(plain_proto) is plain_proto


@pytest.mark.torch
@pytest.mark.shared
def test_training_brightens_its_frames_and_shipping_records_the_target(shared_dir, tmp_path, capsys):
    pytest.importorskip("torch")
    from engine.jobs.evaluate import evaluate_model
    from engine.models.registry import Registry

    camvid, models = shared_dir / "datasets" / "camvid", tmp_path / "models"
    base = ["train", "--variant", "tiny", "--data", str(camvid), "--epochs", "1", "--batch", "2", "--crop", "64x96",
            "--limit", "2", "--val-limit", "1", "--eval-every", "1", "--warmup-iters", "1", "--threads", "1",
            "--no-progress", "--holdout-drive", "0001TP"]

    def loss(out) -> float:
        return json.loads((out / "log.jsonl").read_text().splitlines()[-1])["loss"]

    runs = {t: tmp_path / f"run-{t}" for t in ("none", "1", "250")}
    for target, out in runs.items():
        extra = [] if target == "none" else ["--exposure-target", target]
        assert run_command(base + ["--out", str(out)] + extra) == 0
    assert loss(runs["1"]) == loss(runs["none"])  # no frame is darker than a mean of 1: the same run
    assert loss(runs["250"]) != loss(runs["none"])  # every frame brightened: another run

    def ship(run) -> list[str]:
        return ["train", "--export-only", str(run), "--checkpoint", "last.pth", "--models-dir", str(models)]

    assert run_command(ship(runs["250"]) + ["--name", "trained", "--selection-run", str(runs["250"])]) == 0
    assert run_command(ship(runs["none"]) + ["--name", "shipped", "--exposure-target", "90",
                               "--selection-run", str(runs["none"])]) == 0
    trained, shipped = Registry(models).get("trained"), Registry(models).get("shipped")
    assert trained.training["exposure"]["target_mean"] == 250.0 and trained.training["exposure"]["in_training"] == 250.0
    assert shipped.training["exposure"]["target_mean"] == 90.0 and shipped.training["exposure"]["in_training"] is None
    assert shipped.notes.endswith("frames darker than a mean of 90 brightened to it")
    last = shipped.training["selection"]["last"]
    assert "exposure target 90" in last["weights"]
    held = evaluate_model("shipped", camvid, "train,val", models_dir=models, drives=["0001TP"])
    assert last["miou_holdout"] == round(held.metrics["miou"], 6)  # the selection run was shipped alike

    capsys.readouterr()
    assert run_command(ship(runs["none"]) + ["--name", "x", "--exposure-target", "300"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--exposure-target must be" in err[0]
    assert sorted(Registry(models).names()) == ["shipped", "trained"]
