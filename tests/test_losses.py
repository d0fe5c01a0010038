"""The pixel loss: class weighting on hard box pixels only, so a soft (distilled) target is its own optimum."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scripts.model.losses import HeatmapBCELoss


def _gradient(loss_fn, probability: float, target: float) -> float:
    """d loss / d logit for one pixel predicting ``probability`` with ``target`` (float64)."""
    logit = torch.logit(torch.tensor([[[[probability]]]], dtype=torch.float64)).requires_grad_()
    loss_fn(logit, torch.full((1, 1, 1, 1), target, dtype=torch.float64)).backward()
    return logit.grad.item()


@pytest.mark.parametrize("target", [0.05, 0.2, 0.4, 0.7, 0.95])
@pytest.mark.parametrize("pos_weight", [1.0, 20.0])
def test_soft_target_is_the_minimiser_whatever_the_positive_weight(target, pos_weight):
    """BCE is convex in the logit, so a zero gradient at the target with the right signs around it is the minimum."""
    loss = HeatmapBCELoss(pos_weight)
    assert _gradient(loss, target, target) == pytest.approx(0.0, abs=1e-12)
    assert _gradient(loss, target * 0.9, target) < 0 < _gradient(loss, target + 0.1 * (1 - target), target)


def test_torch_weighted_bce_would_raise_a_soft_target_by_ln_w():
    """The distortion the loss avoids: torch's pos_weight moves the optimum of 0.2 to 20*0.2/(20*0.2+0.8)."""

    def torch_weighted(logit, target):
        return F.binary_cross_entropy_with_logits(logit, target, pos_weight=torch.tensor(20.0, dtype=torch.float64))

    assert _gradient(torch_weighted, 0.2, 0.2) < 0  # the loss still falls when the probability rises from 0.2
    assert _gradient(torch_weighted, 4.0 / 4.8, 0.2) == pytest.approx(0.0, abs=1e-12)


def test_hard_labels_get_the_same_loss_as_torch_weighted_bce():
    logits = torch.randn(2, 2, 8, 8)
    target = (torch.rand(2, 2, 8, 8) > 0.8).float()
    expected = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(7.0))
    torch.testing.assert_close(HeatmapBCELoss(7.0)(logits, target), expected)


def test_weight_applies_to_hard_positives_only():
    logits = torch.zeros(1, 1, 1, 3)
    target = torch.tensor([[[[1.0, 0.999, 0.0]]]])
    per_pixel = [HeatmapBCELoss(10.0)(logits[..., i : i + 1], target[..., i : i + 1]).item() for i in range(3)]
    assert per_pixel[0] == pytest.approx(10 * per_pixel[2])  # log 2 weighted by 10
    assert per_pixel[1] == pytest.approx(per_pixel[2], rel=1e-3)  # soft 0.999: unweighted, also log 2


def test_rejects_bad_weight_and_shape_mismatch():
    with pytest.raises(ValueError, match="positive"):
        HeatmapBCELoss(0.0)
    with pytest.raises(ValueError, match="differ in shape"):
        HeatmapBCELoss()(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4))
