"""Curves of the test report: per-class FROC and ROC curves as CSV files and as PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scripts.evaluate.class_metrics import reliability
from scripts.evaluate.overlays import CLASS_COLOURS
from scripts.evaluate.report_crops import safe_name
from scripts.evaluate.report_metrics import ClassEvaluation

_PLOT_FP_RANGE = (0.05, 8.0)  # x range of the FROC plot, FP per image (log scale)


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


def write_curves(output_dir: Path, evaluations: Sequence[ClassEvaluation]) -> None:
    """``froc_curve_<class>.csv`` and ``roc_curve_<class>.csv``, rows from the origin (threshold ``inf``) outwards."""
    for ev in evaluations:
        fps, sens, froc_thr = ev.froc.fps_per_image, ev.froc.sensitivity, ev.froc.thresholds
        _write_csv(
            output_dir / f"froc_curve_{safe_name(ev.name)}.csv",
            ("threshold", "fps_per_image", "sensitivity"),
            (froc_thr[::-1], fps[::-1], sens[::-1]),
        )
        fpr, tpr, roc_thr = ev.roc
        _write_csv(output_dir / f"roc_curve_{safe_name(ev.name)}.csv", ("threshold", "fpr", "tpr"), (roc_thr, fpr, tpr))


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


def plot_froc(path: Path, evaluations: Sequence[ClassEvaluation], paper_rates: Sequence[float], model: str) -> None:
    """FROC per class on a log FP axis: the interpolation the FROC score uses, dots at the paper rates."""
    from matplotlib.ticker import FixedLocator, NullLocator

    figure, axes = _new_axes(f"FROC - {model}")
    grid = np.geomspace(*_PLOT_FP_RANGE, 256)
    for c, ev in enumerate(evaluations):
        if ev.num_boxes == 0:
            axes.plot([], [], color=_plot_colour(c), label=f"{ev.name} (no boxes)")
            continue
        label = f"{ev.name} (FROC {ev.froc_paper:.3f}, {ev.num_boxes} box{'es' if ev.num_boxes != 1 else ''})"
        axes.plot(grid, ev.froc.sensitivity_at(grid), color=_plot_colour(c), lw=2, label=label)
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


def plot_roc(path: Path, evaluations: Sequence[ClassEvaluation], model: str) -> None:
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


def plot_reliability(path: Path, evaluations: Sequence[ClassEvaluation], model: str) -> None:
    """Reliability diagram of the image scores: positive rate against mean score per 0.1-wide bin, per class."""
    figure, axes = _new_axes(f"Reliability of image scores - {model}")
    axes.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="calibrated")
    for c, ev in enumerate(evaluations):
        stats = reliability(ev.scores, ev.labels)
        filled = [b for b in stats["bins"] if b["count"]]
        axes.plot(
            [b["mean_score"] for b in filled],
            [b["positive_rate"] for b in filled],
            "o-",
            color=_plot_colour(c),
            label=f"{ev.name} (ECE {stats['ece']:.3f})",
        )
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_aspect("equal")
    axes.set_xlabel("Mean image score in bin")
    axes.set_ylabel("Fraction of positive images in bin")
    axes.legend(loc="upper left")
    figure.savefig(path)
