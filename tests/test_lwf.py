"""Learning without forgetting (--lwf-weight): it trains, resumes exactly, and never reaches the shipped graph."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import run_command
from part_checks import check_shipped_recipe, rerun_with_a_resume
from fake_camvid import fake_camvid

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def ade_tiny(shared_dir) -> Path:
    return shared_dir / "reference" / "topformer-tiny-ade20k.pth"


def _args(data: Path, out: Path, init: Path, epochs: int, lwf: str = "1") -> list[str]:
    return ["train", "--variant", "tiny", "--data", str(data), "--out", str(out), "--epochs", str(epochs),
            "--batch", "4", "--crop", "96x128", "--limit", "8", "--val-limit", "2", "--eval-every", "1",
            "--warmup-iters", "2", "--lr", "1e-3", "--threads", "1", "--no-progress", "--freeze-bn",
            "--init", str(init), "--lwf-weight", lwf]


def test_fuse_then_classify_is_the_head():
    from engine.training.trainer import TrainConfig, build_model

    model = build_model(TrainConfig(variant="tiny")).eval()
    feats = model.backbone(torch.rand(1, 3, 64, 96))
    head = model.decode_head
    assert torch.equal(head.conv_seg(head.fuse(feats)), head(feats))


@pytest.mark.shared
def test_guard_keeps_the_start_classifier_and_its_loss_starts_at_zero(ade_tiny):
    from engine.models.checkpoint import read_state_dict
    from engine.training.lwf import guard_param_groups, make_source_guard
    from engine.training.trainer import TrainConfig, build_model

    cfg = TrainConfig(variant="tiny", init=str(ade_tiny), lwf_weight=1.0, freeze_bn=True)
    guard = make_source_guard(cfg)
    state = read_state_dict(ade_tiny)
    assert torch.equal(guard.classifier.weight, state["decode_head.conv_seg.weight"])
    assert not any(p.requires_grad for p in guard.source.parameters())
    guard.train()
    assert not guard.source.training and guard.classifier.training
    # A student that holds the start's weights (its own classifier aside) predicts what the
    # start predicts: the term is zero before the first step and grows as the features move.
    student = build_model(cfg).eval()
    student.load_state_dict({k: v for k, v in guard.source.state_dict().items() if "conv_seg" not in k}, strict=False)
    x = torch.rand(2, 3, 64, 96)
    fused = student.decode_head.fuse(student.backbone(x))
    assert guard.loss(fused, x, 2.0).item() == pytest.approx(0.0, abs=1e-5)
    assert guard.loss(fused + 0.5 * torch.randn_like(fused), x, 2.0).item() > 1e-3
    groups = guard_param_groups(guard, 10.0, 0.01)
    assert [n for g in groups for n in g["names"]] == ["lwf.bias", "lwf.weight"]
    assert [g["weight_decay"] for g in groups] == [0.0, 0.01]


@pytest.mark.shared
@pytest.mark.parametrize("variant, via", [("small", None), ("base", "small")])
def test_a_grown_run_keeps_the_tiny_start_classifier_grown_as_its_init_was(ade_tiny, variant, via):
    """A Small grown from a Tiny that began at the ADE20K Tiny (or a Base grown from such a
    Small): the kept classifier is widened by the same seeded growth, so on the grown start's
    own features it predicts what the frozen Tiny predicts, and the term starts at zero."""
    from engine.models.checkpoint import read_state_dict
    from engine.training.grow import grow_state
    from engine.training.lwf import make_source_guard
    from engine.training.trainer import TrainConfig, build_model

    cfg = TrainConfig(variant=variant, init="runs/some-camvid-run/last.pth", lwf_start=str(ade_tiny),
                      lwf_weight=0.3, freeze_bn=True, grow_via=via)
    guard = make_source_guard(cfg)
    student = build_model(cfg).eval()
    assert guard.classifier.weight.shape == (150, student.decode_head.conv_seg.weight.shape[1], 1, 1)
    grown = grow_state(read_state_dict(ade_tiny), "tiny", variant, 150, via=via)
    student.load_state_dict({k: v for k, v in grown.items() if "conv_seg" not in k}, strict=False)
    x = torch.rand(2, 3, 64, 96)
    fused = student.decode_head.fuse(student.backbone(x))
    assert guard.loss(fused, x, 2.0).item() == pytest.approx(0.0, abs=1e-4)
    shuffled = fused[:, torch.randperm(fused.shape[1])]  # channels that do not correspond: far from zero
    assert guard.loss(shuffled, x, 2.0).item() > 100 * max(guard.loss(fused, x, 2.0).item(), 1e-6)
    if via:  # the Tiny grown straight into the Base puts its channels elsewhere
        direct = make_source_guard(TrainConfig(**{**cfg.__dict__, "grow_via": None}))
        assert direct.loss(fused, x, 2.0).item() > 100 * max(guard.loss(fused, x, 2.0).item(), 1e-6)


def test_the_report_names_a_separate_lwf_start():
    from engine.training.report import describe_recipe

    cfg = {"recipe": "strong", "lwf_weight": 0.3, "lwf_temp": 2.0}
    assert describe_recipe(cfg) == "strong, LwF x0.3 (T 2)"
    cfg["lwf_start"] = "../shared/reference/topformer-tiny-ade20k.pth"
    assert describe_recipe(cfg) == "strong, LwF x0.3 (T 2, start topformer-tiny-ade20k.pth)"


@pytest.mark.shared
def test_lwf_run_resumes_exactly_changes_training_and_stays_out_of_the_model(camvid, ade_tiny, tmp_path, capsys):
    straight, split, plain = tmp_path / "straight", tmp_path / "split", tmp_path / "plain"
    assert run_command(_args(camvid, straight, ade_tiny, 2)) == 0
    cfg = json.loads((straight / "config.json").read_text())
    assert cfg["lwf_weight"] == 1.0 and cfg["lwf_temp"] == 2.0
    a, b = rerun_with_a_resume(straight, split, camvid)
    assert set(a["lwf"]) == {"weight", "bias"} and a["lwf"]["weight"].shape[0] == 150
    for key in a["lwf"]:
        assert torch.equal(a["lwf"][key], b["lwf"][key]), key
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert "lwf.weight" in a["param_names"]

    # The same run without the term trains other weights: the term reaches the backbone.
    assert run_command(_args(camvid, plain, ade_tiny, 2, lwf="0")) == 0
    c = torch.load(plain / "last.pth", weights_only=False)
    assert c["lwf"] is None and set(c["model"]) == set(a["model"])
    assert any(not torch.equal(a["model"][k], c["model"][k]) for k in a["model"] if k.startswith("backbone."))

    # Shipping exports the TopFormer only, and the recipe records the part.
    check_shipped_recipe(straight, camvid, tmp_path, capsys, "lwf_weight", 1.0, "LwF x1 (T 2)")


@pytest.mark.shared
def test_unlabelled_frames_take_the_lwf_term_alone(camvid, ade_tiny, tmp_path, capsys):
    """Without a teacher, frames of a real video join training with void labels: the kept
    classifier's term is their only target, and the manifest records them, not a teacher."""
    import cv2
    import numpy as np

    video = tmp_path / "street.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (192, 108))
    rng = np.random.default_rng(0)
    for _ in range(6):
        writer.write(rng.integers(0, 256, (108, 192, 3), dtype=np.uint8))
    writer.release()
    with_frames, without = tmp_path / "with", tmp_path / "without"
    extra = ["--unlabelled", str(video), "--unlabelled-every", "2"]
    assert run_command(_args(camvid, with_frames, ade_tiny, 1) + extra) == 0
    assert run_command(_args(camvid, without, ade_tiny, 1)) == 0
    cfg = json.loads((with_frames / "config.json").read_text())
    assert cfg["extra"]["unlabelled_frames"] == 3 and not cfg.get("teacher")
    a, b = (torch.load(r / "last.pth", weights_only=False)["model"] for r in (with_frames, without))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("backbone."))
    check_shipped_recipe(with_frames, camvid, tmp_path, capsys, "unlabelled", [str(video)],
                         "LwF x1 (T 2), 3 unlabelled frames")
    training = json.loads((tmp_path / "models" / "manifest.json").read_text())["models"][0]["training"]
    assert training["unlabelled_frames"] == 3 and "teacher" not in training


