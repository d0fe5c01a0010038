"""Is stage 2 worth running on this stage 1? A hint from the method benchmark's measured payoff threshold.

Reads a calibrated stage 1's record (``model_calibrated_calibration.json``, written by ``configs/calibrate.json``:
per class the validation AUROC) and the method benchmark's record (``bundle/docs/ablation_v2.json``: its
``payoff`` entry, protocol v2's question 2), and prints where this stage 1 stands::

    python scripts/stage2_advice.py demo/models/stage1/model_calibrated_calibration.json

The benchmark measured phantoms, not patients: the hint says what the benchmark found, not what will happen on a
hospital's data. Exit status 0 in every case (it is advice, not a gate).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCHMARK = REPO / "bundle" / "docs" / "ablation_v2.json"

__all__ = ["advice", "main"]


def advice(stage1_val_rib_auroc: float, benchmark: dict[str, Any]) -> str:
    """One paragraph comparing this stage 1's validation rib AUROC with the benchmark's payoff threshold."""
    result = benchmark["payoff"]
    levels = ", ".join(
        f"{row['level']} {row['teacher_val_rib_auroc']:.2f}: {row['verdict']}" for row in result["levels"]
    )
    here = f"This stage 1's validation rib AUROC is {stage1_val_rib_auroc:.3f}."
    threshold = result.get("threshold_val_rib_auroc")
    caveat = (
        " Some of these levels rest on a single training seed, so their verdicts are indicative, not settled."
        if result.get("indicative")
        else ""
    )
    return _advice(here, threshold, levels, stage1_val_rib_auroc) + caveat


def _advice(here: str, threshold: float | None, levels: str, stage1_val_rib_auroc: float) -> str:
    if threshold is None:
        return (
            f"{here} In the method benchmark (phantoms, bundle/docs/ablation_v2.json) stage 2 with AALS did not beat "
            f"the same extra training without image-level positives at any teacher level measured (teacher "
            f"validation rib AUROC and AALS - control: {levels}). Running stage 2 here is an experiment, not an "
            "expected gain: compare it with a control run (configs/distill.json with train#datalist#subsets "
            "['R','N']), and boxing more images (R) is the surer way to a better model."
        )
    if stage1_val_rib_auroc < threshold:
        return (
            f"{here} In the method benchmark (phantoms) stage 2 with AALS beat the same training without image-level "
            f"positives only from a teacher validation rib AUROC of about {threshold:.2f} upward ({levels}). Below "
            "it, box more images (R) or train stage 1 longer before running stage 2."
        )
    return (
        f"{here} In the method benchmark (phantoms) stage 2 with AALS beat the same training without image-level "
        f"positives from a teacher validation rib AUROC of about {threshold:.2f} upward ({levels}): this stage 1 is "
        "in that range."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("calibration", type=Path, help="model_calibrated_calibration.json of a calibrated stage 1")
    parser.add_argument("--benchmark", type=Path, default=BENCHMARK, help="method benchmark record (ablation_v2.json)")
    args = parser.parse_args(argv)
    try:
        record = json.loads(args.calibration.read_text())
        value = float(record["classes"]["rib"]["validation_auroc"])
    except (OSError, KeyError, ValueError) as error:
        print(f"[stage2_advice] no validation rib AUROC in {args.calibration} ({error}); no advice")
        return 0
    if not args.benchmark.is_file() or math.isnan(value):
        print(f"[stage2_advice] {args.benchmark} is missing or the rib AUROC is undefined; no advice")
        return 0
    print(advice(value, json.loads(args.benchmark.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
