"""Pixel-wise loss between fracture logits and stride-4 box (or distilled) target maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["HeatmapBCELoss"]


class HeatmapBCELoss(nn.Module):
    """Binary cross-entropy with logits, averaged over pixels, classes and images (the paper's stage-1 loss).

    Fracture boxes cover a tiny fraction of a radiograph, so positive pixels can be up-weighted with
    ``pos_weight`` (a scalar, the same for every class). Targets may be soft (distilled maps in ``[0, 1]``).

    Args:
        pos_weight: weight of the positive term of every pixel; 1.0 is plain BCE.

    Shapes:
        ``logits`` and ``target``: ``(B, C, h, w)``; returns a scalar.
    """

    def __init__(self, pos_weight: float = 1.0) -> None:
        super().__init__()
        if pos_weight <= 0:
            raise ValueError(f"pos_weight must be positive, got {pos_weight}.")
        self.pos_weight = float(pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape.")
        pos_weight = torch.tensor(self.pos_weight, dtype=logits.dtype, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), pos_weight=pos_weight)
