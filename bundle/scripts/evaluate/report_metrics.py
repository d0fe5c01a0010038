"""Numbers of the test report: per-image records, per-detection outcomes, ROC curve, operating threshold and the
per-class metrics of ``metrics.json`` (AUROC and FROC from :mod:`scripts.evaluate.class_metrics`, as validation computes
them).

Per class ``c``:

* **AUROC** (image level): ``image_score[:, c]`` against ``image_label[:, c]``
  (:func:`scripts.evaluate.class_metrics.class_auroc`); NaN (``null`` in JSON) when the test set holds a single label
  value.
* **FROC** (lesion level): the class-``c`` detections ``(x, y, score)`` against the class-``c`` boxes of ALL boxed
  images (images without class-``c`` boxes are negatives), matched by :func:`scripts.evaluate.froc.match_detections` and
  pooled into :func:`scripts.evaluate.class_metrics.class_froc`; the score is the mean sensitivity at the paper FP rates
  (0.1-0.4 FP/image) and at the CAMELYON16 rates (0.25-8 FP/image).
* **Operating point**: the lowest score threshold whose FP rate is at most ``operating_fp_rate`` (0.4 FP/image
  by default), i.e. the most sensitive threshold within that FP budget. A box is *missed* when the maximum score
  of its class's detections inside it is below that threshold. When even the highest-scoring FP exceeds the
  budget, the threshold is ``+inf`` (``null`` in JSON): nothing is kept and every box is missed.

Detection outcomes follow the matching rule of :mod:`scripts.evaluate.froc`
(:func:`scripts.evaluate.froc.points_in_boxes`): a point inside a box of its class is ``"TP"`` when it holds the box's
maximum score (the first such point on ties), otherwise ``"extra-in-box"`` (neither TP nor FP); a point inside no box
of its class is ``"FP"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scripts.evaluate.class_metrics import FROCCurve, class_auroc, class_froc, nanmean, reliability
from scripts.evaluate.froc import as_rows, match_detections, points_in_boxes, threshold_index, to_numpy

__all__ = [
    "CAMELYON_FP_RATES",
    "OPERATING_FP_RATE",
    "PAPER_FP_RATES",
    "ImageRecord",
    "compute_metrics",
    "detection_outcomes",
    "operating_point",
    "roc_curve",
]

#: FP rates (false positives per image) of the FROC score used in the rib-fracture literature.
PAPER_FP_RATES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
#: FP rates of the CAMELYON16 FROC score.
CAMELYON_FP_RATES: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8)
#: FP budget (false positives per image) that defines the operating threshold.
OPERATING_FP_RATE: float = 0.4

#: Outcome labels of a detection (see the module docstring).
TP, FP, EXTRA = "TP", "FP", "extra-in-box"

METRIC_DECIMALS = 4  # AUROC, FROC, sensitivities, FP rates
SCORE_DECIMALS = 6  # thresholds and detection scores: fine enough to re-apply a threshold from the JSON


@dataclass
class ImageRecord:
    """Ground truth and prediction of one test image (arrays are converted to float64 numpy on creation).

    Attributes:
        image: path of the image file (used for overlays and listed in the outputs).
        image_label: shape ``(C,)``, 0/1 ground truth per class.
        image_score: shape ``(C,)``, predicted probability per class (the heatmap maximum).
        detections: shape ``(K, 4)``, rows ``(x, y, score, class_index)`` in file pixels.
        boxes: shape ``(M, 5)``, rows ``(x1, y1, x2, y2, class_index)`` in file pixels.
        boxed: False for an image with image-level labels only: it counts for AUROC, not for FROC.
    """

    image: str
    image_label: np.ndarray
    image_score: np.ndarray
    detections: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))
    boxed: bool = True

    def __post_init__(self) -> None:
        self.image = str(self.image)
        self.image_label = to_numpy(self.image_label).reshape(-1)
        self.image_score = to_numpy(self.image_score).reshape(-1)
        self.detections = as_rows(self.detections, 4, f"{self.image}: detections")
        self.boxes = as_rows(self.boxes, 5, f"{self.image}: boxes")

    def class_detections(self, class_index: int) -> np.ndarray:
        """Detections of one class, shape ``(K_c, 3)``, rows ``(x, y, score)``."""
        return self.detections[self.detections[:, 3] == class_index, :3]

    def class_boxes(self, class_index: int) -> np.ndarray:
        """Boxes of one class, shape ``(M_c, 4)``, rows ``(x1, y1, x2, y2)``."""
        return self.boxes[self.boxes[:, 4] == class_index, :4]


def _check_records(records: Sequence[ImageRecord], num_classes: int) -> None:
    """Raise ``ValueError`` for an empty set, mismatched class counts, non-binary labels or unknown class indices."""
    if len(records) == 0:
        raise ValueError("no image records to evaluate.")
    if num_classes == 0:
        raise ValueError("class_names is empty.")
    for record in records:
        if record.image_label.shape != (num_classes,) or record.image_score.shape != (num_classes,):
            raise ValueError(
                f"{record.image}: image_label {record.image_label.shape} and image_score {record.image_score.shape} "
                f"must both have shape ({num_classes},)."
            )
        if not np.isin(record.image_label, (0.0, 1.0)).all():
            raise ValueError(f"{record.image}: image_label must hold 0/1 values, got {record.image_label}.")
        if not np.isfinite(record.image_score).all():
            raise ValueError(f"{record.image}: image_score must be finite.")
        for name, column in (("detections", record.detections[:, 3]), ("boxes", record.boxes[:, 4])):
            if not np.isin(column, np.arange(num_classes)).all():
                raise ValueError(f"{record.image}: {name} hold a class index outside 0..{num_classes - 1}.")


def detection_outcomes(detections: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outcome of each detection and maximum score inside each box, for one image and one class.

    Args:
        detections: shape ``(N, 3)``, rows ``(x, y, score)`` in pixels.
        boxes: shape ``(M, 4)``, rows ``(x1, y1, x2, y2)`` in pixels.

    Returns:
        ``(outcomes, box_scores)``: ``outcomes`` shape ``(N,)`` of ``"TP"``, ``"FP"`` or ``"extra-in-box"`` (the
        :mod:`scripts.evaluate.froc` rules; on tied maxima the first point is the TP); ``box_scores`` shape ``(M,)``,
        the maximum score inside each box or ``-inf`` when no point is inside (as
        ``scripts.evaluate.froc.match_detections``).
    """
    dets, gt = as_rows(detections, 3, "detections"), as_rows(boxes, 4, "boxes")
    if dets.shape[0] == 0:
        return np.zeros((0,), dtype=object), np.full(gt.shape[0], -np.inf)
    inside = points_in_boxes(dets, gt)  # (N, M)
    masked = np.where(inside, dets[:, 2:3], -np.inf)  # (N, M)
    box_scores = masked.max(axis=0, initial=-np.inf)
    is_tp = np.zeros(dets.shape[0], dtype=bool)
    hit = inside.any(axis=0)
    is_tp[masked.argmax(axis=0)[hit]] = True  # argmax returns the first of tied maxima
    outcomes = np.where(is_tp, TP, np.where(inside.any(axis=1), EXTRA, FP)).astype(object)
    return outcomes, box_scores


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image-level ROC curve with one point per distinct score (counting ``score >= threshold``).

    Args:
        scores: shape ``(N,)``, predicted probabilities.
        labels: shape ``(N,)``, 0/1 ground truth.

    Returns:
        ``(fpr, tpr, thresholds)``, each of shape ``(T + 1,)``: ``thresholds`` descending, starting with ``+inf``
        (the origin ``(0, 0)``) then each distinct score; ``fpr`` and ``tpr`` non-decreasing, ending at ``(1, 1)``.
        ``tpr`` (``fpr``) is all NaN when there is no positive (negative) image.
    """
    scores, labels = to_numpy(scores).reshape(-1), to_numpy(labels).reshape(-1)
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    rates = []
    for wanted in (0.0, 1.0):
        group = np.sort(scores[labels == wanted])
        count = group.size - np.searchsorted(group, thresholds, side="left")
        rates.append(count / group.size if group.size else np.full(thresholds.shape, np.nan))
    return rates[0], rates[1], thresholds


def operating_point(fps_per_image: np.ndarray, thresholds: np.ndarray, fp_rate: float = OPERATING_FP_RATE) -> int:
    """Index of the operating point on a FROC curve: the lowest threshold with at most ``fp_rate`` FP per image.

    Args:
        fps_per_image: shape ``(T + 1,)``, as returned by :func:`scripts.evaluate.froc.froc_curve`.
        thresholds: shape ``(T + 1,)``, ascending and ending with ``+inf`` (whose FP rate is 0).
        fp_rate: FP budget, false positives per image.

    Returns:
        The curve index; ``thresholds[index]`` is ``+inf`` when every finite threshold exceeds the budget.
    """
    return threshold_index(fps_per_image, thresholds, fp_rate)


@dataclass
class ImageOutcomes:
    """Per-detection outcomes and per-box maximum scores of one image, in the record's row order."""

    outcomes: np.ndarray  # (K,) object: "TP" | "FP" | "extra-in-box"
    box_scores: np.ndarray  # (M,) max score of the box's class inside it, -inf if none


