"""Class-agnostic positives on the phantom benchmark pool: what do image-level positives without a class add?

CheXpert and MIMIC-CXR label ``Fracture`` without saying rib or clavicle. The bundle leaves such positives out by
default and can use them as training subset ``A`` (``scripts/build_datalist.py --agnostic include``), whose stage-2
target follows the ``top_class`` rule of ``bundle/scripts/distill/aals.py``. This script measures that choice in the
method benchmark's setting (``bundle/docs/ablation_protocol.md``: the same pool, R/P/N derivation, network, stage 1,
calibration and stage 2, with the a0 and EMA decay the benchmark chose on validation), on one training seed, with
three stage-2 arms from one calibrated stage 1:

* ``control``: R + N only: what the default (leaving class-agnostic positives out) amounts to;
* ``class_specific``: R + N + P with P's class labels (the benchmark's AALS arm);
* ``agnostic``: the same P images as subset ``A``, their classes hidden (rib and clavicle both candidates),
  targets by the ``top_class`` rule (AALS on the class with the higher teacher maximum, the teacher's map as it
  is on the other).

It also measures how often the rule's choice at the start of stage 2 (the candidate class with the higher
calibrated stage-1 map maximum) is a true class of the P image, against always choosing rib (the pool's majority
class). Writes ``bundle/docs/agnostic_positives.json``; every test metric is from the bundle's own evaluation
command, and paired bootstrap intervals over test images come from ``scripts/ablation_stats.py``.

Example (about 20 CPU-minutes on 2 cores, phantom generation included)::

    .venv/bin/python scripts/benchmark_agnostic.py --work-dir runs/agnostic
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ablation_stats import auroc, bootstrap_indices, froc, paired_interval, read_outcomes
from benchmark_ablation import (
    CLASSES,
    METRICS,
    SETTINGS,
    arm_overrides,
    bare_step_samples_per_s,
    best_validation,
    evaluate,
    prepare_data,
    stage1,
    teacher_maxima_quartiles,
)
from bundle_command import run_bundle

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "bundle" / "docs" / "agnostic_positives.json"
SEED = 0
#: The method benchmark's choices on validation (bundle/docs/ablation.json, "tuning"): not re-tuned here.
A0, EMA_DECAY = 4.0, 0.99
ARMS = ("control", "class_specific", "agnostic")
COMPARISONS = [("agnostic", "control"), ("class_specific", "control"), ("agnostic", "class_specific")]


STARTED = time.time()


def log(message: str) -> None:
    print(f"[agnostic {(time.time() - STARTED) / 60:6.1f} min] {message}", flush=True)


def agnostic_datalist(semi: dict[str, Any]) -> dict[str, Any]:
    """``semi`` with every P entry turned into subset A: both classes candidates, the true labels kept aside."""
    result = copy.deepcopy(semi)
    for entry in result["training"]:
        if entry["subset"] == "P":
            entry["hidden_labels"] = entry["labels"]
            entry["subset"], entry["labels"] = "A", dict.fromkeys(CLASSES, 1)
    return result


def run_arm(data: Path, root: Path, arm: str, start: Path) -> dict[str, Any]:
    """Train one stage-2 arm, keep student or teacher by validation, evaluate on test; cached in result.json."""
    out = root / arm
    if (out / "result.json").is_file():
        return json.loads((out / "result.json").read_text())
    overrides = arm_overrides("control" if arm == "control" else "aals", data, SEED, out, start, A0, EMA_DECAY)
    if arm == "agnostic":
        overrides.update({"datalist": data / "agnostic.json", "train#datalist#subsets": ["R", "N", "A"],
                          "train#subset_mix": {"R": 0.25, "N": 0.5, "A": 0.25}})  # fmt: skip
    log(f"stage 2 '{arm}'")
    text = run_bundle("training", ["train.json", "distill.json", "demo.json"], overrides, root / f"{arm}.log")
    student, teacher = best_validation(text, "val_score"), best_validation(text, "teacher_val_score")
    chosen = "teacher" if teacher > student else "student"
    checkpoint = out / ("teacher.pt" if chosen == "teacher" else "model.pt")
    result = {
        "arm": arm, "selected": chosen, "val_score_student": student, "val_score_teacher": teacher,
        "teacher_p_max_quartiles_per_epoch": teacher_maxima_quartiles(text),
        **evaluate(data, checkpoint, root / f"eval_{arm}"), "eval_dir": str(root / f"eval_{arm}"),
    }  # fmt: skip
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    log(f"{arm}: {chosen}; test " + ", ".join(f"{c} {m} {result[f'{c}_{m}']:.3f}" for c in CLASSES for m in METRICS))
    return result


def rule_choice(data: Path, checkpoint: Path, out: Path) -> dict[str, Any]:
    """How often the top_class rule, applied to the calibrated stage-1 maps of the P images, picks a true class."""
    if out.is_file():
        return json.loads(out.read_text())
    code = r"""
