"""Paired bootstrap over test images for the ablation: confidence intervals of metric differences between arms.

Every arm of the ablation is evaluated on the same test images, so differences between arms are paired: one
bootstrap resample draws test images with replacement and recomputes every arm's AUROC and FROC on that same
resample, for every training seed. The difference of two arms on a resample is the mean over seeds of the
per-seed differences; its 2.5th and 97.5th percentiles over resamples give the 95 % interval. This captures the
test-set sampling error only (:func:`paired_interval`). :func:`hierarchical_interval` adds the training-seed
variance: each resample first draws the seeds with replacement, then the test images, and averages the per-seed
differences over the drawn seeds. When each seed also draws its own boxed images (R), that variance includes
which images were boxed.

The metrics are the evaluation report's own: AUROC equal to :func:`monai.metrics.compute_roc_auc` (as
``scripts.evaluate.report``; computed from ranks for speed), FROC as the mean sensitivity at the given FP rates from
:mod:`scripts.evaluate.froc`'s curve, computed from the per-image false-positive scores and per-box hit scores that
``detections.json`` records. A resample only repeats images, so the curve is recomputed from repeated scores,
without re-matching detections.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import repo_paths  # noqa: F401  (puts the bundle's scripts package on the import path)

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from scripts.evaluate.froc import MISSED, froc_curve_from_scores, sensitivity_at

__all__ = [
    "ClassOutcomes",
    "auroc",
    "bootstrap_indices",
    "froc",
    "hierarchical_interval",
    "monai_auroc",
    "paired_interval",
    "read_outcomes",
    "seed_draws",
]


@dataclass
class ClassOutcomes:
    """What one model did on the test images, for one class.

    Attributes:
        labels: ``(N,)`` 0/1 image labels.
        scores: ``(N,)`` image scores (heatmap maxima).
        fp_scores: ``(F,)`` scores of all false-positive detections; ``fp_image`` ``(F,)`` their image index.
        tp_scores: ``(B,)`` one per ground-truth box, its best hit score or ``-inf`` when missed; ``tp_image``
            ``(B,)`` their image index.
    """

    labels: np.ndarray
    scores: np.ndarray
    fp_scores: np.ndarray
    fp_image: np.ndarray
    tp_scores: np.ndarray
    tp_image: np.ndarray

    @property
    def num_images(self) -> int:
        return int(self.labels.size)


def read_outcomes(detections_json: str | Path, class_names: Sequence[str]) -> dict[str, ClassOutcomes]:
    """Read every class's outcomes from an evaluation report's ``detections.json`` (images in report order)."""
    images = json.loads(Path(detections_json).read_text())["images"]
    return {name: _class_outcomes(images, name) for name in class_names}


def _class_outcomes(images: Sequence[dict], class_name: str) -> ClassOutcomes:
    fp_scores, fp_image, tp_scores, tp_image = [], [], [], []
    for index, entry in enumerate(images):
        for det in entry["detections"]:
            if det["class"] == class_name and det["outcome"] == "FP":
                fp_scores.append(det["score"])
                fp_image.append(index)
        for box in entry["boxes"]:
            if box["class"] == class_name:
                tp_scores.append(MISSED if box["score"] is None else box["score"])
                tp_image.append(index)
    return ClassOutcomes(
        labels=np.array([e["image_label"][class_name] for e in images], dtype=np.float64),
        scores=np.array([e["image_score"][class_name] for e in images], dtype=np.float64),
        fp_scores=np.array(fp_scores, dtype=np.float64),
        fp_image=np.array(fp_image, dtype=np.int64),
        tp_scores=np.array(tp_scores, dtype=np.float64),
        tp_image=np.array(tp_image, dtype=np.int64),
    )


def bootstrap_indices(num_images: int, num_resamples: int, seed: int = 0) -> np.ndarray:
    """``(num_resamples, num_images)`` image indices drawn with replacement; row 0 is the identity (no resample)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_images, size=(num_resamples, num_images))
    return np.concatenate([np.arange(num_images)[None], draws])


def auroc(outcomes: ClassOutcomes, index: np.ndarray) -> float:
    """Image-level AUROC on the images ``index`` (repeats allowed); NaN when only one label value is present.

    The Mann-Whitney form (mean rank of the positives, ties averaged), equal to
    :func:`monai.metrics.compute_roc_auc` (a test checks it) but vectorised: the bootstrap calls it about 10^5
    times, where MONAI's Python loop over the sorted scores would take minutes.
    """
    labels, scores = outcomes.labels[index], outcomes.scores[index]
    num_pos = int(labels.sum())
    num_neg = labels.size - num_pos
    if num_pos == 0 or num_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based rank of each distinct score, ties averaged
    rank_sum = average_rank[inverse][labels > 0].sum()
    return float((rank_sum - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg))