def image_outcomes(record: ImageRecord, num_classes: int) -> ImageOutcomes:
    """Match each class of one image separately and scatter the results back to the record's row order."""
    outcomes = np.empty(record.detections.shape[0], dtype=object)
    box_scores = np.full(record.boxes.shape[0], -np.inf)
    for c in range(num_classes):
        det_rows = record.detections[:, 3] == c
        box_rows = record.boxes[:, 4] == c
        outcomes[det_rows], box_scores[box_rows] = detection_outcomes(
            record.detections[det_rows, :3], record.boxes[box_rows, :4]
        )
    return ImageOutcomes(outcomes, box_scores)


@dataclass
class ClassEvaluation:
    """Everything the report needs about one class (unrounded)."""

    name: str
    labels: np.ndarray  # (N,) 0/1
    scores: np.ndarray  # (N,) image scores
    auroc: float
    roc: tuple[np.ndarray, np.ndarray, np.ndarray]  # fpr, tpr, thresholds (descending)
    froc: FROCCurve
    sensitivity: dict[float, float]  # FP rate -> sensitivity
    froc_paper: float
    froc_camelyon: float
    operating_threshold: float
    operating_fps: float
    operating_sensitivity: float
    num_boxes: int
    num_detections: int


def _evaluate_class(
    records: Sequence[ImageRecord],
    class_index: int,
    name: str,
    paper_rates: Sequence[float],
    camelyon_rates: Sequence[float],
    operating_fp_rate: float,
) -> ClassEvaluation:
    """AUROC, FROC curve and scores, and operating point of one class over all records."""
    labels = np.array([r.image_label[class_index] for r in records])
    scores = np.array([r.image_score[class_index] for r in records])
    boxed = [r for r in records if r.boxed]  # image-level-only records have no boxes to hit: AUROC only
    detections = [r.class_detections(class_index) for r in boxed]
    boxes = [r.class_boxes(class_index) for r in boxed]
    matches = [match_detections(d, b) for d, b in zip(detections, boxes, strict=True)]
    fp_scores = np.concatenate([np.zeros(0), *(fp for fp, _ in matches)])
    tp_scores = np.concatenate([np.zeros(0), *(tp for _, tp in matches)])
    froc = class_froc(fp_scores, tp_scores, len(boxed))
    fps, sens, thresholds = froc.fps_per_image, froc.sensitivity, froc.thresholds
    rates = sorted({float(r) for r in (*paper_rates, *camelyon_rates)})
    sensitivity = dict(zip(rates, froc.sensitivity_at(rates).tolist(), strict=True))
    op = operating_point(fps, thresholds, operating_fp_rate)
    return ClassEvaluation(
        name=name,
        labels=labels,
        scores=scores,
        auroc=class_auroc(scores, labels),
        roc=roc_curve(scores, labels),
        froc=froc,
        sensitivity=sensitivity,
        froc_paper=froc.score(paper_rates),
        froc_camelyon=froc.score(camelyon_rates),
        operating_threshold=float(thresholds[op]),
        operating_fps=float(fps[op]),
        operating_sensitivity=float(sens[op]),
        num_boxes=int(sum(b.shape[0] for b in boxes)),
        num_detections=int(sum(d.shape[0] for d in detections)),
    )


