"""Free-response ROC (FROC) for point detections scored against ground-truth boxes.

A detection is a point ``(x, y, score)`` in pixels (``x`` = column, ``y`` = row); a target is an axis-aligned box
``(x1, y1, x2, y2)`` in the same pixel frame. Matching rules (per image):

* a point is inside a box when ``x1 <= x <= x2 and y1 <= y <= y2`` (closed interval: edges count);
* each box takes the highest score among the points inside it (a hit); the other points inside it are neither TP
  nor FP; a box with no point inside is missed (score :data:`MISSED`);
* a point inside several (overlapping) boxes counts for each of them, independently, and is not an FP;
* a point inside no box is a false positive (FP).

Curve conventions (the same array order as :func:`monai.metrics.compute_froc_curve_data`):

* there is one curve point per distinct counted score ``t`` (no score is dropped, the lowest included), counting
  scores ``>= t``, plus a final origin point ``(fps=0, sensitivity=0)`` at threshold ``+inf``. The counted scores
  are the FP scores and the per-box maxima; the score of an extra point inside an already-hit box changes no count,
  so it would only repeat the neighbouring point and is not a threshold;
* ``thresholds`` are sorted ascending, so ``fps_per_image`` and ``sensitivity`` are non-increasing and the last
  point is the origin;
* ``fps_per_image`` = number of FPs / number of ALL images (negative images, i.e. images without boxes, count in
  the denominator and their detections are FPs); ``sensitivity`` = number of hit boxes / number of boxes.

Sensitivity at a FP rate is the linear interpolation (``np.interp``) of the curve with ``fps`` increasing, as
:func:`monai.metrics.compute_froc_score` does. Because the origin is part of the curve, a rate between 0 and the
first non-zero FP rate interpolates between the best sensitivity reached without any FP and the next point (no
clamping below); a rate above the largest FP rate of the curve clamps to the sensitivity with every detection
kept (the curve is not extrapolated). Where several points share the requested FP rate, the highest sensitivity
among them is used.

If there are no boxes in any image, sensitivity is undefined: the curve's ``sensitivity`` is all NaN, the FROC
score is NaN, and a ``RuntimeWarning`` is emitted (``fps_per_image`` is still valid).

Cost: matching is an ``(N_i, M_i)`` broadcast per image; the curve sorts all FP and TP scores once and counts with
``np.searchsorted``, i.e. ``O(n log n)`` in the total number of detections ``n``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_froc_score

__all__ = [
    "MISSED",
    "as_rows",
    "points_in_boxes",
    "to_numpy",
    "DEFAULT_FP_RATES",
    "match_detections",
    "froc_curve_from_scores",
    "froc_from_matches",
    "froc_curve",
    "sensitivity_at",
    "froc_score",
    "threshold_index",
]

#: TP score of a box that no detection hit. Detection scores must be finite, so it never passes a threshold.
MISSED: float = float("-inf")

#: FP rates (average false positives per image) at which :func:`froc_score` averages the sensitivity.
DEFAULT_FP_RATES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)

ArrayLike = np.ndarray | torch.Tensor | Sequence


def to_numpy(x: ArrayLike) -> np.ndarray:
    """Convert a numpy array, torch tensor or (nested) sequence to a float64 numpy array."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def as_rows(x: ArrayLike, ncols: int, name: str) -> np.ndarray:
    """Return ``x`` as float64 of shape ``(n, ncols)``; an empty input (e.g. shape ``(0,)``) gives ``(0, ncols)``."""
    arr = to_numpy(x)
    if arr.size == 0:
        return np.zeros((0, ncols), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != ncols:
        raise ValueError(f"{name} must have shape (n, {ncols}), got {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN/inf coordinates or scores).")
    return arr


def _as_scores(x: ArrayLike, name: str, allow_missed: bool = False) -> np.ndarray:
    """Return ``x`` as a flat float64 array of finite scores (``MISSED`` allowed when ``allow_missed``)."""
    arr = to_numpy(x).reshape(-1)
    bad = np.isnan(arr) | (arr == np.inf)
    if not allow_missed:
        bad |= arr == -np.inf
    if bad.any():
        raise ValueError(f"{name} must be finite{' or MISSED (-inf)' if allow_missed else ''}.")
    return arr


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The matching rule: ``(N, M)`` bool, point ``n`` lies in box ``m``, edges included (closed intervals).

    Args:
        points: shape ``(N, >=2)``, rows ``(x, y, ...)`` in pixels.
        boxes: shape ``(M, >=4)``, rows ``(x1, y1, x2, y2, ...)`` in the same pixels.
    """
    x, y = points[:, 0:1], points[:, 1:2]  # (N, 1), broadcast against the (M,) box edges
    return (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])


def match_detections(detections: ArrayLike, boxes: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Split the detections of one image into false-positive scores and per-box true-positive scores.

    Args:
        detections: shape ``(N, 3)``, rows ``(x, y, score)`` in pixels (``x`` = column); ``(0,)`` or ``(0, 3)``
            when empty. Scores must be finite.
        boxes: shape ``(M, 4)``, rows ``(x1, y1, x2, y2)`` in pixels with ``x1 <= x2`` and ``y1 <= y2``;
            ``(0,)`` or ``(0, 4)`` when the image is negative.

    Returns:
        ``(fp_scores, tp_scores)``: ``fp_scores`` shape ``(F,)``, the scores of the points inside no box (input
        order); ``tp_scores`` shape ``(M,)``, per box the maximum score of the points inside it (edges included),
        or :data:`MISSED` (``-inf``) when no point is inside.
    """
    dets = as_rows(detections, 3, "detections")
    gt = as_rows(boxes, 4, "boxes")
    if ((gt[:, 2] < gt[:, 0]) | (gt[:, 3] < gt[:, 1])).any():
        raise ValueError("boxes must satisfy x1 <= x2 and y1 <= y2.")
    scores = dets[:, 2]
    if gt.shape[0] == 0:
        return scores.copy(), np.zeros((0,), dtype=np.float64)
    inside = points_in_boxes(dets, gt)  # (N, M)
    fp_scores = scores[~inside.any(axis=1)]
    tp_scores = np.where(inside, scores[:, None], MISSED).max(axis=0, initial=MISSED)  # (M,)
    return fp_scores, tp_scores


def _count_at_least(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per threshold, the number of ``sorted_scores`` (ascending) that are ``>= threshold``."""
    return sorted_scores.size - np.searchsorted(sorted_scores, thresholds, side="left")


def froc_curve_from_scores(
    fp_scores: ArrayLike, tp_scores: ArrayLike, num_images: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FROC curve from the pooled FP scores and per-box TP scores of a set of images.

    This is the ``O(n log n)`` counterpart of :func:`monai.metrics.compute_froc_curve_data`. That function is not
    used because it loops over the thresholds in Python with a full pass over all scores per threshold
    (``O(T * n)``: minutes for ~10^5 candidates) and it drops the lowest distinct score from the thresholds, which
    loses a TP holding the lowest score. Its output order and origin point are kept.

    Args:
        fp_scores: shape ``(F,)``, the scores of all false-positive detections (finite).
        tp_scores: shape ``(B,)``, one entry per ground-truth box: its hit score, or :data:`MISSED` (``-inf``).
            ``B`` is the number of targets (the sensitivity denominator).
        num_images: number of images evaluated, including negative ones (the FP-rate denominator).

    Returns:
        ``(fps_per_image, sensitivity, thresholds)``, each of shape ``(T + 1,)`` with ``T`` the number of distinct
        finite scores: ``thresholds`` ascending and ending with ``+inf``; ``fps_per_image`` (average FPs per image)
        and ``sensitivity`` (fraction of boxes hit), both non-increasing and ending with the origin ``0``.
        ``sensitivity`` is all NaN (with a ``RuntimeWarning``) when ``B == 0``.
    """
    if num_images <= 0:
        raise ValueError(f"num_images must be positive, got {num_images}.")
    fp = np.sort(_as_scores(fp_scores, "fp_scores"))
    tp_all = _as_scores(tp_scores, "tp_scores", allow_missed=True)
    tp = np.sort(tp_all[tp_all != MISSED])
    # distinct scores (ascending) then the origin threshold: nothing is >= +inf because scores are finite.
    thresholds = np.append(np.unique(np.concatenate([fp, tp])), np.inf)
    fps_per_image = _count_at_least(fp, thresholds) / float(num_images)
    num_targets = tp_all.size
    if num_targets == 0:
        warnings.warn("No ground-truth boxes: FROC sensitivity is undefined (NaN).", RuntimeWarning, stacklevel=2)
        sensitivity = np.full(thresholds.shape, np.nan)
    else:
        sensitivity = _count_at_least(tp, thresholds) / float(num_targets)
    return fps_per_image, sensitivity, thresholds


def froc_from_matches(
    per_image_matches: Sequence[tuple[ArrayLike, ArrayLike]], num_images: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FROC curve from per-image :func:`match_detections` results (e.g. gathered from several ranks).

    Args:
        per_image_matches: one ``(fp_scores, tp_scores)`` pair per image, as returned by :func:`match_detections`.
        num_images: the FP-rate denominator; defaults to ``len(per_image_matches)``. A larger value counts images
            without any detection or box that were not gathered (they add no FP and no target).

    Returns:
        ``(fps_per_image, sensitivity, thresholds)`` as :func:`froc_curve_from_scores`.
    """
    if num_images is None:
        num_images = len(per_image_matches)
    if num_images < len(per_image_matches):
        raise ValueError(f"num_images ({num_images}) is smaller than the number of matched images.")
    fp_parts = [_as_scores(fp, "fp_scores") for fp, _ in per_image_matches]
    tp_parts = [_as_scores(tp, "tp_scores", allow_missed=True) for _, tp in per_image_matches]
    fp_all = np.concatenate(fp_parts) if fp_parts else np.zeros((0,))
    tp_all = np.concatenate(tp_parts) if tp_parts else np.zeros((0,))
    return froc_curve_from_scores(fp_all, tp_all, num_images)


def froc_curve(
    detections: Sequence[ArrayLike] | ArrayLike, boxes: Sequence[ArrayLike] | ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FROC curve of point detections against ground-truth boxes over a set of images.

    Args:
        detections: one array per image, shape ``(N_i, 3)``, rows ``(x, y, score)`` in pixels (``x`` = column).
        boxes: one array per image, shape ``(M_i, 4)``, rows ``(x1, y1, x2, y2)`` in pixels; empty for negatives.

    Returns:
        ``(fps_per_image, sensitivity, thresholds)``, each of shape ``(T + 1,)``: ``thresholds`` ascending (one
        per distinct score) then ``+inf``; ``fps_per_image`` = FPs / number of all images and ``sensitivity`` =
        hit boxes / boxes, counting scores ``>= threshold``; both non-increasing, ending with the origin.
        See the module docstring for the matching rules and the no-box case (NaN sensitivity).
    """
    if len(detections) != len(boxes):
        raise ValueError(f"got {len(detections)} detection arrays but {len(boxes)} box arrays.")
    if len(detections) == 0:
        raise ValueError("no images to evaluate.")
    matches = [match_detections(d, b) for d, b in zip(detections, boxes, strict=True)]
    return froc_from_matches(matches)


def _check_curve(fps_per_image: ArrayLike, sensitivity: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate a curve in :func:`froc_curve` order (``fps`` non-increasing) and return it as numpy arrays."""
    fps, sens = to_numpy(fps_per_image).reshape(-1), to_numpy(sensitivity).reshape(-1)
    if fps.shape != sens.shape or fps.size == 0:
        raise ValueError(f"fps_per_image {fps.shape} and sensitivity {sens.shape} must be non-empty, same shape.")
    if (np.diff(fps) > 0).any():
        raise ValueError("fps_per_image must be non-increasing (the order returned by froc_curve).")
    return fps, sens


def _check_rates(fp_rates: ArrayLike) -> np.ndarray:
    """Return the FP rates as a flat float64 array; they must be finite and non-negative."""
    rates = to_numpy(fp_rates).reshape(-1)
    if rates.size == 0 or not np.isfinite(rates).all() or (rates < 0).any():
        raise ValueError(f"fp_rates must be a non-empty sequence of finite, non-negative values, got {fp_rates}.")
    return rates


def sensitivity_at(fps_per_image: ArrayLike, sensitivity: ArrayLike, fp_rates: ArrayLike) -> np.ndarray:
    """Sensitivity at the given average numbers of false positives per image.

    Linear interpolation of the curve with ``fps`` increasing (as :func:`monai.metrics.compute_froc_score`); at a
    rate shared by several curve points the highest sensitivity is used; rates above the curve's largest FP rate
    clamp to the sensitivity with all detections kept.

    Args:
        fps_per_image: shape ``(K,)``, non-increasing, as returned by :func:`froc_curve`.
        sensitivity: shape ``(K,)``, as returned by :func:`froc_curve`.
        fp_rates: shape ``(R,)``, FP rates (false positives per image), finite and ``>= 0``.

    Returns:
        shape ``(R,)``, the sensitivity at each rate (NaN when the curve's sensitivity is NaN).
    """
    fps, sens = _check_curve(fps_per_image, sensitivity)
    return np.interp(_check_rates(fp_rates), fps[::-1], sens[::-1])


def froc_score(
    detections: Sequence[ArrayLike] | ArrayLike,
    boxes: Sequence[ArrayLike] | ArrayLike,
    fp_rates: Sequence[float] = DEFAULT_FP_RATES,
) -> float:
    """Mean sensitivity at ``fp_rates`` average false positives per image (the FROC score).

    Args:
        detections: one array per image, shape ``(N_i, 3)``, rows ``(x, y, score)`` (see :func:`froc_curve`).
        boxes: one array per image, shape ``(M_i, 4)``, rows ``(x1, y1, x2, y2)`` (see :func:`froc_curve`).
        fp_rates: FP rates (false positives per image over all images), finite and ``>= 0``.

    Returns:
        The mean of :func:`sensitivity_at` over ``fp_rates``, in ``[0, 1]``; NaN when there are no boxes.
    """
    fps, sens, _ = froc_curve(detections, boxes)
    # the curve is already in the order compute_froc_score expects (fps non-increasing): it reverses it itself.
    return float(compute_froc_score(fps, sens, tuple(_check_rates(fp_rates))))


def threshold_index(fps_per_image: np.ndarray, thresholds: np.ndarray, fp_rate: float) -> int:
    """Index of the lowest threshold whose FP rate is at most ``fp_rate`` on a curve of :mod:`scripts.evaluate.froc`.

    Args:
        fps_per_image: ``(T + 1,)`` FP rates, non-increasing; thresholds: ``(T + 1,)`` ascending, last ``+inf``.
        fp_rate: FP budget, false positives per image.
    """
    within = np.flatnonzero(np.asarray(fps_per_image) <= fp_rate * (1 + 1e-9))  # tolerance for count / N rounding
    return int(within[np.argmin(np.asarray(thresholds)[within])])
