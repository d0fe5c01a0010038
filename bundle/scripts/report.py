"""Evaluation report of a test set: per-class AUROC and FROC, curves, per-detection outcomes, overlay crops, HTML.

The evaluation workflow gathers one :class:`ImageRecord` per test image and calls :func:`write_evaluation_report`
once at the end (or :func:`compute_metrics` for the numbers only). Per class ``c``:

* **AUROC** (image level): ``image_score[:, c]`` against ``image_label[:, c]`` with
  :func:`monai.metrics.compute_roc_auc`; NaN (``null`` in JSON) when the test set holds a single label value.
* **FROC** (lesion level): the class-``c`` detections ``(x, y, score)`` against the class-``c`` boxes of ALL
  images (images without class-``c`` boxes are negatives) with :func:`scripts.froc.froc_curve`; the score is the
  mean sensitivity at the paper FP rates (0.1-0.4 FP/image) and at the CAMELYON16 rates (0.25-8 FP/image).
* **Operating point**: the lowest score threshold whose FP rate is at most ``operating_fp_rate`` (0.4 FP/image
  by default), i.e. the most sensitive threshold within that FP budget. A box is *missed* when the maximum score
  of its class's detections inside it is below that threshold. When even the highest-scoring FP exceeds the
  budget, the threshold is ``+inf`` (``null`` in JSON): nothing is kept and every box is missed.

Detection outcomes follow the matching rules of :mod:`scripts.froc`: a point inside a box of its class is
``"TP"`` when it holds the box's maximum score (the first such point on ties), otherwise ``"extra-in-box"``
(neither TP nor FP); a point inside no box of its class is ``"FP"``.

Coordinates are file pixels, continuous (pixel ``k`` spans ``[k, k + 1)``), ``x`` = column, ``y`` = row. All
outputs are deterministic (no timestamps), so two runs on the same records give identical files.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
from monai.metrics import compute_roc_auc
from PIL import Image, ImageDraw, ImageFont

from scripts.froc import _as_rows, _to_numpy, froc_curve, sensitivity_at  # shared array checks
from scripts.loading import load_cxr
from scripts.operating_point import threshold_index
from scripts.writers import CLASS_COLOURS

__all__ = [
    "PAPER_FP_RATES",
    "CAMELYON_FP_RATES",
    "OPERATING_FP_RATE",
    "ImageRecord",
    "detection_outcomes",
    "roc_curve",
    "operating_point",
    "compute_metrics",
    "format_metrics_table",
    "write_evaluation_report",
]

logger = logging.getLogger(__name__)

#: FP rates (false positives per image) of the FROC score used in the rib-fracture literature.
PAPER_FP_RATES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
#: FP rates of the CAMELYON16 FROC score.
CAMELYON_FP_RATES: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8)
#: FP budget (false positives per image) that defines the operating threshold.
OPERATING_FP_RATE: float = 0.4

#: Outcome labels of a detection (see the module docstring).
TP, FP, EXTRA = "TP", "FP", "extra-in-box"

_METRIC_DECIMALS = 4  # AUROC, FROC, sensitivities, FP rates
_SCORE_DECIMALS = 6  # thresholds and detection scores: fine enough to re-apply a threshold from the JSON
_COORD_DECIMALS = 2  # pixel coordinates in detections.json

_BOX_COLOUR = (0, 230, 60)  # ground truth boxes in overlays (green)
_CROP_OUTPUT_PX = 256  # side of an overlay crop, pixels
_CROP_MIN_PX = 96  # smallest crop side in file pixels
_CROP_BOX_FACTOR = 3.0  # crop side = this x the longer box side
_CROP_POINT_FRACTION = 0.1  # crop side around a point = this x the image's shorter side
_PLOT_FP_RANGE = (0.05, 8.0)  # x range of the FROC plot, FP per image (log scale)


# ----------------------------------------------------------------------------------------------------------------
# input records
# ----------------------------------------------------------------------------------------------------------------


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
        self.image_label = _to_numpy(self.image_label).reshape(-1)
        self.image_score = _to_numpy(self.image_score).reshape(-1)
        self.detections = _as_rows(self.detections, 4, f"{self.image}: detections")
        self.boxes = _as_rows(self.boxes, 5, f"{self.image}: boxes")

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


# ----------------------------------------------------------------------------------------------------------------
# per-detection outcomes, ROC curve, operating threshold
# ----------------------------------------------------------------------------------------------------------------


def _inside(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(N, M)`` bool: point ``n`` (``(N, >=2)`` rows ``x, y, ...``) lies in box ``m`` (edges included)."""
    x, y = points[:, 0:1], points[:, 1:2]
    return (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])