def evaluate_classes(
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    paper_rates: Sequence[float],
    camelyon_rates: Sequence[float],
    operating_fp_rate: float,
) -> list[ClassEvaluation]:
    """Validate the records and evaluate every class."""
    _check_records(records, len(class_names))
    return [
        _evaluate_class(records, c, name, paper_rates, camelyon_rates, operating_fp_rate)
        for c, name in enumerate(class_names)
    ]


def json_number(value: float, decimals: int = METRIC_DECIMALS) -> float | None:
    """JSON number: ``value`` rounded, or ``None`` when it is NaN or infinite."""
    return round(float(value), decimals) if math.isfinite(value) else None


def rate_key(rate: float) -> str:
    """Key of an FP rate in the metrics dict: ``0.1 -> "0.1"``, ``1 -> "1"``."""
    return f"{float(rate):g}"


def _class_metrics(ev: ClassEvaluation) -> dict[str, Any]:
    """The ``metrics["classes"][name]`` entry of one class."""
    num_positive = int(ev.labels.sum())
    return {
        "auroc": json_number(ev.auroc),
        "froc_paper": json_number(ev.froc_paper),
        "froc_camelyon": json_number(ev.froc_camelyon),
        "sensitivity_at": {rate_key(r): json_number(s) for r, s in ev.sensitivity.items()},
        "operating_threshold": json_number(ev.operating_threshold, SCORE_DECIMALS),
        "operating_fps_per_image": json_number(ev.operating_fps),
        "operating_sensitivity": json_number(ev.operating_sensitivity),
        "expected_calibration_error": json_number(reliability(ev.scores, ev.labels)["ece"]),
        "num_images": int(ev.labels.size),
        "num_positive_images": num_positive,
        "num_negative_images": int(ev.labels.size) - num_positive,
        "num_boxes": ev.num_boxes,
        "num_detections": ev.num_detections,
    }


