"""Pixel-wise loss between fracture logits and stride-4 box (or distilled) target maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HeatmapBCELoss"]


class HeatmapBCELoss(nn.Module):
    """Binary cross-entropy with logits, averaged over pixels, classes and images (the paper's pixel-wise loss).

    Fracture boxes cover a tiny fraction of a radiograph, so positive pixels can be up-weighted with
    ``pos_weight`` (a scalar, the same for every class). The weight applies to *hard* positive pixels only
    (target exactly 1, i.e. inside an expert box); a soft target ``y`` in ``(0, 1)`` (a distilled teacher map)
    gets plain BCE. This keeps the loss minimised at the target for every soft target: with the weight on soft
    targets too, the minimiser would be ``w * y / (w * y + 1 - y)``, every distilled probability raised by
    ``ln w`` logits, and an EMA teacher would feed that raise back into itself. For hard 0/1 labels the
    minimiser is the label whatever ``w`` is; the weight only trades errors between pixels the network cannot
    tell apart, which makes its probabilities over-confident by a factor ``w`` in the odds. Stage 2 therefore
    runs with ``pos_weight = 1`` on a calibrated stage-1 model (see :mod:`scripts.distill.calibration`).

    Args:
        pos_weight: weight of the positive term of every hard positive pixel; 1.0 is plain BCE.

    Shapes:
        ``logits`` and ``target``: ``(B, C, h, w)``, target values in ``[0, 1]``; returns a scalar.
    """

    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        if pos_weight <= 0:
            raise ValueError(f"pos_weight must be positive, got {pos_weight}.")
        self.pos_weight = float(pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape.")
        target = target.to(logits.dtype)
        if self.pos_weight == 1.0:
            return F.binary_cross_entropy_with_logits(logits, target)
        # A hard positive (target 1) has no negative term, so weighting its whole BCE weights its positive term only.
        weight = torch.where(target == 1.0, self.pos_weight, 1.0).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits, target, weight=weight)
