"""Per-image sampling weights that fix the mix of R, N (and P) images in every batch.

Hospitals have a few boxed positives (R) and thousands of negatives (N); drawing uniformly would show the
network almost no fractures. ``subset_weights`` gives every image the weight ``mix[subset] / count[subset]``
so that, in expectation, a fraction ``mix[subset]`` of each batch comes from that subset. The weights feed
MONAI's ``DistributedWeightedRandomSampler`` (one process or many); ``train.json`` calls :func:`sampling_weights`
and :func:`samples_per_epoch`.

Items without a ``subset`` (MONAI Label's image/label-map pairs, see :mod:`scripts.data.labelled_images`) are drawn
uniformly, once each per epoch: their subset is only known after their label map is read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["samples_per_epoch", "sampling_weights", "subset_weights"]


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


def sampling_weights(items: Sequence[Mapping[str, Any]], mix: Mapping[str, float]) -> list[float]:
    """Subset-mix weights (:func:`subset_weights`) when every item has a ``subset``, else uniform.

    Items from MONAI Label (``{"image", "label"}``) have no subset until their label map is read, so they are
    drawn uniformly. A mix of both kinds is refused: its mix would be undefined.
    """
    has_subset = [isinstance(item, Mapping) and "subset" in item for item in items]
    if all(has_subset):
        return subset_weights(items, mix)
    if not any(has_subset):
        return [1.0] * len(items)
    raise ValueError(
        f"{sum(has_subset)} of {len(items)} training items have a 'subset' (R/P/N) and the others do not; "
        "give all of them one (datalist) or none (image/label pairs)."
    )


def samples_per_epoch(items: Sequence[Mapping[str, Any]], default: int) -> int:
    """``default`` draws per epoch for a subset-mixed datalist; one draw per item for image/label pairs."""
    if items and all(isinstance(item, Mapping) and "subset" in item for item in items):
        return int(default)
    return len(items)