def detection_outcomes(detections: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outcome of each detection and maximum score inside each box, for one image and one class.

    Args:
        detections: shape ``(N, 3)``, rows ``(x, y, score)`` in pixels.
        boxes: shape ``(M, 4)``, rows ``(x1, y1, x2, y2)`` in pixels.

    Returns:
        ``(outcomes, box_scores)``: ``outcomes`` shape ``(N,)`` of ``"TP"``, ``"FP"`` or ``"extra-in-box"`` (the
        :mod:`scripts.froc` rules; on tied maxima the first point is the TP); ``box_scores`` shape ``(M,)``, the
        maximum score inside each box or ``-inf`` when no point is inside (as ``scripts.froc.match_detections``).
    """
    dets, gt = _as_rows(detections, 3, "detections"), _as_rows(boxes, 4, "boxes")
    if dets.shape[0] == 0:
        return np.zeros((0,), dtype=object), np.full(gt.shape[0], -np.inf)
    inside = _inside(dets, gt)  # (N, M)
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
    scores, labels = _to_numpy(scores).reshape(-1), _to_numpy(labels).reshape(-1)
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    rates = []
    for wanted in (0.0, 1.0):
        group = np.sort(scores[labels == wanted])
        count = group.size - np.searchsorted(group, thresholds, side="left")
        rates.append(count / group.size if group.size else np.full(thresholds.shape, np.nan))
    return rates[0], rates[1], thresholds


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUROC with :func:`monai.metrics.compute_roc_auc`; NaN (without MONAI's warning) for a single label value."""
    if labels.size == 0 or labels.min() == labels.max():
        return math.nan
    return float(compute_roc_auc(torch.as_tensor(scores), torch.as_tensor(labels)))


def operating_point(fps_per_image: np.ndarray, thresholds: np.ndarray, fp_rate: float = OPERATING_FP_RATE) -> int:
    """Index of the operating point on a FROC curve: the lowest threshold with at most ``fp_rate`` FP per image.

    Args:
        fps_per_image: shape ``(T + 1,)``, as returned by :func:`scripts.froc.froc_curve`.
        thresholds: shape ``(T + 1,)``, ascending and ending with ``+inf`` (whose FP rate is 0).
        fp_rate: FP budget, false positives per image.

    Returns:
        The curve index; ``thresholds[index]`` is ``+inf`` when every finite threshold exceeds the budget.
    """
    return threshold_index(fps_per_image, thresholds, fp_rate)


# ----------------------------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _ClassEvaluation:
    """Everything the report needs about one class (unrounded)."""

    name: str
    labels: np.ndarray  # (N,) 0/1
    scores: np.ndarray  # (N,) image scores
    auroc: float
    roc: tuple[np.ndarray, np.ndarray, np.ndarray]  # fpr, tpr, thresholds (descending)
    froc: tuple[np.ndarray, np.ndarray, np.ndarray]  # fps_per_image, sensitivity, thresholds (ascending)
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
) -> _ClassEvaluation:
    """AUROC, FROC curve and scores, and operating point of one class over all records."""
    labels = np.array([r.image_label[class_index] for r in records])
    scores = np.array([r.image_score[class_index] for r in records])
    boxed = [r for r in records if r.boxed]  # image-level-only records have no boxes to hit: AUROC only
    detections = [r.class_detections(class_index) for r in boxed]
    boxes = [r.class_boxes(class_index) for r in boxed]
    if boxed:
        with warnings.catch_warnings():  # no boxes: NaN sensitivity is reported as null, the warning adds nothing
            warnings.filterwarnings("ignore", message="No ground-truth boxes", category=RuntimeWarning)
            fps, sens, thresholds = froc_curve(detections, boxes)
    else:
        fps, sens, thresholds = np.zeros(1), np.full(1, np.nan), np.full(1, np.inf)
    rates = sorted({float(r) for r in (*paper_rates, *camelyon_rates)})
    sensitivity = dict(zip(rates, sensitivity_at(fps, sens, rates).tolist(), strict=True))
    op = operating_point(fps, thresholds, operating_fp_rate)
    return _ClassEvaluation(
        name=name,
        labels=labels,
        scores=scores,
        auroc=_auroc(scores, labels),
        roc=roc_curve(scores, labels),
        froc=(fps, sens, thresholds),
        sensitivity=sensitivity,
        froc_paper=float(np.mean([sensitivity[float(r)] for r in paper_rates])),
        froc_camelyon=float(np.mean([sensitivity[float(r)] for r in camelyon_rates])),
        operating_threshold=float(thresholds[op]),
        operating_fps=float(fps[op]),
        operating_sensitivity=float(sens[op]),
        num_boxes=int(sum(b.shape[0] for b in boxes)),
        num_detections=int(sum(d.shape[0] for d in detections)),
    )


