"""Evaluation report of a test set: ``metrics.json``, curves, ``detections.json``, overlay crops and ``report.html``.

The evaluation workflow gathers one :class:`scripts.evaluate.report_metrics.ImageRecord` per test image and calls
:func:`write_evaluation_report` once at the end (:func:`scripts.evaluate.report_metrics.compute_metrics` gives the
numbers only). The parts: :mod:`scripts.evaluate.report_metrics` (records, outcomes, metrics),
:mod:`scripts.evaluate.report_table` (metrics table), :mod:`scripts.evaluate.report_curves` (CSV curves and plots),
:mod:`scripts.evaluate.report_crops` (overlay crops) and :mod:`scripts.evaluate.report_html` (the HTML page).

Coordinates are file pixels, continuous (pixel ``k`` spans ``[k, k + 1)``), ``x`` = column, ``y`` = row. All
outputs are deterministic (no timestamps), so two runs on the same records give identical files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scripts.evaluate.operating_point import evaluate_at_operating_point
from scripts.evaluate.report_crops import missed_boxes, top_false_positives, write_overlays
from scripts.evaluate.report_curves import plot_froc, plot_reliability, plot_roc, write_curves
from scripts.evaluate.report_html import render_html
from scripts.evaluate.report_metrics import (
    CAMELYON_FP_RATES,
    OPERATING_FP_RATE,
    PAPER_FP_RATES,
    SCORE_DECIMALS,
    ImageOutcomes,
    ImageRecord,
    evaluate_classes,
    image_outcomes,
    json_number,
    metrics_dict,
)

__all__ = ["write_evaluation_report"]

_COORD_DECIMALS = 2  # pixel coordinates in detections.json


def _image_entry(
    record: ImageRecord, outcome: ImageOutcomes, class_names: Sequence[str], thresholds: Sequence[float]
) -> dict[str, Any]:
    """The ``detections.json`` entry of one image (``thresholds``: operating threshold per class)."""
    detections = [
        {
            "class": class_names[int(cls)],
            "x": round(x, _COORD_DECIMALS),
            "y": round(y, _COORD_DECIMALS),
            "score": round(score, SCORE_DECIMALS),
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
            "score": json_number(score, SCORE_DECIMALS),
            "hit_at_operating_point": bool(score >= thresholds[int(cls)]),
        }
        for (x1, y1, x2, y2, cls), score in zip(record.boxes.tolist(), outcome.box_scores.tolist(), strict=True)
    ]
    return {
        "image": record.image,
        "image_label": {name: int(v) for name, v in zip(class_names, record.image_label, strict=True)},
        "image_score": {
            name: round(float(v), SCORE_DECIMALS) for name, v in zip(class_names, record.image_score, strict=True)
        },
        "detections": detections,
        "boxes": boxes,
    }


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
    shipped_operating_point: Mapping[str, Mapping[str, float | None]] | None = None,
) -> dict[str, Any]:
    """Write the evaluation report of a test set into ``output_dir`` (created).

    Files: ``metrics.json`` (:func:`compute_metrics` plus ``"model"``), ``froc_curve_<class>.csv``
    (threshold, fps_per_image, sensitivity) and ``roc_curve_<class>.csv`` (threshold, fpr, tpr), both starting at
    the origin (threshold ``inf``); ``froc.png``, ``roc.png`` and ``reliability.png`` (reliability diagram of
    the image scores; their expected calibration error is in ``metrics.json``); ``detections.json`` (every
    detection with its outcome, every box with its max score inside); ``overlays/fp_NN_<image>.png`` (the
    ``num_overlays`` highest-scoring false positives) and ``overlays/missed_NN_<image>.png`` (up to
    ``num_overlays`` boxes missed at the operating threshold); ``report.html`` linking all of them. An image that
    cannot be loaded gets no crop; the report lists it instead.

    Args:
        output_dir: report folder.
        records: one :class:`ImageRecord` per test image.
        class_names: ``C`` class names in class-index order.
        paper_rates: FP rates (per image) of the paper FROC score.
        camelyon_rates: FP rates (per image) of the CAMELYON FROC score.
        model_name: shown in the report and stored as ``metrics["model"]``.
        num_overlays: number of false-positive crops and maximum number of missed-box crops.
        operating_fp_rate: FP budget (per image) of the operating threshold.
        shipped_operating_point: the thresholds shipped with the model, chosen on validation
            (:func:`scripts.evaluate.operating_point.load_operating_point`); their results on this split
            (:func:`scripts.evaluate.operating_point.evaluate_at_operating_point`) go to
            ``metrics["shipped_operating_point"]`` and ``report.html``. This split never chooses them.

    Returns:
        The metrics dict written to ``metrics.json``.
    """
    if num_overlays < 0:
        raise ValueError(f"num_overlays must be >= 0, got {num_overlays}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    class_names = list(class_names)
    evaluations = evaluate_classes(records, class_names, paper_rates, camelyon_rates, operating_fp_rate)
    metrics = {"model": model_name, **metrics_dict(evaluations, paper_rates, camelyon_rates, operating_fp_rate)}
    if shipped_operating_point is not None:
        metrics["shipped_operating_point"] = evaluate_at_operating_point(records, class_names, shipped_operating_point)
    _write_json(output_dir / "metrics.json", metrics)
    write_curves(output_dir, evaluations)
    plot_froc(output_dir / "froc.png", evaluations, paper_rates, model_name)
    plot_roc(output_dir / "roc.png", evaluations, model_name)
    plot_reliability(output_dir / "reliability.png", evaluations, model_name)

    thresholds = [ev.operating_threshold for ev in evaluations]
    outcomes = [image_outcomes(record, len(class_names)) for record in records]
    _write_json(
        output_dir / "detections.json",
        {
            "classes": class_names,
            "operating_threshold": {ev.name: json_number(ev.operating_threshold, SCORE_DECIMALS) for ev in evaluations},
            "images": [_image_entry(r, o, class_names, thresholds) for r, o in zip(records, outcomes, strict=True)],
        },
    )
    false_positives = top_false_positives(records, outcomes, num_overlays)
    missed = missed_boxes(records, outcomes, thresholds, num_overlays)
    write_overlays(output_dir / "overlays", records, [*false_positives, *missed], class_names)
    html_text = render_html(metrics, model_name, false_positives, missed, records, class_names)
    (output_dir / "report.html").write_text(html_text, encoding="utf-8")
    return metrics
