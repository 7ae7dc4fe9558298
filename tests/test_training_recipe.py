"""Training recipe parts: lr schedule, parameter groups, optimizer state, OHEM, EMA, and how
each recipe setting is a flag, a config field and a recorded manifest field."""
from __future__ import annotations

import pytest


@pytest.mark.torch
def test_lr_schedule_warmup_and_poly():
    pytest.importorskip("torch")
    from engine.training.trainer import TrainConfig, lr_factor

    cfg = TrainConfig(lr=1e-3, warmup_iters=100)
    assert lr_factor(0, 1000, cfg) < 1e-5
    assert lr_factor(50, 1000, cfg) == pytest.approx(0.5 * (1 - 50 / 1000), rel=1e-3)
    assert lr_factor(100, 1000, cfg) == pytest.approx(0.9)
    assert lr_factor(550, 1000, cfg) == pytest.approx(0.45)
    assert lr_factor(1000, 1000, cfg) == 0.0


@pytest.mark.torch
def test_head_gets_ten_times_the_lr_and_norms_no_decay():
    pytest.importorskip("torch")
    from engine.models.topformer import create_model
    from engine.training.trainer import TrainConfig, param_groups

    model = create_model("tiny", 11)
    groups = param_groups(model, TrainConfig(weight_decay=0.01, head_lr_mult=10))
    head = {id(p) for p in model.decode_head.parameters()}
    for g in groups:
        is_head = {id(p) in head for p in g["params"]}
        assert len(is_head) == 1
        assert g["lr_mult"] == (10 if is_head.pop() else 1)
        assert g["weight_decay"] == (0.01 if all(p.ndim > 1 for p in g["params"]) else 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.torch
def test_optimizer_state_is_matched_by_parameter_name():
    """A checkpoint written when the model registered its modules in another order (the
    head once put conv_seg after linear_fuse) still resumes with the right AdamW moments."""
    torch = pytest.importorskip("torch")
    from engine.models.topformer import create_model
    from engine.training.trainer import TrainConfig, load_optimizer_state, param_groups

    cfg = TrainConfig()
    model = create_model("tiny", 11)
    old_groups = param_groups(model, cfg)
    for g in old_groups:  # another registration order
        g["params"].reverse()
        g["names"].reverse()
    opt_old = torch.optim.AdamW(old_groups, lr=1e-3)
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    opt_old.step()
    saved_names = [n for g in opt_old.param_groups for n in g["names"]]
    opt_new = torch.optim.AdamW(param_groups(model, cfg), lr=1e-3)
    load_optimizer_state(opt_new, opt_old.state_dict(), saved_names)
    params = dict(model.named_parameters())
    for g in opt_new.param_groups:
        for name, p in zip(g["names"], g["params"]):
            assert p is params[name]
            assert torch.equal(opt_new.state[p]["exp_avg"], opt_old.state[p]["exp_avg"]), name


@pytest.mark.torch
def test_ohem_keeps_the_hardest_pixels():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from engine.training.losses import ohem_cross_entropy, ohem_mask

    # 2 classes, 1x1x10 pixels, all labelled 0; logit margin m gives p(true) = sigmoid(m)
    margins = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    logits = torch.stack([margins, torch.zeros(10)]).reshape(1, 2, 1, 10)
    target = torch.zeros(1, 1, 10, dtype=torch.long)
    target[0, 0, 9] = 255  # ignored: never kept although its margin would say "easy"
    p = torch.sigmoid(margins)
    # thresh 0.7: p < 0.7 for margins <= 0.5 -> 4 pixels, more than min_kept 2
    mask = ohem_mask(logits, target, 255, 0.7, 2)[0, 0]
    assert mask.tolist() == [bool(v) for v in (p < 0.7).tolist()[:9]] + [False]
    # min_kept 6 > 4 hard ones: the 6 lowest probabilities
    mask = ohem_mask(logits, target, 255, 0.7, 6)[0, 0]
    assert mask.tolist() == [True] * 6 + [False] * 4
    # The loss is the mean cross-entropy over exactly those pixels.
    loss = ohem_cross_entropy(logits, target, 255, 0.7, 6)
    per_pixel = F.cross_entropy(logits, target.clamp(max=1), reduction="none")[0, 0]
    assert loss.item() == pytest.approx(per_pixel[:6].mean().item(), rel=1e-6)
    # More than the plain mean: hard pixels are not diluted by easy ones.
    plain = F.cross_entropy(logits, target, ignore_index=255)
    assert loss.item() > plain.item()
    # Gradient flows only through the kept pixels.
    x = logits.clone().requires_grad_(True)
    ohem_cross_entropy(x, target, 255, 0.7, 6).backward()
    g = x.grad.abs().sum(1)[0, 0]
    assert (g[:6] > 0).all() and (g[6:] == 0).all()
    # All ignored: zero loss, no NaN.
    assert ohem_cross_entropy(logits, torch.full_like(target, 255), 255, 0.7, 6).item() == 0.0


@pytest.mark.torch
def test_ema_update_math_and_state_round_trip():
    torch = pytest.importorskip("torch")
    from torch import nn

    from engine.training.ema import EMA

    model = nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    w = [1.0]
    for step, value in enumerate([3.0, 5.0, 7.0, 9.0, 11.0, 13.0], start=1):
        with torch.no_grad():
            model[0].weight.fill_(value)
        d = min(0.9, (1 + step) / (10 + step))
        assert ema.current_decay() == pytest.approx(d)
        ema.update(model)
        w.append(d * w[-1] + (1 - d) * value)
        assert ema.state["0.weight"][0, 0].item() == pytest.approx(w[-1], rel=1e-6)
    assert ema.updates == 6
    assert ema.state["1.num_batches_tracked"].item() == model[1].num_batches_tracked.item()  # copied, not averaged
    # A restored EMA continues exactly like the original.
    other = EMA(model, decay=0.5)
    other.load_state_dict({k: (v if k != "state" else {n: t.clone() for n, t in v.items()})
                           for k, v in ema.state_dict().items()})
    assert other.decay == 0.9 and other.updates == 6
    ema.update(model)
    other.update(model)
    assert all(torch.equal(ema.state[k], other.state[k]) for k in ema.state)


def test_each_recipe_setting_is_a_flag_a_config_field_and_recorded_when_shipped():
    """RECIPE_FIELDS is the one list of recipe settings: each is a TrainConfig field, has its
    train flag, and the manifest records it (always, or with the optional part that uses it)."""
    import argparse

    from engine.cli.train_cmd import add_arguments
    from engine.training.config import OPTIONAL_RECIPE_PARTS, RECIPE_FIELDS, RECORDED_RECIPE, TrainConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {action.dest for action in parser._actions}
    optional = {k for _, fields in OPTIONAL_RECIPE_PARTS for k in fields}
    for key in RECIPE_FIELDS:
        assert key in TrainConfig.__dataclass_fields__, key
        assert key in flags, f"--{key.replace('_', '-')} missing"
        assert (key in RECORDED_RECIPE) != (key in optional), key
    assert set(RECORDED_RECIPE) <= set(TrainConfig.__dataclass_fields__)


def test_report_names_every_setting_that_differs_from_the_named_recipe():
    """A setting describe_recipe does not word itself still shows, as "flag value"; one equal to
    its recipe (or to the default, without a recipe) does not."""
    from engine.training.report import describe_recipe

    assert describe_recipe({"recipe": "strong", "drop_path": 0.2, "rare_crop": 0.3}) == "strong, drop-path 0.2"
    assert describe_recipe({"recipe": "+scale", "scale_range": [0.5, 2.0]}) == "+scale, scale-range 0.5-2"
    assert describe_recipe({"recipe": "strong", "scale_range": [0.5, 3.0], "loss": "ohem"}) == "strong"
    assert describe_recipe({"lr": 2e-4, "ohem_thresh": 0.9}) == "-, lr 0.0002, ohem-thresh 0.9"
    fine_tune = {"recipe": "strong", "init": "x.pth", "lr": 2e-4, "head_lr_mult": 10, "freeze_bn": True}
    assert describe_recipe(fine_tune) == "strong, init x.pth, lr 0.0002, frozen BN"


def test_report_names_what_each_run_changed():
    """The ablation table's recipe column: named recipe, then a fine-tune's start and any class weighting."""
    from engine.training.report import describe_recipe

    assert describe_recipe({"recipe": "+scale"}) == "+scale"
    cfg = {"recipe": "strong", "init": "x/topformer-tiny-ade20k.pth", "lr": 2e-4, "head_lr_mult": 10,
           "freeze_bn": True, "class_weight": "sqrt",
           "extra": {"init_from": "ade20k TopFormer-tiny (official checkpoint)"}}
    assert describe_recipe(cfg) == "strong, init ade20k TopFormer-tiny, lr 0.0002, frozen BN, class weight sqrt"
    assert describe_recipe({**cfg, "class_weight": "none", "head_lr_mult": 50}).endswith("lr 0.0002 (head x50), frozen BN")
    grown = {**cfg, "class_weight": "none", "init": "runs/t/last.pth", "extra": {
        "init_from": "the weights of runs/t/last.pth; grown tiny -> small (function-preserving widening)"}}
    assert describe_recipe(grown) == "strong, init runs/t/last.pth, grown tiny -> small, lr 0.0002, frozen BN"
    official = {**grown, "extra": {"init_from": "ade20k TopFormer-tiny (official checkpoint); grown tiny -> base (w)"}}
    assert describe_recipe(official).startswith("strong, init ade20k TopFormer-tiny, grown tiny -> base, lr")
    assert describe_recipe({**grown, "extra": {}}) == "strong, init last.pth, lr 0.0002, frozen BN"
    kd = {"recipe": "baseline", "teacher": "camvid-tiny", "distill_weight": 2.0, "distill_temp": 1.0,
          "extra": {"unlabelled_frames": 66}}
    assert describe_recipe(kd) == "baseline, teacher camvid-tiny (x2), 66 unlabelled frames"
    assert describe_recipe({**kd, "distill_temp": 4.0, "extra": {}}) == "baseline, teacher camvid-tiny (x2, T 4)"