def _evaluate(
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    paper_rates: Sequence[float],
    camelyon_rates: Sequence[float],
    operating_fp_rate: float,
) -> list[_ClassEvaluation]:
    """Validate the records and evaluate every class."""
    _check_records(records, len(class_names))
    return [
        _evaluate_class(records, c, name, paper_rates, camelyon_rates, operating_fp_rate)
        for c, name in enumerate(class_names)
    ]


def _num(value: float, decimals: int = _METRIC_DECIMALS) -> float | None:
    """JSON number: ``value`` rounded, or ``None`` when it is NaN or infinite."""
    return round(float(value), decimals) if math.isfinite(value) else None


def _rate_key(rate: float) -> str:
    """Key of an FP rate in the metrics dict: ``0.1 -> "0.1"``, ``1 -> "1"``."""
    return f"{float(rate):g}"


def _nanmean(values: Sequence[float]) -> float:
    """Mean of the finite values; NaN (without a warning) when there is none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _class_metrics(ev: _ClassEvaluation) -> dict[str, Any]:
    """The ``metrics["classes"][name]`` entry of one class."""
    num_positive = int(ev.labels.sum())
    return {
        "auroc": _num(ev.auroc),
        "froc_paper": _num(ev.froc_paper),
        "froc_camelyon": _num(ev.froc_camelyon),
        "sensitivity_at": {_rate_key(r): _num(s) for r, s in ev.sensitivity.items()},
        "operating_threshold": _num(ev.operating_threshold, _SCORE_DECIMALS),
        "operating_fps_per_image": _num(ev.operating_fps),
        "operating_sensitivity": _num(ev.operating_sensitivity),
        "num_images": int(ev.labels.size),
        "num_positive_images": num_positive,
        "num_negative_images": int(ev.labels.size) - num_positive,
        "num_boxes": ev.num_boxes,
        "num_detections": ev.num_detections,
    }


def _metrics_dict(
    evaluations: Sequence[_ClassEvaluation],
    paper_rates: Sequence[float],
    camelyon_rates: Sequence[float],
    operating_fp_rate: float,
) -> dict[str, Any]:
    """JSON-ready metrics (rounded, NaN/inf as ``None``) from the per-class evaluations."""
    rates = sorted(evaluations[0].sensitivity)
    mean = {
        "auroc": _num(_nanmean([ev.auroc for ev in evaluations])),
        "froc_paper": _num(_nanmean([ev.froc_paper for ev in evaluations])),
        "froc_camelyon": _num(_nanmean([ev.froc_camelyon for ev in evaluations])),
        "sensitivity_at": {_rate_key(r): _num(_nanmean([ev.sensitivity[r] for ev in evaluations])) for r in rates},
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
                                "num_images", "num_positive_images", "num_negative_images", "num_boxes",
                                "num_detections"}},
             "mean": {"auroc", "froc_paper", "froc_camelyon", "sensitivity_at"},  # mean over classes, NaN skipped
             "fp_rates": {"paper": [...], "camelyon": [...]}, "operating_fp_rate": 0.4, "num_images": N}
    """
    evaluations = _evaluate(records, class_names, paper_rates, camelyon_rates, operating_fp_rate)
    return _metrics_dict(evaluations, paper_rates, camelyon_rates, operating_fp_rate)


# ----------------------------------------------------------------------------------------------------------------
# metrics table (text and HTML share the cells)
# ----------------------------------------------------------------------------------------------------------------


def _cell(value: float | None) -> str:
    """Table cell of a metric: three decimals, or ``-`` when undefined."""
    return "-" if value is None else f"{value:.3f}"