import json, sys, numpy as np, torch
from monai.bundle import ConfigParser
sys.path.insert(0, "bundle")
from scripts.distill.aals import load_weights
from scripts.data.datalist import load_datalist
data, ckpt, out = sys.argv[1], sys.argv[2], sys.argv[3]
parser = ConfigParser()
parser.read_config(["bundle/configs/train.json", "bundle/configs/demo.json"])
parser["dataset_dir"] = data
parser["datalist"] = data + "/semi.json"
net = load_weights(parser.get_parsed_content("network_def"), ckpt).eval()
transform = parser.get_parsed_content("validate#preprocessing")
items = load_datalist(data + "/semi.json", "training", subsets=["P"])
maxima = []
for start in range(0, len(items), 32):
    batch = torch.stack([transform(dict(item))["image"] for item in items[start:start + 32]])
    with torch.no_grad():
        maxima.append(torch.sigmoid(net(batch)).amax(dim=(-2, -1)).numpy())
maxima, labels = np.concatenate(maxima), np.stack([item["image_label"] for item in items])
top = maxima.argmax(axis=1)
single = labels.sum(axis=1) == 1
record = {
    "num_p_images": int(len(items)),
    "num_single_class": int(single.sum()),
    "rule_picks_a_true_class": float(labels[np.arange(len(items)), top].mean()),
    "rule_picks_a_true_class_single_class_images": float(labels[np.arange(len(items)), top][single].mean()),
    "always_rib_picks_a_true_class": float(labels[:, 0].mean()),
    "rule_picks_rib": float((top == 0).mean()),
}
json.dump(record, open(out, "w"), indent=2)
"""
    subprocess.run([sys.executable, "-c", code, str(data), str(checkpoint), str(out)], cwd=REPO, check=True)
    return json.loads(out.read_text())


def intervals(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Paired bootstrap intervals over test images (one seed) for every comparison, class and metric."""
    boot = SETTINGS["bootstrap"]
    outcomes = {arm: read_outcomes(Path(runs[arm]["eval_dir"]) / "detections.json", CLASSES) for arm in ARMS}
    index = bootstrap_indices(outcomes[ARMS[0]][CLASSES[0]].num_images, boot["resamples"], boot["seed"])
    values = {}
    for arm in ARMS:
        for cls in CLASSES:
            values[(arm, cls, "auroc")] = np.array([[auroc(outcomes[arm][cls], i) for i in index]])
            values[(arm, cls, "froc")] = np.array(
                [[froc(outcomes[arm][cls], i, SETTINGS["froc_fp_rates"]) for i in index]]
            )
    result = {}
    for a, b in COMPARISONS:
        for cls in CLASSES:
            for metric in METRICS:
                entry = paired_interval(values[(a, cls, metric)], values[(b, cls, metric)], boot["level"])
                entry.pop("per_seed")
                result[f"{a}-{b}:{cls}_{metric}"] = entry
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "agnostic", help="data, models and logs")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="result JSON")
    args = parser.parse_args(argv)
    started = time.time()
    data, root = args.work_dir / "data", args.work_dir / f"seed{SEED}"
    root.mkdir(parents=True, exist_ok=True)
    counts = prepare_data(data)
    agnostic = agnostic_datalist(json.loads((data / "semi.json").read_text()))
    (data / "agnostic.json").write_text(json.dumps(agnostic, indent=1) + "\n")
    start = stage1(data, SEED, root)
    choice = rule_choice(data, start, root / "rule_choice.json")
    log(f"top_class rule on calibrated stage-1 maps of P images: {choice}")
    stage1_eval = evaluate(data, start, root / "eval_stage1")
    runs = {arm: run_arm(data, root, arm, start) for arm in ARMS}
    record = {
        "question": "stage 2 with class-agnostic positives (subset A, top_class rule) against leaving them out "
        "(control) and against the same images with their classes (class_specific)",
        "protocol": "bundle/docs/ablation_protocol.md, one training seed; pool, derivation, network, stage 1, "
        "calibration and stage 2 as there; a0 and EMA decay as the benchmark chose on validation",
        "seed": SEED, "a0": A0, "ema_decay": EMA_DECAY, "pool": SETTINGS["pool"], "num_r": SETTINGS["num_r"],
        "counts": counts, "rule_choice_at_stage2_start": choice,
        "stage1": {k: v for k, v in stage1_eval.items() if k != "eval_dir"},
        "runs": {arm: {k: v for k, v in r.items() if k != "eval_dir"} for arm, r in runs.items()},
        "intervals": intervals(runs),
        "minutes": round((time.time() - started) / 60, 1),
        "machine": {"cpus": os.cpu_count(), "bare_step_samples_per_s": bare_step_samples_per_s()},
        "command": "python scripts/benchmark_agnostic.py --work-dir runs/agnostic",
    }  # fmt: skip
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    log(f"wrote {args.output}")
    return record


if __name__ == "__main__":
    main()
