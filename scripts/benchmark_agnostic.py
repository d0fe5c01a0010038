"""Class-agnostic positives on the phantom benchmark pool: what do image-level positives without a class add?

CheXpert and MIMIC-CXR label ``Fracture`` without saying rib or clavicle. The bundle leaves such positives out by
default and can use them as training subset ``A`` (``scripts/build_datalist.py --agnostic include``), whose stage-2
target follows the ``top_class`` rule of ``bundle/scripts/distill/aals.py``. This script measures that choice in the
method benchmark's v1 setting (``bundle/docs/ablation_protocol.md``: the same pool, R/P/N derivation, network,
stage 1, calibration and stage 2, with the a0 and EMA decay v1 chose on validation), on one training seed, with
three stage-2 arms from one calibrated stage 1, run by the benchmark's own runner (``scripts/ablation_runner.py``):

* ``control``: R + N only: what the default (leaving class-agnostic positives out) amounts to;
* ``class_specific``: R + N + P with P's class labels (v1's AALS arm);
* ``agnostic``: the same P images as subset ``A``, their classes hidden (rib and clavicle both candidates), sampled
  as P was, targets by the ``top_class`` rule (AALS on the class with the higher teacher maximum, the teacher's map
  as it is on the other).

It also measures how often the rule's choice at the start of stage 2 (the candidate class with the higher
calibrated stage-1 maximum) is a true class of the P image, against always choosing rib (the pool's majority
class). Writes ``bundle/docs/agnostic_positives.json`` with the test metrics of every arm (the bundle's own
evaluation) and paired bootstrap intervals over test images (``scripts/ablation_stats.py``).

Example (each step is cached in the work folder; ``--arms`` runs some arms only, so that several invocations can
share the machine's cores, and the last one writes the JSON)::

    .venv/bin/python scripts/benchmark_agnostic.py --work-dir runs/agnostic

``--protocol v2-tiny`` runs the same code path at test size (the method benchmark's tiny settings: 96 px phantoms,
a tiny network, 1-2 epochs); its JSON goes to the work folder, never to ``bundle/docs``. Every bundle run of the
script reads one preprocessed store in the work folder (``cache_dir``), as the method benchmark's runs do.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path
from typing import Any

import repo_paths  # noqa: F401  (bundle package on the import path)

import numpy as np
import torch
from ablation_runner import Benchmark, Launcher, Progress
from ablation_settings import CLASSES, METRICS, settings_for
from ablation_stats import auroc, bootstrap_indices, froc, paired_interval, read_outcomes
from bundle_command import CONFIGS, REPO
from monai.bundle import ConfigParser

from scripts.data.datalist import load_datalist
from scripts.distill.aals import load_weights

OUTPUT = REPO / "bundle" / "docs" / "agnostic_positives.json"
SEED = 0
#: v1's choices on validation (bundle/docs/ablation.json, "tuning", the same in both recorded runs): not re-tuned.
A0, EMA_DECAY = 4.0, 0.99
#: arm name -> (run folder, runner arm)
ARMS = {
    "control": ("control", "control"),
    "class_specific": ("aals_a4_d0.99", "aals"),
    "agnostic": ("agnostic", "agnostic"),
}
COMPARISONS = [("agnostic", "control"), ("class_specific", "control"), ("agnostic", "class_specific")]


class AgnosticBenchmark(Benchmark):
    """v1's benchmark with one more stage-2 arm, ``agnostic``: P's images as class-agnostic subset A."""

    def agnostic_datalist(self, seed: int) -> Path:
        """The seed's semi-supervised datalist with every P entry as subset A (both classes candidates)."""
        semi = self.datalist(seed)
        path = semi.with_name(semi.stem.replace("semi", "agnostic") + ".json")
        if not path.is_file():
            content = copy.deepcopy(json.loads(semi.read_text()))
            for entry in content["training"]:
                if entry["subset"] == "P":
                    entry["hidden_labels"] = entry["labels"]
                    entry["subset"], entry["labels"] = "A", dict.fromkeys(CLASSES, 1)
            path.write_text(json.dumps(content, indent=1) + "\n")
        return path

    def arm_overrides(self, arm: str, seed: int, level: dict[str, Any], out: Path, *args: Any, **kwargs: Any) -> dict:
        if arm != "agnostic":
            return super().arm_overrides(arm, seed, level, out, *args, **kwargs)
        overrides = super().arm_overrides("aals", seed, level, out, *args, **kwargs)
        mix = dict(self.s2["mix"])
        overrides.update({"datalist": self.agnostic_datalist(seed), "train#datalist#subsets": ["R", "N", "A"],
                          "train#subset_mix": {"R": mix["R"], "N": mix["N"], "A": mix["P"]}})  # fmt: skip
        return overrides


