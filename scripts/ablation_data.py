"""Derive the ablation's two datalists from one phantom pool: semi-supervised (few R, many P) and oracle.

The pool is a phantom data set generated with boxes on every training positive (``--r-fraction 1``: every
positive is subset ``R``). Both derived datalists list exactly the same images in the same order:

* **semi-supervised**: ``num_r`` positives, drawn at random with ``seed``, stay ``R`` (boxes kept); every other
  training positive becomes ``P`` with its boxes removed (image-level labels only); negatives stay ``N``;
* **oracle**: the same subsets, but the ``P`` images keep their boxes (train with ``p_boxes`` so the loader uses
  them): the upper bound of what the image-level positives could add if an expert had boxed them.

Validation and test splits are copied unchanged. :func:`subsample_p` derives the P-dose datalists (a fraction of
P kept, the rest left out of training).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import numpy as np

__all__ = ["derive_datalists", "subsample_p", "subset_counts"]

_BOX_KEYS = ("boxes", "box_classes", "fracture_types")


def derive_datalists(pool: dict[str, Any], num_r: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(semi_supervised, oracle)`` datalists derived from ``pool`` (which is not modified).

    Args:
        pool: datalist whose training positives are all subset ``R`` with boxes, negatives ``N``.
        num_r: how many training positives keep subset ``R``; the rest become ``P``.
        seed: seed of the random choice of the ``R`` images.

    Raises:
        ValueError: the pool has a ``P`` image already, an ``R`` image without boxes, or fewer positives than
            ``num_r``.
    """
    training = pool["training"]
    positives = [i for i, item in enumerate(training) if item["subset"] != "N"]
    if any(training[i]["subset"] != "R" or not training[i].get("boxes") for i in positives):
        raise ValueError("the pool must have every training positive in subset R with its boxes (--r-fraction 1).")
    if not 0 < num_r <= len(positives):
        raise ValueError(f"num_r must be in [1, {len(positives)}] (training positives), got {num_r}.")
    keep = set(np.random.default_rng(seed).choice(positives, size=num_r, replace=False).tolist())
    semi, oracle = copy.deepcopy(pool), copy.deepcopy(pool)
    for i in positives:
        if i in keep:
            continue
        semi["training"][i]["subset"] = oracle["training"][i]["subset"] = "P"
        for key in _BOX_KEYS:
            semi["training"][i].pop(key, None)
    derivation = {"num_r": int(num_r), "seed": int(seed), "num_positives": len(positives)}
    semi["derivation"] = {**derivation, "kind": "semi-supervised"}
    oracle["derivation"] = {**derivation, "kind": "oracle (P keeps its boxes)"}
    return semi, oracle


def subsample_p(datalist: dict[str, Any], fraction: float, seed: int) -> dict[str, Any]:
    """Keep ``round(fraction * |P|)`` P images (drawn with ``seed``) and drop the other P images from training.

    R, N, validation and test are unchanged, so a run on the result at the same iterations and subset mix sees the
    same R and N with fewer image-level positives: the "P dose" of the method benchmark.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    training = datalist["training"]
    p_index = [i for i, item in enumerate(training) if item["subset"] == "P"]
    keep_count = max(1, round(fraction * len(p_index))) if p_index else 0
    keep = set(np.random.default_rng([seed, 7]).choice(p_index, size=keep_count, replace=False).tolist())
    result = copy.deepcopy(datalist)
    result["training"] = [item for i, item in enumerate(result["training"]) if item["subset"] != "P" or i in keep]
    result["derivation"] = {**datalist.get("derivation", {}), "p_fraction": float(fraction), "p_seed": int(seed)}
    return result


def subset_counts(datalist: dict[str, Any]) -> dict[str, Any]:
    """Training images per subset, positives per split and class, and the training prevalence."""
    counts: dict[str, Any] = dict(Counter(item["subset"] for item in datalist["training"]))
    for split in ("training", "validation", "test"):
        items = datalist.get(split, [])
        counts[f"{split}_images"] = len(items)
        for name in datalist.get("classes", ("rib", "clavicle")):
            counts[f"{split}_{name}_positive"] = sum(int(item["labels"].get(name, 0)) for item in items)
        counts[f"{split}_positive"] = sum(any(item["labels"].values()) for item in items)
    counts["training_prevalence"] = counts["training_positive"] / max(counts["training_images"], 1)
    return counts
