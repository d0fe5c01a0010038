"""Print a side-by-side table of several evaluation runs (folders holding ``metrics.json``).

Example::

    python scripts/summarize_evaluations.py demo/eval/stage1_model demo/eval/distill_model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def summarize(folders: list[Path]) -> str:
    """Return a fixed-width table: one row per run, AUROC and FROC (paper rates) per class and mean, and the
    expected calibration error (ECE) of the image scores per class."""
    runs = []
    for folder in folders:
        path = folder / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no metrics.json (did the evaluation run?)")
        runs.append((folder.name, json.loads(path.read_text())))
    classes = list(runs[0][1]["classes"])
    header = f"{'model':<26}" + "".join(f"{c + ' AUROC':>16}{c + ' FROC':>15}" for c in classes)
    header += f"{'mean AUROC':>12}{'mean FROC':>11}" + "".join(f"{c + ' ECE':>14}" for c in classes)
    lines = [header, "-" * len(header)]
    for name, metrics in runs:
        row = f"{name:<26}"
        for c in classes:
            row += f"{_fmt(metrics['classes'][c]['auroc']):>16}{_fmt(metrics['classes'][c]['froc_paper']):>15}"
        row += f"{_fmt(metrics['mean']['auroc']):>12}{_fmt(metrics['mean']['froc_paper']):>11}"
        row += "".join(f"{_fmt(metrics['classes'][c].get('expected_calibration_error')):>14}" for c in classes)
        lines.append(row)
    lines.append("FROC = mean sensitivity at 0.1, 0.2, 0.3, 0.4 false positives per image (test split).")
    lines.append("ECE = expected calibration error of the image scores (10 bins; 0 = calibrated).")
    shipped = [(folder.name, folder / "operating_point.json") for folder in folders]
    shipped = [(name, json.loads(path.read_text())) for name, path in shipped if path.is_file()]
    if shipped:
        lines += ["", "Operating point shipped with each model (chosen on validation), measured on the test split:"]
        header = f"{'model':<26}{'class':<10}{'threshold':>10}{'sensitivity':>12}{'FP/image':>10}"
        header += f"{'val. sens.':>11}{'val. FP/img':>12}"
        lines += [header, "-" * len(header)]
        for name, results in shipped:
            for c, r in results.items():
                threshold = "none" if r["threshold"] is None else f"{r['threshold']:.4f}"
                lines.append(
                    f"{name:<26}{c:<10}{threshold:>10}{_fmt(r['sensitivity']):>12}{_fmt(r['fp_per_image']):>10}"
                    f"{_fmt(r['validation_sensitivity']):>11}{_fmt(r['validation_fp_per_image']):>12}"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="evaluation output folders")
    args = parser.parse_args(argv)
    try:
        print(summarize(args.folders))
    except (FileNotFoundError, KeyError, json.JSONDecodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