def rule_choice(launcher: Launcher, data: Path, datalist: Path, checkpoint: Path) -> dict[str, Any]:
    """How often the top_class rule, on the calibrated stage-1 maps of the P images, picks a true class of the image.

    The network and validation preprocessing come from the bundle's config and the launcher's overrides (as in
    ``ablation_preconditions``).
    """
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in launcher.configs(["train.json"])])
    for key, value in launcher.overrides.items():
        parser[key] = value
    parser["dataset_dir"], parser["datalist"] = str(data), str(datalist)
    network = load_weights(parser.get_parsed_content("network_def"), str(checkpoint)).eval()
    transform = parser.get_parsed_content("validate#preprocessing")
    items = load_datalist(datalist, "training", subsets=["P"])
    maxima = []
    for start in range(0, len(items), 32):
        batch = torch.stack([transform(dict(item))["image"] for item in items[start : start + 32]])
        with torch.no_grad():
            maxima.append(torch.sigmoid(network(batch)).amax(dim=(-2, -1)).numpy())
    labels = np.stack([item["image_label"] for item in items]) > 0
    picked = labels[np.arange(len(items)), np.concatenate(maxima).argmax(axis=1)]
    single = labels.sum(axis=1) == 1
    return {
        "num_p_images": len(items),
        "num_single_class": int(single.sum()),
        "rule_picks_a_true_class": float(picked.mean()),
        "rule_picks_a_true_class_single_class_images": float(picked[single].mean()),
        "always_rib_picks_a_true_class": float(labels[:, 0].mean()),
    }


