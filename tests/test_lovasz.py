"""The Lovasz-softmax term (engine/training/losses.py): it is the Jaccard loss where the
prediction is certain, and it is wired into the run's criterion (its command-line flags:
tests/test_paste.py)."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch


def _one_hot_logits(torch, pred, num_classes: int, sharpness: float = 100.0):
    return torch.nn.functional.one_hot(pred, num_classes).permute(0, 3, 1, 2).float() * sharpness


def _mean_jaccard_loss(label: np.ndarray, pred: np.ndarray, ignore: int) -> float:
    """1 - IoU averaged over the classes present in the labels, ignored pixels left out."""
    valid = label != ignore
    losses = []
    for k in np.unique(label[valid]):
        inter = np.sum((label == k) & (pred == k) & valid)
        union = np.sum(((label == k) | (pred == k)) & valid)
        losses.append(1.0 - inter / union)
    return float(np.mean(losses))


def test_lovasz_equals_the_jaccard_loss_of_a_certain_prediction():
    torch = pytest.importorskip("torch")
    from engine.training.losses import lovasz_softmax

    gen = torch.Generator().manual_seed(0)
    label = torch.randint(0, 4, (2, 9, 11), generator=gen)
    pred = torch.randint(0, 4, (2, 9, 11), generator=gen)
    label[0, :2] = 9  # ignored pixels count for nothing, whatever is predicted there
    expected = _mean_jaccard_loss(label.numpy(), pred.numpy(), 9)
    got = lovasz_softmax(_one_hot_logits(torch, pred, 4), label, ignore_index=9).item()
    assert got == pytest.approx(expected, abs=1e-5) and 0.3 < expected < 1.0
    assert lovasz_softmax(_one_hot_logits(torch, torch.where(label == 9, 0, label), 4), label, 9).item() \
        == pytest.approx(0.0, abs=1e-5)
    # stride 2 scores every 2nd pixel of each row and column
    sub = _mean_jaccard_loss(label.numpy()[:, ::2, ::2], pred.numpy()[:, ::2, ::2], 9)
    assert lovasz_softmax(_one_hot_logits(torch, pred, 4), label, 9, stride=2).item() == pytest.approx(sub, abs=1e-5)


def test_lovasz_gradient_lowers_the_loss_and_skips_ignored_pixels():
    torch = pytest.importorskip("torch")
    from engine.training.losses import lovasz_softmax

    gen = torch.Generator().manual_seed(1)
    label = torch.randint(0, 3, (1, 8, 8), generator=gen)
    label[0, 0, :] = 7
    x = torch.randn(1, 3, 8, 8, generator=gen, requires_grad=True)
    loss = lovasz_softmax(x, label, 7)
    loss.backward()
    assert torch.all(x.grad[0, :, 0, :] == 0) and x.grad.abs().sum() > 0
    with torch.no_grad():
        assert lovasz_softmax(x - 0.5 * x.grad, label, 7) < loss
    assert lovasz_softmax(x, torch.full_like(label, 7), 7).item() == 0.0  # no valid pixel: 0, not NaN


def test_criterion_adds_the_weighted_lovasz_term():
    torch = pytest.importorskip("torch")
    from engine.errors import StudioError
    from engine.training.config import TrainConfig
    from engine.training.losses import build_criterion, lovasz_softmax

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 11, 16, 16, generator=gen)
    y = torch.randint(0, 12, (2, 16, 16), generator=gen)
    ce = build_criterion(TrainConfig(), None)(x, y)
    both = build_criterion(TrainConfig(lovasz_weight=0.5, lovasz_stride=2), None)(x, y)
    assert both.item() == pytest.approx(ce.item() + 0.5 * lovasz_softmax(x, y, 11, 2).item(), rel=1e-6)
    ohem = TrainConfig(loss="ohem", ohem_min_kept=10, lovasz_weight=1.0)
    assert build_criterion(ohem, None)(x, y) > build_criterion(TrainConfig(loss="ohem", ohem_min_kept=10), None)(x, y)
    with pytest.raises(StudioError, match="--lovasz-weight"):
        build_criterion(TrainConfig(lovasz_weight=-1.0), None)
    with pytest.raises(StudioError, match="--lovasz-stride"):
        build_criterion(TrainConfig(lovasz_weight=1.0, lovasz_stride=0), None)
