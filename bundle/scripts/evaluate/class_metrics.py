"""Per-class AUROC and FROC, computed one way for validation and for the test report.

:mod:`scripts.evaluate.metrics` (ignite metrics, checkpoint selection) and :mod:`scripts.evaluate.report_metrics`
(``metrics.json``) both call these functions, so the two agree on the same data:

* :func:`class_auroc`: image-level AUROC of one class with :func:`monai.metrics.compute_roc_auc`; NaN when the images
  hold a single label value (MONAI would warn and return a meaningless number);
* :func:`class_froc`: FROC curve of one class from pooled matching results
  (:func:`scripts.evaluate.froc.match_detections`); sensitivity NaN when there is no box (or no image), without a
  warning: the caller reports it as undefined;
* :func:`nanmean`: the mean over classes that skips undefined (NaN) values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from scripts.evaluate.froc import ArrayLike, froc_curve_from_scores, sensitivity_at

__all__ = ["FROCCurve", "class_auroc", "class_froc", "nanmean", "reliability"]


def nanmean(values: Sequence[float]) -> float:
    """Mean of the finite values; NaN (without a warning) when there is none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def class_auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Image-level AUROC of one class.

    Args:
        scores: shape ``(N,)``, predicted probabilities (numpy or torch; the dtype is kept).
        labels: shape ``(N,)``, 0/1 ground truth.

    Returns:
        :func:`monai.metrics.compute_roc_auc` of the pair, or NaN when ``labels`` is empty or holds one value.
    """
    scores, labels = torch.as_tensor(scores).reshape(-1), torch.as_tensor(labels).reshape(-1)
    if labels.numel() == 0 or labels.min() == labels.max():  # AUROC is undefined with one label value
        return math.nan
    return float(compute_roc_auc(scores, labels))


@dataclass(frozen=True)
class FROCCurve:
    """FROC curve of one class in :func:`scripts.evaluate.froc.froc_curve` order (``fps_per_image`` non-increasing).

    Attributes:
        fps_per_image: shape ``(T + 1,)``, average false positives per image, ending with the origin 0.
        sensitivity: shape ``(T + 1,)``, fraction of boxes hit; all NaN when there is no box.
        thresholds: shape ``(T + 1,)``, ascending score thresholds, ending with ``+inf``.
    """

    fps_per_image: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray

    def sensitivity_at(self, fp_rates: Sequence[float]) -> np.ndarray:
        """Shape ``(R,)``: sensitivity at each FP rate (:func:`scripts.evaluate.froc.sensitivity_at`)."""
        return sensitivity_at(self.fps_per_image, self.sensitivity, fp_rates)

    def score(self, fp_rates: Sequence[float]) -> float:
        """The FROC score: mean sensitivity at ``fp_rates`` false positives per image; NaN without boxes."""
        return float(np.mean(self.sensitivity_at(fp_rates)))


def class_froc(fp_scores: ArrayLike, tp_scores: ArrayLike, num_images: int) -> FROCCurve:
    """FROC curve of one class from the matching results of all its images, pooled.

    Args:
        fp_scores: shape ``(F,)``, the scores of every false-positive detection.
        tp_scores: shape ``(B,)``, per box its hit score or :data:`scripts.evaluate.froc.MISSED`.
        num_images: images evaluated for FROC (boxed images only, negatives included).

    Returns:
        The curve; with no image it is the single origin point with NaN sensitivity.
    """
    if num_images == 0:
        return FROCCurve(np.zeros(1), np.full(1, np.nan), np.full(1, np.inf))
    with warnings.catch_warnings():  # no boxes: NaN sensitivity, reported as undefined; the warning adds nothing
        warnings.filterwarnings("ignore", message="No ground-truth boxes", category=RuntimeWarning)
        return FROCCurve(*froc_curve_from_scores(fp_scores, tp_scores, num_images))


def reliability(scores: np.ndarray, labels: np.ndarray, num_bins: int = 10) -> dict[str, Any]:
    """Reliability diagram data and expected calibration error of image-level probabilities.

    Args:
        scores: shape ``(N,)``, predicted probabilities in ``[0, 1]``.
        labels: shape ``(N,)``, 0/1 ground truth.
        num_bins: equal-width probability bins on ``[0, 1]``.

    Returns:
        ``{"ece": float, "bins": [{"lower", "upper", "count", "mean_score", "positive_rate"}, ...]}``; ECE is
        ``sum_b (n_b / N) * |positive_rate_b - mean_score_b|`` over non-empty bins (NaN for no images); empty bins
        have ``count`` 0 and null means.
    """
    scores, labels = np.asarray(scores, np.float64).reshape(-1), np.asarray(labels, np.float64).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} differ in shape.")
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    which = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, num_bins - 1)
    bins, gap = [], 0.0
    for b in range(num_bins):
        member = which == b
        count = int(member.sum())
        mean_score = float(scores[member].mean()) if count else None
        positive_rate = float(labels[member].mean()) if count else None
        if count:
            gap += count * abs(positive_rate - mean_score)
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "mean_score": mean_score,
                "positive_rate": positive_rate,
            }
        )
    return {"ece": gap / scores.size if scores.size else float("nan"), "bins": bins}