def _table(metrics: dict[str, Any], compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows (classes then mean) of the metrics table, as strings; ``compact``: short headers."""
    rates = metrics["fp_rates"]["paper"]
    if compact:
        header = ["Class", "AUROC", "FROC paper", "FROC CAMELYON", *(f"Sens@{_rate_key(r)}" for r in rates)]
    else:
        header = ["Class", "AUROC", "FROC (paper rates)", "FROC (CAMELYON rates)"]
        header += [f"Sensitivity @ {_rate_key(r)} FP/image" for r in rates]
    header += ["#images", "#positive", "#boxes"]
    rows = []
    for name, m in metrics["classes"].items():
        sens = [_cell(m["sensitivity_at"][_rate_key(r)]) for r in rates]
        counts = [str(m["num_images"]), str(m["num_positive_images"]), str(m["num_boxes"])]
        rows.append([name, _cell(m["auroc"]), _cell(m["froc_paper"]), _cell(m["froc_camelyon"]), *sens, *counts])
    mean = metrics["mean"]
    sens = [_cell(mean["sensitivity_at"][_rate_key(r)]) for r in rates]
    total_boxes = str(sum(m["num_boxes"] for m in metrics["classes"].values()))
    counts = [str(metrics["num_images"]), "-", total_boxes]
    rows.append(["mean", _cell(mean["auroc"]), _cell(mean["froc_paper"]), _cell(mean["froc_camelyon"]), *sens, *counts])
    return header, rows


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """Render the metrics of :func:`compute_metrics` as a fixed-width text table (one row per class, then mean).

    Columns: AUROC, FROC at the paper and CAMELYON rates, sensitivity at each paper rate (FP per image), numbers
    of images, positive images and boxes. Undefined values (NaN) show as ``-``.
    """
    header, rows = _table(metrics, compact=True)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])])


# ----------------------------------------------------------------------------------------------------------------
# CSV curves and plots
# ----------------------------------------------------------------------------------------------------------------


def _csv_number(value: float) -> str:
    """CSV cell: ``inf``/``nan`` spelled out (``float()`` parses them), else 6 significant digits."""
    return str(value) if not math.isfinite(value) else f"{value:.6g}"


def _write_csv(path: Path, header: Sequence[str], columns: Sequence[np.ndarray]) -> None:
    """Write equally long numeric ``columns`` under ``header``."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in zip(*columns, strict=True):
            writer.writerow([_csv_number(float(v)) for v in row])


def _write_curves(output_dir: Path, evaluations: Sequence[_ClassEvaluation]) -> None:
    """``froc_curve_<class>.csv`` and ``roc_curve_<class>.csv``, rows from the origin (threshold ``inf``) outwards."""
    for ev in evaluations:
        fps, sens, froc_thr = ev.froc
        _write_csv(
            output_dir / f"froc_curve_{_safe_name(ev.name)}.csv",
            ("threshold", "fps_per_image", "sensitivity"),
            (froc_thr[::-1], fps[::-1], sens[::-1]),
        )
        fpr, tpr, roc_thr = ev.roc
        _write_csv(
            output_dir / f"roc_curve_{_safe_name(ev.name)}.csv", ("threshold", "fpr", "tpr"), (roc_thr, fpr, tpr)
        )


def _plot_colour(class_index: int) -> tuple[float, float, float]:
    """Matplotlib RGB of a class, the overlay colour darkened a little to read on white."""
    return tuple(0.8 * v / 255 for v in CLASS_COLOURS[class_index % len(CLASS_COLOURS)])


def _new_axes(title: str) -> tuple[Any, Any]:
    """A figure drawn by the Agg canvas (no pyplot, so no global backend change) and its single axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _plot_froc(path: Path, evaluations: Sequence[_ClassEvaluation], paper_rates: Sequence[float], model: str) -> None:
    """FROC per class on a log FP axis: the interpolation the FROC score uses, dots at the paper rates."""
    from matplotlib.ticker import FixedLocator, NullLocator

    figure, axes = _new_axes(f"FROC - {model}")
    grid = np.geomspace(*_PLOT_FP_RANGE, 256)
    for c, ev in enumerate(evaluations):
        if ev.num_boxes == 0:
            axes.plot([], [], color=_plot_colour(c), label=f"{ev.name} (no boxes)")
            continue
        fps, sens, _ = ev.froc
        label = f"{ev.name} (FROC {ev.froc_paper:.3f}, {ev.num_boxes} box{'es' if ev.num_boxes != 1 else ''})"
        axes.plot(grid, sensitivity_at(fps, sens, grid), color=_plot_colour(c), lw=2, label=label)
        axes.plot(paper_rates, [ev.sensitivity[float(r)] for r in paper_rates], "o", color=_plot_colour(c), ms=5)
    for rate in paper_rates:
        axes.axvline(rate, color="0.4", ls=":", lw=1)
    axes.set_xscale("log")
    axes.set_xlim(*_PLOT_FP_RANGE)
    ticks = [0.05, 0.1, 0.2, 0.3, 0.4, 1, 2, 4, 8]
    axes.xaxis.set_major_locator(FixedLocator(ticks))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.set_xticklabels([f"{t:g}" for t in ticks])
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("False positives per image")
    axes.set_ylabel("Sensitivity (boxes hit)")
    axes.legend(loc="best")
    figure.savefig(path)


def _plot_roc(path: Path, evaluations: Sequence[_ClassEvaluation], model: str) -> None:
    """Image-level ROC per class with its AUROC in the legend."""
    figure, axes = _new_axes(f"Image-level ROC - {model}")
    axes.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1)
    for c, ev in enumerate(evaluations):
        fpr, tpr, _ = ev.roc
        auroc = "n/a" if math.isnan(ev.auroc) else f"{ev.auroc:.3f}"
        label = f"{ev.name} (AUROC {auroc}, {int(ev.labels.sum())}/{ev.labels.size} positive)"
        if math.isnan(ev.auroc):
            axes.plot([], [], color=_plot_colour(c), label=label)
        else:
            axes.plot(fpr, tpr, color=_plot_colour(c), lw=2, label=label)
    axes.set_xlim(-0.02, 1.02)  # margins keep curves along the axes visible
    axes.set_ylim(-0.02, 1.02)
    axes.set_aspect("equal")
    axes.set_xlabel("False positive rate")
    axes.set_ylabel("True positive rate")
    axes.legend(loc="lower right")
    figure.savefig(path)


# ----------------------------------------------------------------------------------------------------------------
# detections.json
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _ImageOutcomes:
    """Per-detection outcomes and per-box maximum scores of one image, in the record's row order."""

    outcomes: np.ndarray  # (K,) object: "TP" | "FP" | "extra-in-box"
    box_scores: np.ndarray  # (M,) max score of the box's class inside it, -inf if none


def _image_outcomes(record: ImageRecord, num_classes: int) -> _ImageOutcomes:
    """Match each class of one image separately and scatter the results back to the record's row order."""
    outcomes = np.empty(record.detections.shape[0], dtype=object)
    box_scores = np.full(record.boxes.shape[0], -np.inf)
    for c in range(num_classes):
        det_rows = record.detections[:, 3] == c
        box_rows = record.boxes[:, 4] == c
        outcomes[det_rows], box_scores[box_rows] = detection_outcomes(
            record.detections[det_rows, :3], record.boxes[box_rows, :4]
        )
    return _ImageOutcomes(outcomes, box_scores)


def _image_entry(
    record: ImageRecord, outcome: _ImageOutcomes, class_names: Sequence[str], thresholds: Sequence[float]
) -> dict[str, Any]:
    """The ``detections.json`` entry of one image (``thresholds``: operating threshold per class)."""
    detections = [
        {
            "class": class_names[int(cls)],
            "x": round(x, _COORD_DECIMALS),
            "y": round(y, _COORD_DECIMALS),
            "score": round(score, _SCORE_DECIMALS),
            "outcome": str(result),
            "above_operating_threshold": bool(score >= thresholds[int(cls)]),
        }
        for (x, y, score, cls), result in zip(record.detections.tolist(), outcome.outcomes, strict=True)
    ]
    boxes = [
        {
            "class": class_names[int(cls)],
            **{
                key: round(v, _COORD_DECIMALS)
                for key, v in zip(("x1", "y1", "x2", "y2"), (x1, y1, x2, y2), strict=True)
            },
            "hit": bool(math.isfinite(score)),
            "score": _num(score, _SCORE_DECIMALS),
            "hit_at_operating_point": bool(score >= thresholds[int(cls)]),
        }
        for (x1, y1, x2, y2, cls), score in zip(record.boxes.tolist(), outcome.box_scores.tolist(), strict=True)
    ]
    return {
        "image": record.image,
        "image_label": {name: int(v) for name, v in zip(class_names, record.image_label, strict=True)},
        "image_score": {
            name: round(float(v), _SCORE_DECIMALS) for name, v in zip(class_names, record.image_score, strict=True)
        },
        "detections": detections,
        "boxes": boxes,
    }


# ----------------------------------------------------------------------------------------------------------------
# overlay crops
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class _OverlayItem:
    """One gallery entry: a false positive (``point``) or a missed box (``box``) of one image and class."""

    kind: str  # "fp" | "missed"
    record_index: int
    class_index: int
    score: float  # FP score, or the max score inside the missed box (-inf: none)
    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    file: str | None = None  # path relative to the report folder once written
    error: str | None = None  # why no crop could be made


def _top_false_positives(
    records: Sequence[ImageRecord], outcomes: Sequence[_ImageOutcomes], limit: int
) -> list[_OverlayItem]:
    """The ``limit`` highest-scoring FP detections over all images and classes (ties: image then row order)."""
    candidates = [
        (-score, i, k, _OverlayItem("fp", i, int(cls), score, point=(x, y)))
        for i, (record, outcome) in enumerate(zip(records, outcomes, strict=True))
        for k, ((x, y, score, cls), result) in enumerate(zip(record.detections.tolist(), outcome.outcomes, strict=True))
        if result == FP and record.boxed  # an image without boxes has no known false positives
    ]
    return [item for *_, item in sorted(candidates, key=lambda c: c[:3])[:limit]]


def _missed_boxes(
    records: Sequence[ImageRecord], outcomes: Sequence[_ImageOutcomes], thresholds: Sequence[float], limit: int
) -> list[_OverlayItem]:
    """Up to ``limit`` boxes whose max score inside is below their class's operating threshold, lowest first."""
    candidates = [
        (score, i, m, _OverlayItem("missed", i, int(box[4]), score, box=tuple(box[:4])))
        for i, (record, outcome) in enumerate(zip(records, outcomes, strict=True))
        for m, (box, score) in enumerate(zip(record.boxes.tolist(), outcome.box_scores.tolist(), strict=True))
        if score < thresholds[int(box[4])]
    ]
    return [item for *_, item in sorted(candidates, key=lambda c: c[:3])[:limit]]


def _window_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a ``(W, H)`` image to ``uint8`` between its 0.5 and 99.5 percentiles."""
    low, high = np.percentile(image, (0.5, 99.5))
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    return np.round(np.clip((image - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def _crop_window(item: _OverlayItem, width: int, height: int) -> tuple[int, int, int]:
    """Square crop ``(x0, y0, side)`` in file pixels around the item, shifted (not cut) to stay in the image."""
    if item.box is not None:
        x1, y1, x2, y2 = item.box
        centre = ((x1 + x2) / 2, (y1 + y2) / 2)
        side = max(_CROP_MIN_PX, _CROP_BOX_FACTOR * max(x2 - x1, y2 - y1))
    else:
        centre = item.point
        side = max(_CROP_MIN_PX, _CROP_POINT_FRACTION * min(width, height))
    side = int(min(round(side), width, height))
    x0 = int(np.clip(round(centre[0] - side / 2), 0, width - side))
    y0 = int(np.clip(round(centre[1] - side / 2), 0, height - side))
    return x0, y0, side


def _draw_circle(draw: ImageDraw.ImageDraw, x: float, y: float, radius: float, colour: tuple, width: int) -> None:
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=colour, width=width)


def _render_crop(
    grey: np.ndarray, record: ImageRecord, item: _OverlayItem, class_names: Sequence[str], size: int = _CROP_OUTPUT_PX
) -> Image.Image:
    """Overlay crop of one gallery item.

    Args:
        grey: the windowed image, ``uint8`` of shape ``(W, H)`` (axis 0 = x, as :func:`scripts.loading.load_cxr`).
        record: the item's image record (all its boxes and the item class's detections are drawn).
        item: the false positive or missed box to centre on.
        class_names: names for the caption strip.
        size: side of the output, pixels.

    Returns:
        RGB image ``size x size`` (rows = y): ground-truth boxes green, detections of the item's class as circles
        in the class colour (the item's own point larger), and a caption strip.
    """
    x0, y0, side = _crop_window(item, grey.shape[0], grey.shape[1])
    crop = np.ascontiguousarray(grey[x0 : x0 + side, y0 : y0 + side].T)  # (W, H) -> rows = y for PIL
    canvas = Image.fromarray(crop, mode="L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    scale = size / side

    def to_canvas(x: float, y: float) -> tuple[float, float]:  # continuous file pixels -> canvas pixels
        return (x - x0) * scale, (y - y0) * scale

    for x1, y1, x2, y2, _ in record.boxes.tolist():
        width = 3 if item.box == (x1, y1, x2, y2) else 1  # the missed box stands out
        draw.rectangle([*to_canvas(x1, y1), *to_canvas(x2, y2)], outline=_BOX_COLOUR, width=width)
    colour = CLASS_COLOURS[item.class_index % len(CLASS_COLOURS)]
    for x, y, _ in record.class_detections(item.class_index).tolist():
        _draw_circle(draw, *to_canvas(x, y), 4, colour, 1)
    if item.point is not None:
        _draw_circle(draw, *to_canvas(*item.point), 9, colour, 3)
    score = f"{item.score:.2f}" if math.isfinite(item.score) else "none"
    caption = f"{'FP' if item.kind == 'fp' else 'missed'} {class_names[item.class_index]} {score}"
    font = ImageFont.load_default(size=13)
    draw.rectangle(draw.textbbox((3, 3), caption, font=font), fill=(0, 0, 0))
    draw.text((3, 3), caption, fill=colour, font=font)
    return canvas


def _safe_name(text: str, max_len: int = 60) -> str:
    """File-name-safe version of ``text`` (letters, digits, ``._-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:max_len] or "x"


def _image_stem(path: str) -> str:
    """File name of ``path`` without its image suffix (``.nii.gz`` included)."""
    name = Path(path).name
    return re.sub(r"(\.nii\.gz|\.[A-Za-z0-9]+)$", "", name) or name


def _write_overlays(
    overlay_dir: Path, records: Sequence[ImageRecord], items: Sequence[_OverlayItem], class_names: Sequence[str]
) -> None:
    """Render the items' crops into ``overlay_dir``, loading each image once; a failed load sets ``item.error``."""
    overlay_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*overlay_dir.glob("fp_*.png"), *overlay_dir.glob("missed_*.png")]:
        stale.unlink()  # crops of an earlier run would otherwise sit beside this run's gallery
    numbers = {"fp": 0, "missed": 0}
    names = {}  # gallery order: fp_00, fp_01, ..., missed_00, ...
    for item in items:
        names[id(item)] = f"{item.kind}_{numbers[item.kind]:02d}"
        numbers[item.kind] += 1
    for index in sorted({item.record_index for item in items}):
        record = records[index]
        group = [item for item in items if item.record_index == index]
        try:
            grey = _window_uint8(load_cxr(record.image)[0].numpy())
        except Exception as error:  # any unreadable file: the report goes on without this image's crops
            logger.warning("report: no overlay for %s: %s", record.image, error)
            for item in group:
                item.error = str(error)
            continue
        for item in group:
            file_name = f"{names[id(item)]}_{_safe_name(_image_stem(record.image))}.png"
            _render_crop(grey, record, item, class_names).save(overlay_dir / file_name)
            item.file = f"{overlay_dir.name}/{file_name}"


