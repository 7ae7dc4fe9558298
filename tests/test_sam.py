"""Sharpness-aware steps (--sam-rho): the gradient is taken at the worst nearby point, the
weights come back exactly, a run resumes exactly, and the shipped recipe records the part."""
from __future__ import annotations

import pytest

from fake_camvid import check_recipe_flag
from part_checks import check_part_run, part_args

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
_args = part_args("--sam-rho")


def test_second_pass_takes_the_gradient_at_the_moved_weights_and_moves_them_back():
    from engine.training.sam import SharpnessStep

    a = torch.tensor([1.0, 3.0, 0.5])
    w = torch.nn.Parameter(torch.tensor([0.2, -0.4, 1.0]))
    b = torch.nn.Parameter(torch.tensor([0.7]))

    def loss() -> torch.Tensor:  # not quadratic in b: the gradient changes direction with the step
        return (a * w ** 2).sum() + b.sum() ** 4

    before_w, before_b = w.detach().clone(), b.detach().clone()
    loss().backward()
    g = torch.cat([w.grad, b.grad])
    rho = 0.1
    moved = torch.cat([before_w, before_b]) + rho * g / g.norm()
    SharpnessStep([w, b], rho).second_pass(loss)

    assert torch.equal(w.detach(), before_w) and torch.equal(b.detach(), before_b)
    expected_w = 2 * a * moved[:3]
    expected_b = 4 * moved[3:] ** 3
    assert torch.allclose(w.grad, expected_w) and torch.allclose(b.grad, expected_b)
    assert not torch.allclose(w.grad, g[:3])  # not the first gradient


@pytest.mark.shared
def test_sam_run_resumes_exactly_changes_training_and_is_recorded(camvid, tmp_path, capsys):
    check_part_run(_args, camvid, tmp_path, capsys, "0.05", "sam_rho", 0.05, "sam-rho 0.05")


@pytest.mark.torch
def test_sam_rho_is_recorded_and_a_bad_value_is_one_line(tmp_path, capsys):
    cfg = check_recipe_flag(tmp_path, capsys, "--sam-rho", "0.05", "sam-rho 0.05", {
        "-0.1": "--sam-rho -0.1: must be 0 (off) or a positive radius, e.g. 0.05",
        "nan": "--sam-rho nan: must be 0 (off) or a positive radius, e.g. 0.05"})
    assert cfg["sam_rho"] == 0.05
