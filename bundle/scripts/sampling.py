"""Per-image sampling weights that fix the mix of R, N (and P) images in every batch.

Hospitals have a few boxed positives (R) and thousands of negatives (N); drawing uniformly would show the
network almost no fractures. ``subset_weights`` gives every image the weight ``mix[subset] / count[subset]``
so that, in expectation, a fraction ``mix[subset]`` of each batch comes from that subset. The weights feed
MONAI's ``DistributedWeightedRandomSampler`` (one process or many).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["subset_weights"]


def subset_weights(items: Sequence[Mapping[str, Any]], mix: Mapping[str, float]) -> list[float]:
    """Return one sampling weight per item from the target ``mix`` of subsets.

    Args:
        items: datalist items, each with a ``"subset"`` key (``"R"``, ``"P"`` or ``"N"``).
        mix: wanted fraction per subset, e.g. ``{"R": 0.5, "N": 0.5}``; normalised to sum to 1. A subset
            with no items is skipped and the others are renormalised.

    Raises:
        ValueError: a weight is negative, an item's subset has no weight, or nothing can be drawn.
    """
    counts = Counter(item["subset"] for item in items)
    missing = sorted(set(counts) - set(mix))
    if missing:
        raise ValueError(f"subset mix {dict(mix)} gives no weight to subsets {missing} present in the data.")
    if any(value < 0 for value in mix.values()):
        raise ValueError(f"subset mix weights must not be negative, got {dict(mix)}.")
    total = sum(mix[subset] for subset in counts)
    if total <= 0:
        raise ValueError(f"subset mix {dict(mix)} gives zero weight to all subsets present {sorted(counts)}.")
    return [mix[item["subset"]] / total / counts[item["subset"]] for item in items]
