"""MixStyle (--mixstyle): early feature statistics are mixed between the crops of a batch in
training only, a run resumes exactly, and the shipped recipe records the part."""
from __future__ import annotations

import pytest

from fake_camvid import check_recipe_flag
from part_checks import check_part_run, part_args

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
_args = part_args("--mixstyle")


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean(dim=(2, 3)), x.std(dim=(2, 3), unbiased=False)


def test_mixing_moves_each_crops_statistics_towards_its_partners_and_keeps_its_content():
    from engine.training.mixstyle import mix_styles

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, 7, generator=g) * torch.tensor([0.5, 2.0, 4.0])[:, None, None, None] + 3.0
    partner = torch.tensor([2, 0, 1])
    mu, sig = _channel_stats(x)

    assert torch.allclose(mix_styles(x, torch.ones(3), partner), x, atol=1e-4)  # weight 1: its own style
    w = torch.tensor([0.0, 0.25, 1.0])
    y = mix_styles(x, w, partner)
    mu_y, sig_y = _channel_stats(y)
    assert torch.allclose(mu_y, w[:, None] * mu + (1 - w[:, None]) * mu[partner], atol=1e-4)
    assert torch.allclose(sig_y, w[:, None] * sig + (1 - w[:, None]) * sig[partner], atol=1e-3)
    normalised = (x - mu[..., None, None]) / sig[..., None, None]
    assert torch.allclose((y - mu_y[..., None, None]) / sig_y[..., None, None], normalised, atol=1e-3)

    # The statistics are constants for the gradient: d(sum y)/dx = sig_mix / sig per pixel.
    x.requires_grad_(True)
    mix_styles(x, w, partner).sum().backward()
    mu_d, sig_d = _channel_stats(x.detach())
    expected = ((w[:, None] * sig_d + (1 - w[:, None]) * sig_d[partner]) / sig_d)[..., None, None].expand_as(x)
    assert torch.allclose(x.grad, expected, rtol=1e-3)


def test_hooks_act_in_training_only_and_not_at_probability_zero():
    from engine.models.topformer import create_model
    from engine.training.mixstyle import StyleMixer
    from engine.training.trainer import set_train_mode

    torch.manual_seed(0)
    model = create_model("tiny", 11)
    x = torch.randn(4, 3, 64, 64)

    def forward(train: bool) -> torch.Tensor:  # frozen BN and a fixed dropout draw: repeatable
        set_train_mode(model, freeze_bn=True) if train else model.eval()
        torch.manual_seed(1)
        return model(x)

    plain_train, plain_eval = forward(True), forward(False)
    never = StyleMixer(model, 0.0)
    assert torch.equal(forward(True), plain_train)
    for h in never.handles:
        h.remove()

    stem = StyleMixer(model, 1.0, "stem")
    assert len(stem.handles) == 1
    stem_mixed = forward(True)
    assert not torch.allclose(stem_mixed, plain_train)
    for h in stem.handles:
        h.remove()

    mixer = StyleMixer(model, 1.0)
    assert len(mixer.handles) == 3
    early_mixed = forward(True)
    assert not torch.allclose(early_mixed, plain_train) and not torch.allclose(early_mixed, stem_mixed)
    assert torch.equal(forward(False), plain_eval)  # validation and export see the plain network


@pytest.mark.shared
def test_mixstyle_run_resumes_exactly_changes_training_and_is_recorded(camvid, tmp_path, capsys):
    check_part_run(_args, camvid, tmp_path, capsys, "1", "mixstyle", 1.0, "mixstyle 1")


def test_mixstyle_is_recorded_and_a_bad_value_is_one_line(tmp_path, capsys):
    message = "must be a probability per batch from 0 (off) to 1, e.g. 0.5"
    cfg = check_recipe_flag(tmp_path, capsys, "--mixstyle", "0.5", "mixstyle 0.5", {
        "-0.1": f"--mixstyle -0.1: {message}", "1.5": f"--mixstyle 1.5: {message}", "nan": f"--mixstyle nan: {message}"})
    assert cfg["mixstyle"] == 0.5


def test_mixstyle_at_the_stem_is_recorded_and_needs_mixstyle_on(tmp_path, capsys):
    cfg = check_recipe_flag(tmp_path, capsys, "--mixstyle-at", "stem", "mixstyle-at stem", {
        "stem": "--mixstyle-at stem: MixStyle is off; add --mixstyle P (e.g. 0.5)"}, good_needs=("--mixstyle", "0.5"))
    assert cfg["mixstyle_at"] == "stem"