# ----------------------------------------------------------------------------------------------------------------
# report.html
# ----------------------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
tr.mean td { font-weight: bold; background: #fafafa; }
.note { color: #555; font-size: 0.9em; }
.plots img { max-width: 48%; border: 1px solid #ddd; margin-right: 1%; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.gallery figure { margin: 0; width: 256px; font-size: 0.85em; }
.gallery img { display: block; width: 256px; height: 256px; border: 1px solid #ccc; }
.gallery .missing { width: 256px; height: 256px; background: #eee; color: #a00; display: flex;
                    align-items: center; justify-content: center; text-align: center; }
figcaption { word-break: break-all; }
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], last_row_class: str = "") -> str:
    """An HTML table with escaped cells; the last row gets ``last_row_class``."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for n, row in enumerate(rows):
        attr = f' class="{last_row_class}"' if last_row_class and n == len(rows) - 1 else ""
        body.append(f"<tr{attr}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _operating_table(metrics: dict[str, Any]) -> str:
    """Operating threshold, FP rate and sensitivity per class."""
    rows = []
    for name, m in metrics["classes"].items():
        threshold = m["operating_threshold"]
        rows.append(
            [
                name,
                "none kept" if threshold is None else f"{threshold:.4f}",
                _cell(m["operating_fps_per_image"]),
                _cell(m["operating_sensitivity"]),
            ]
        )
    return _html_table(["Class", "Score threshold", "FP per image", "Sensitivity"], rows)


def _gallery(items: Sequence[_OverlayItem], records: Sequence[ImageRecord], class_names: Sequence[str]) -> str:
    """A flex gallery of overlay crops with escaped captions (image name, class, score)."""
    if not items:
        return '<p class="note">None.</p>'
    figures = []
    for item in items:
        name = Path(records[item.record_index].image).name
        score = f"{item.score:.3f}" if math.isfinite(item.score) else "none"
        score_label = "score" if item.kind == "fp" else "max score inside"
        caption = f"{html.escape(name)}<br>{html.escape(class_names[item.class_index])} &middot; {score_label} {score}"
        if item.file is not None:
            picture = f'<img src="{html.escape(quote(item.file))}" alt="{html.escape(name)}" width="256" height="256">'
        else:
            picture = f'<div class="missing">image could not be loaded:<br>{html.escape(item.error or "")}</div>'
        figures.append(f"<figure>{picture}<figcaption>{caption}</figcaption></figure>")
    return '<div class="gallery">\n' + "\n".join(figures) + "\n</div>"


def _render_html(
    metrics: dict[str, Any],
    model_name: str,
    false_positives: Sequence[_OverlayItem],
    missed: Sequence[_OverlayItem],
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
) -> str:
    """The whole ``report.html`` (self-contained: inline CSS, images by relative path, no script)."""
    header, rows = _table(metrics)
    paper = ", ".join(_rate_key(r) for r in metrics["fp_rates"]["paper"])
    camelyon = ", ".join(_rate_key(r) for r in metrics["fp_rates"]["camelyon"])
    budget = _rate_key(metrics["operating_fp_rate"])
    failed = sorted({records[i.record_index].image for i in (*false_positives, *missed) if i.error is not None})
    failed_html = ""
    if failed:
        listing = "".join(f"<li>{html.escape(path)}</li>" for path in failed)
        failed_html = f"<h2>Images without overlays</h2>\n<p>These files could not be loaded:</p><ul>{listing}</ul>"
    model = html.escape(model_name)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Fracture detection evaluation - {model}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>Fracture detection evaluation</h1>
<p>Model: <strong>{model}</strong> &middot; images: <strong>{metrics["num_images"]}</strong>
&middot; classes: {html.escape(", ".join(class_names))}</p>
<h2>Metrics</h2>
{_html_table(header, rows, "mean")}
<p class="note">AUROC: image level, from the image score (heatmap maximum); undefined (-) when a class has only
positive or only negative images. FROC: mean sensitivity (fraction of boxes with a detection of their class inside)
at {paper} (paper rates) and at {camelyon} (CAMELYON rates) false positives per image, over all images.
The mean row averages the classes where the value is defined.</p>
<h2>Curves</h2>
<div class="plots"><img src="froc.png" alt="FROC curves"><img src="roc.png" alt="ROC curves"></div>
<h2>Operating point</h2>
<p>Per class, the lowest score threshold with at most {budget} false positives per image.</p>
{_operating_table(metrics)}
<h2>Top false positives</h2>
<p class="note">Highest-scoring detections inside no box of their class (green: ground-truth boxes).</p>
{_gallery(false_positives, records, class_names)}
<h2>Missed fractures</h2>
<p class="note">Boxes whose best detection of their class scores below the operating threshold.</p>
{_gallery(missed, records, class_names)}
{failed_html}
</body>
</html>
"""


# ----------------------------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any) -> None:
    """Write indented JSON; NaN/inf must already be ``None``."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_evaluation_report(
    output_dir: str | Path,
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    paper_rates: Sequence[float] = PAPER_FP_RATES,
    camelyon_rates: Sequence[float] = CAMELYON_FP_RATES,
    model_name: str = "model",
    num_overlays: int = 8,
    operating_fp_rate: float = OPERATING_FP_RATE,
) -> dict[str, Any]:
    """Write the evaluation report of a test set into ``output_dir`` (created).

    Files: ``metrics.json`` (:func:`compute_metrics` plus ``"model"``), ``froc_curve_<class>.csv``
    (threshold, fps_per_image, sensitivity) and ``roc_curve_<class>.csv`` (threshold, fpr, tpr), both starting at
    the origin (threshold ``inf``); ``froc.png`` and ``roc.png``; ``detections.json`` (every detection with its
    outcome, every box with its max score inside); ``overlays/fp_NN_<image>.png`` (the ``num_overlays``
    highest-scoring false positives) and ``overlays/missed_NN_<image>.png`` (up to ``num_overlays`` boxes missed
    at the operating threshold); ``report.html`` linking all of them. An image that cannot be loaded gets no
    crop; the report lists it instead.

    Args:
        output_dir: report folder.
        records: one :class:`ImageRecord` per test image.
        class_names: ``C`` class names in class-index order.
        paper_rates: FP rates (per image) of the paper FROC score.
        camelyon_rates: FP rates (per image) of the CAMELYON FROC score.
        model_name: shown in the report and stored as ``metrics["model"]``.
        num_overlays: number of false-positive crops and maximum number of missed-box crops.
        operating_fp_rate: FP budget (per image) of the operating threshold.

    Returns:
        The metrics dict written to ``metrics.json``.
    """
    if num_overlays < 0:
        raise ValueError(f"num_overlays must be >= 0, got {num_overlays}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    class_names = list(class_names)
    evaluations = _evaluate(records, class_names, paper_rates, camelyon_rates, operating_fp_rate)
    metrics = {"model": model_name, **_metrics_dict(evaluations, paper_rates, camelyon_rates, operating_fp_rate)}
    _write_json(output_dir / "metrics.json", metrics)
    _write_curves(output_dir, evaluations)
    _plot_froc(output_dir / "froc.png", evaluations, paper_rates, model_name)
    _plot_roc(output_dir / "roc.png", evaluations, model_name)

    thresholds = [ev.operating_threshold for ev in evaluations]
    outcomes = [_image_outcomes(record, len(class_names)) for record in records]
    _write_json(
        output_dir / "detections.json",
        {
            "classes": class_names,
            "operating_threshold": {ev.name: _num(ev.operating_threshold, _SCORE_DECIMALS) for ev in evaluations},
            "images": [_image_entry(r, o, class_names, thresholds) for r, o in zip(records, outcomes, strict=True)],
        },
    )
    false_positives = _top_false_positives(records, outcomes, num_overlays)
    missed = _missed_boxes(records, outcomes, thresholds, num_overlays)
    _write_overlays(output_dir / "overlays", records, [*false_positives, *missed], class_names)
    html_text = _render_html(metrics, model_name, false_positives, missed, records, class_names)
    (output_dir / "report.html").write_text(html_text, encoding="utf-8")
    return metrics
