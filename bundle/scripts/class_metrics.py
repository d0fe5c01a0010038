"""Per-class AUROC and FROC, computed one way for validation and for the test report.

:mod:`scripts.metrics` (ignite metrics, checkpoint selection) and :mod:`scripts.report_metrics` (``metrics.json``)
both call these functions, so the two agree on the same data:

* :func:`class_auroc`: image-level AUROC of one class with :func:`monai.metrics.compute_roc_auc`; NaN when the images
  hold a single label value (MONAI would warn and return a meaningless number);
* :func:`class_froc`: FROC curve of one class from pooled matching results (:func:`scripts.froc.match_detections`);
  sensitivity NaN when there is no box (or no image), without a warning: the caller reports it as undefined;
* :func:`nanmean`: the mean over classes that skips undefined (NaN) values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from scripts.froc import ArrayLike, froc_curve_from_scores, sensitivity_at

__all__ = ["FROCCurve", "class_auroc", "class_froc", "nanmean"]


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
    """FROC curve of one class in :func:`scripts.froc.froc_curve` order (``fps_per_image`` non-increasing).

    Attributes:
        fps_per_image: shape ``(T + 1,)``, average false positives per image, ending with the origin 0.
        sensitivity: shape ``(T + 1,)``, fraction of boxes hit; all NaN when there is no box.
        thresholds: shape ``(T + 1,)``, ascending score thresholds, ending with ``+inf``.
    """

    fps_per_image: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray

    def sensitivity_at(self, fp_rates: Sequence[float]) -> np.ndarray:
        """Shape ``(R,)``: sensitivity at each FP rate (:func:`scripts.froc.sensitivity_at`)."""
        return sensitivity_at(self.fps_per_image, self.sensitivity, fp_rates)

    def score(self, fp_rates: Sequence[float]) -> float:
        """The FROC score: mean sensitivity at ``fp_rates`` false positives per image; NaN without boxes."""
        return float(np.mean(self.sensitivity_at(fp_rates)))


def class_froc(fp_scores: ArrayLike, tp_scores: ArrayLike, num_images: int) -> FROCCurve:
    """FROC curve of one class from the matching results of all its images, pooled.

    Args:
        fp_scores: shape ``(F,)``, the scores of every false-positive detection.
        tp_scores: shape ``(B,)``, per box its hit score or :data:`scripts.froc.MISSED`.
        num_images: images evaluated for FROC (boxed images only, negatives included).

    Returns:
        The curve; with no image it is the single origin point with NaN sensitivity.
    """
    if num_images == 0:
        return FROCCurve(np.zeros(1), np.full(1, np.nan), np.full(1, np.inf))
    with warnings.catch_warnings():  # no boxes: NaN sensitivity, reported as undefined; the warning adds nothing
        warnings.filterwarnings("ignore", message="No ground-truth boxes", category=RuntimeWarning)
        return FROCCurve(*froc_curve_from_scores(fp_scores, tp_scores, num_images))