def intervals(runs: dict[str, dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """Paired bootstrap intervals over test images (one seed) for every comparison, class and metric."""
    boot = settings["bootstrap"]
    outcomes = {arm: read_outcomes(Path(runs[arm]["eval_dir"]) / "detections.json", CLASSES) for arm in ARMS}
    index = bootstrap_indices(outcomes["control"][CLASSES[0]].num_images, boot["resamples"], boot["seed"])
    values = {}
    for arm in ARMS:
        for cls in CLASSES:
            values[(arm, cls, "auroc")] = np.array([[auroc(outcomes[arm][cls], i) for i in index]])
            rates = settings["froc_fp_rates"]
            values[(arm, cls, "froc")] = np.array([[froc(outcomes[arm][cls], i, rates) for i in index]])
    result = {}
    for a, b in COMPARISONS:
        for cls in CLASSES:
            for metric in METRICS:
                entry = paired_interval(values[(a, cls, metric)], values[(b, cls, metric)], boot["level"])
                entry.pop("per_seed")
                result[f"{a}-{b}:{cls}_{metric}"] = entry
    return result


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    keys = ("selected", "val_score_student", "val_score_teacher", "child_cpu_minutes", "aals_stats")
    return {key: result[key] for key in (*keys, *(f"{c}_{m}" for c in CLASSES for m in (*METRICS, "ece")))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--protocol", choices=["v1", "v2-tiny"], default="v1",
        help="v1 (the measurement) or v2-tiny (the same code path at test size; JSON in the work folder)",
    )  # fmt: skip
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "agnostic", help="data, models and logs")
    parser.add_argument(
        "--output", type=Path, default=None,
        help=f"result JSON (default: {OUTPUT.relative_to(REPO)}; with v2-tiny: agnostic_positives_tiny.json in the "
        "work folder)",
    )  # fmt: skip
    parser.add_argument("--in-process", action="store_true", help="run the bundle workflows in this process")
    parser.add_argument(
        "--arms", nargs="*", choices=list(ARMS), default=list(ARMS),
        help="run only these arms and stop (several invocations may run different arms at once); the JSON is "
        "written when every arm is done",
    )  # fmt: skip
    parser.add_argument(
        "--stage1-epochs", type=int, default=None,
        help="stage-1 epochs (default: v1's 24); fewer shortens the run on a busy machine, and the JSON says so",
    )  # fmt: skip
    args = parser.parse_args(argv)
    work = args.work_dir.resolve()
    tiny = args.protocol != "v1"
    output = args.output or (work / "agnostic_positives_tiny.json" if tiny else OUTPUT)
    settings = copy.deepcopy(settings_for(args.protocol))
    settings["training_seeds"] = [SEED]
    if args.stage1_epochs:
        settings["stage1"]["epochs"] = settings["levels"][-1]["epoch"] = args.stage1_epochs
    level = settings["levels"][-1]  # the full stage-1 run (its best checkpoint by validation)
    overrides = {**settings.get("bundle_overrides", {}), **settings.get("light_network_overrides", {})}
    overrides["cache_dir"] = work / "cache"  # one preprocessed store for every run, as in the method benchmark
    launcher = Launcher("light", overrides=overrides, in_process=args.in_process)
    bench = AgnosticBenchmark(settings, work, launcher, Progress("agnostic"))
    bench.prepare_pool()
    counts = bench.check_counts()
    if not (bench.level_dir(SEED, level) / "model.pt").is_file():
        bench.stage1(SEED)
    if not (bench.level_dir(SEED, level) / "result.json").is_file():
        bench.teacher(SEED, level)
    stage1 = json.loads((bench.level_dir(SEED, level) / "result.json").read_text())
    calibrated = bench.level_dir(SEED, level) / "model_calibrated.pt"
    choice_file = bench.level_dir(SEED, level) / "rule_choice.json"
    if not choice_file.is_file():
        choice = rule_choice(launcher, bench.data, bench.datalist(SEED), calibrated)
        choice_file.write_text(json.dumps(choice, indent=2) + "\n")
        bench.log(f"top_class rule on the calibrated stage-1 maps of P images: {choice}")
    choice = json.loads(choice_file.read_text())
    for name in args.arms:
        bench.stage2(SEED, level, *ARMS[name], A0, EMA_DECAY)
    finished = {name: bench.arm_dir(SEED, level, folder) / "result.json" for name, (folder, _) in ARMS.items()}
    if not all(path.is_file() for path in finished.values()):
        bench.log(f"arms not finished yet: {[name for name, path in finished.items() if not path.is_file()]}")
        return {}
    runs = {name: json.loads(path.read_text()) for name, path in finished.items()}
    agnostic_counts = json.loads(bench.agnostic_datalist(SEED).read_text())["training"]
    provenance = bench.level_dir(SEED, level) / "provenance.txt"
    record = {
        "question": "stage 2 with class-agnostic positives (subset A, top_class rule) against leaving them out "
        "(control) and against the same images with their classes (class_specific)",
        "protocol": f"bundle/docs/ablation_protocol.md ({args.protocol}), one training seed; pool, derivation, "
        "network, stage 1, calibration and stage 2 as there; a0 and EMA decay as v1 chose on validation",
        "seed": SEED, "a0": A0, "ema_decay": EMA_DECAY, "pool": settings["pool"], "num_r": settings["num_r"],
        "stage1_epochs": level["epoch"], "stage2_epochs": bench.stage2_epochs(SEED),
        "counts": {**counts, "A (agnostic arm)": sum(e["subset"] == "A" for e in agnostic_counts)},
        "rule_choice_at_stage2_start": choice,
        "stage1": {k: stage1.get(k) for k in (f"{c}_{m}" for c in CLASSES for m in (*METRICS, "ece"))},
        "runs": {name: _summary(result) for name, result in runs.items()},
        "intervals": intervals(runs, settings),
        "stage2_cpu_minutes": {name: result["child_cpu_minutes"] for name, result in runs.items()},
        "stage1_provenance": provenance.read_text().strip() if provenance.is_file() else "trained by this script",
        "machine": {"cpus": os.cpu_count(), "note": "shared with other benchmarks while it ran"},
        "command": "python scripts/benchmark_agnostic.py --work-dir runs/agnostic"
        + (f" --protocol {args.protocol}" if tiny else "")
        + (f" --stage1-epochs {args.stage1_epochs}" if args.stage1_epochs else ""),
    }  # fmt: skip
    output.write_text(json.dumps(record, indent=2) + "\n")
    bench.log(f"wrote {output}")
    return record


if __name__ == "__main__":
    main()
