"""``report.html`` of the test report: metrics and operating-point tables, curves, galleries of overlay crops
(self-contained: inline CSS, images by relative path, no script)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from scripts.evaluate.report_crops import OverlayItem
from scripts.evaluate.report_metrics import ImageRecord, rate_key
from scripts.evaluate.report_table import cell, metrics_table_rows

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
                cell(m["operating_fps_per_image"]),
                cell(m["operating_sensitivity"]),
            ]
        )
    return _html_table(["Class", "Score threshold", "FP per image", "Sensitivity"], rows)


def _shipped_table(metrics: dict[str, Any]) -> str:
    """Results on this split of the thresholds shipped with the model (chosen on validation), if given."""
    shipped = metrics.get("shipped_operating_point")
    if not shipped:
        return ""
    rows = []
    for name, r in shipped.items():
        threshold = "none" if r["threshold"] is None else f"{r['threshold']:.4f}"
        values = [r[k] for k in ("sensitivity", "fp_per_image", "image_sensitivity", "image_specificity")]
        values += [r["validation_sensitivity"], r["validation_fp_per_image"]]
        rows.append([name, threshold, *(cell(v) for v in values)])
    header = ["Class", "Threshold", "Sensitivity", "FP per image", "Image sensitivity", "Image specificity"]
    header += ["Validation sensitivity", "Validation FP per image"]
    return (
        "<h2>Shipped operating point</h2>\n<p>Thresholds chosen on the validation split and shipped with the model, "
        "measured here; this split did not choose them. Image sensitivity/specificity: the image call (a finding of "
        "the class anywhere in the image).</p>\n" + _html_table(header, rows)
    )


def _gallery(items: Sequence[OverlayItem], records: Sequence[ImageRecord], class_names: Sequence[str]) -> str:
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


def render_html(
    metrics: dict[str, Any],
    model_name: str,
    false_positives: Sequence[OverlayItem],
    missed: Sequence[OverlayItem],
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
) -> str:
    """The whole ``report.html`` (self-contained: inline CSS, images by relative path, no script)."""
    header, rows = metrics_table_rows(metrics)
    paper = ", ".join(rate_key(r) for r in metrics["fp_rates"]["paper"])
    camelyon = ", ".join(rate_key(r) for r in metrics["fp_rates"]["camelyon"])
    budget = rate_key(metrics["operating_fp_rate"])
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
<div class="plots"><img src="froc.png" alt="FROC curves"><img src="roc.png" alt="ROC curves">
<img src="reliability.png" alt="Reliability diagram"></div>
{_shipped_table(metrics)}
<h2>Operating point of this split</h2>
<p>Per class, the lowest score threshold with at most {budget} false positives per image on this split
(descriptive: it is read off this split's own curve).</p>
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