@pytest.mark.parametrize("extra, words", [
    (["--lwf-weight", "-1"], "--lwf-weight must be at least 0"),
    (["--lwf-weight", "1", "--lwf-temp", "0"], "--lwf-temp above 0"),
    (["--lwf-weight", "1"], "needs --lwf-start or --init"),
    (["--lwf-weight", "1", "--lwf-start", "nowhere/ade.pth"], "is not there"),
    (["--lwf-weight", "1", "--init", "nowhere/ade.pth"], "--init: no checkpoint nowhere/ade.pth"),
])
def test_bad_lwf_settings_are_one_line(tmp_path, capsys, extra, words):
    data = fake_camvid(tmp_path / "ds")
    assert run_command(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0]


@pytest.mark.shared
@pytest.mark.parametrize("init, words", [("random-small.pth", "is a Small, this run a Tiny: .* cannot be grown"),
                                         ("random-base-cityscapes.pth", "is a Base-Cityscapes, this run a Tiny")])
def test_lwf_start_must_match_the_variant(shared_dir, init, words):
    from engine.training.lwf import make_source_guard
    from engine.training.trainer import TrainConfig
    from engine.errors import StudioError

    with pytest.raises(StudioError, match=words):
        make_source_guard(TrainConfig(variant="tiny", init=str(shared_dir / "reference" / init), lwf_weight=1.0))