def metrics_dict(
    evaluations: Sequence[ClassEvaluation],
    paper_rates: Sequence[float],
    camelyon_rates: Sequence[float],
    operating_fp_rate: float,
) -> dict[str, Any]:
    """JSON-ready metrics (rounded, NaN/inf as ``None``) from the per-class evaluations."""
    rates = sorted(evaluations[0].sensitivity)
    mean = {
        "auroc": json_number(nanmean([ev.auroc for ev in evaluations])),
        "froc_paper": json_number(nanmean([ev.froc_paper for ev in evaluations])),
        "froc_camelyon": json_number(nanmean([ev.froc_camelyon for ev in evaluations])),
        "sensitivity_at": {rate_key(r): json_number(nanmean([ev.sensitivity[r] for ev in evaluations])) for r in rates},
    }
    return {
        "classes": {ev.name: _class_metrics(ev) for ev in evaluations},
        "mean": mean,
        "fp_rates": {"paper": [float(r) for r in paper_rates], "camelyon": [float(r) for r in camelyon_rates]},
        "operating_fp_rate": float(operating_fp_rate),
        "num_images": int(evaluations[0].labels.size),
    }


def compute_metrics(
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    paper_rates: Sequence[float] = PAPER_FP_RATES,
    camelyon_rates: Sequence[float] = CAMELYON_FP_RATES,
    operating_fp_rate: float = OPERATING_FP_RATE,
) -> dict[str, Any]:
    """Per-class AUROC, FROC scores, sensitivities and operating threshold, and their means over classes.

    Args:
        records: one :class:`ImageRecord` per test image (``C`` classes each).
        class_names: ``C`` names, in class-index order.
        paper_rates: FP rates (per image) averaged by ``froc_paper``.
        camelyon_rates: FP rates (per image) averaged by ``froc_camelyon``.
        operating_fp_rate: FP budget (per image) defining ``operating_threshold``.

    Returns:
        A JSON-serialisable dict (metrics rounded to 4 decimals, thresholds to 6; NaN/inf as ``None``)::

            {"classes": {name: {"auroc", "froc_paper", "froc_camelyon", "sensitivity_at": {"0.1": ..., ...},
                                "operating_threshold", "operating_fps_per_image", "operating_sensitivity",
                                "expected_calibration_error", "num_images", "num_positive_images",
                                "num_negative_images", "num_boxes", "num_detections"}},
             "mean": {"auroc", "froc_paper", "froc_camelyon", "sensitivity_at"},  # mean over classes, NaN skipped
             "fp_rates": {"paper": [...], "camelyon": [...]}, "operating_fp_rate": 0.4, "num_images": N}
    """
    evaluations = evaluate_classes(records, class_names, paper_rates, camelyon_rates, operating_fp_rate)
    return metrics_dict(evaluations, paper_rates, camelyon_rates, operating_fp_rate)