def monai_auroc(outcomes: ClassOutcomes, index: np.ndarray) -> float:
    """:func:`monai.metrics.compute_roc_auc` on the same images (the reference :func:`auroc` is checked against)."""
    return float(compute_roc_auc(torch.as_tensor(outcomes.scores[index]), torch.as_tensor(outcomes.labels[index])))


def froc(outcomes: ClassOutcomes, index: np.ndarray, fp_rates: Sequence[float]) -> float:
    """Mean sensitivity at ``fp_rates`` FP per image on the images ``index`` (repeats allowed); NaN without boxes."""
    counts = np.bincount(index, minlength=outcomes.num_images)
    tp = np.repeat(outcomes.tp_scores, counts[outcomes.tp_image])
    if tp.size == 0:
        return math.nan
    fp = np.repeat(outcomes.fp_scores, counts[outcomes.fp_image])
    fps, sens, _ = froc_curve_from_scores(fp, tp, index.size)
    return float(np.mean(sensitivity_at(fps, sens, fp_rates)))


def paired_interval(values_a: np.ndarray, values_b: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Difference ``a - b`` of two arms with its paired bootstrap interval.

    Args:
        values_a, values_b: ``(S, 1 + R)`` metric of each arm per seed (rows) on the identity then on ``R``
            resamples (columns), the same resamples for both (:func:`bootstrap_indices`).
        level: coverage of the percentile interval.

    Returns:
        ``{"difference", "lower", "upper", "per_seed": [...]}``: the mean over seeds of ``a - b`` on the full test
        set, the percentile interval of that mean over resamples, and the per-seed differences.
    """
    diff = np.asarray(values_a, np.float64) - np.asarray(values_b, np.float64)
    seed_mean = np.nanmean(diff, axis=0)
    tail = (1.0 - level) / 2 * 100
    lower, upper = np.nanpercentile(seed_mean[1:], [tail, 100 - tail])
    return {
        "difference": float(seed_mean[0]),
        "lower": float(lower),
        "upper": float(upper),
        "per_seed": [float(v) for v in diff[:, 0]],
    }


def seed_draws(num_seeds: int, num_resamples: int, seed: int = 0) -> np.ndarray:
    """``(1 + num_resamples, num_seeds)`` seed indices drawn with replacement; row 0 is every seed once."""
    rng = np.random.default_rng([seed, 1])
    draws = rng.integers(0, num_seeds, size=(num_resamples, num_seeds))
    return np.concatenate([np.arange(num_seeds)[None], draws])


def hierarchical_interval(
    values_a: np.ndarray, values_b: np.ndarray, seeds: np.ndarray, level: float = 0.95
) -> dict[str, float]:
    """Difference ``a - b`` with a two-level bootstrap interval: resample training seeds, then test images.

    Args:
        values_a, values_b: ``(S, 1 + R)`` metric per seed (rows) on the full test set then on ``R`` image
            resamples (columns, :func:`bootstrap_indices`), the same resamples for both arms and every seed.
        seeds: ``(1 + R, S)`` seed draws (:func:`seed_draws`); resample ``r`` averages the per-seed differences of
            the seeds ``seeds[r]`` on image resample ``r``.
        level: coverage of the percentile interval.

    Returns:
        ``{"difference", "lower", "upper", "per_seed": [...]}`` as :func:`paired_interval`; the interval now also
        covers seed-to-seed variation (it cannot be narrower than the spread of the per-seed differences allows).
    """
    diff = np.asarray(values_a, np.float64) - np.asarray(values_b, np.float64)
    num_columns = diff.shape[1]
    if seeds.shape[0] != num_columns:
        raise ValueError(f"need one seed draw per resample column: {seeds.shape[0]} draws, {num_columns} columns.")
    replicate = np.nanmean(diff[seeds, np.arange(num_columns)[:, None]], axis=1)
    tail = (1.0 - level) / 2 * 100
    lower, upper = np.nanpercentile(replicate[1:], [tail, 100 - tail])
    return {
        "difference": float(np.nanmean(diff[:, 0])),
        "lower": float(lower),
        "upper": float(upper),
        "per_seed": [float(v) for v in diff[:, 0]],
    }
