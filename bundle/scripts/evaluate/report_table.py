"""The metrics table of the test report (one row per class, then the mean), as text and as cells for HTML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scripts.evaluate.report_metrics import rate_key

__all__ = ["format_metrics_table"]


def cell(value: float | None) -> str:
    """Table cell of a metric: three decimals, or ``-`` when undefined."""
    return "-" if value is None else f"{value:.3f}"


def metrics_table_rows(metrics: dict[str, Any], compact: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows (classes then mean) of the metrics table, as strings; ``compact``: short headers."""
    rates = metrics["fp_rates"]["paper"]
    if compact:
        header = ["Class", "AUROC", "FROC paper", "FROC CAMELYON", *(f"Sens@{rate_key(r)}" for r in rates)]
    else:
        header = ["Class", "AUROC", "FROC (paper rates)", "FROC (CAMELYON rates)"]
        header += [f"Sensitivity @ {rate_key(r)} FP/image" for r in rates]
    header += ["#images", "#positive", "#boxes"]
    rows = []
    for name, m in metrics["classes"].items():
        sens = [cell(m["sensitivity_at"][rate_key(r)]) for r in rates]
        counts = [str(m["num_images"]), str(m["num_positive_images"]), str(m["num_boxes"])]
        rows.append([name, cell(m["auroc"]), cell(m["froc_paper"]), cell(m["froc_camelyon"]), *sens, *counts])
    mean = metrics["mean"]
    sens = [cell(mean["sensitivity_at"][rate_key(r)]) for r in rates]
    total_boxes = str(sum(m["num_boxes"] for m in metrics["classes"].values()))
    counts = [str(metrics["num_images"]), "-", total_boxes]
    rows.append(["mean", cell(mean["auroc"]), cell(mean["froc_paper"]), cell(mean["froc_camelyon"]), *sens, *counts])
    return header, rows


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """Render the metrics of :func:`compute_metrics` as a fixed-width text table (one row per class, then mean).

    Columns: AUROC, FROC at the paper and CAMELYON rates, sensitivity at each paper rate (FP per image), numbers
    of images, positive images and boxes. Undefined values (NaN) show as ``-``.
    """
    header, rows = metrics_table_rows(metrics, compact=True)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in rows[:-1]), rule, line(rows[-1])])
