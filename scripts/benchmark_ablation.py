"""Method benchmark: does AALS distillation on image-level positives beat stage 1, more training and plain KD?

Follows the protocol fixed in ``bundle/docs/ablation_protocol.md`` (read it first: arms, endpoints, sizes, what
is chosen on validation, the decision rule). In short, per training seed:

1. stage 1 on R + N (``train.json``), then Platt calibration on the validation split (``calibrate.json``);
2. every stage-2 arm from that calibrated checkpoint with the same seed (``distill.json``): ``control`` (R + N
   only), ``plain``, ``pseudo_label``, ``symmetric``, ``asymmetric_fixed``, ``aals`` and ``oracle`` (P keeps its
   boxes); on the first seed AALS's ``a0`` and the EMA decay are first chosen on validation;
3. each arm's model (student or EMA teacher, chosen on validation) is evaluated on the test split.

It then writes ``bundle/docs/ablation.json`` (settings, one record per arm and seed, preconditions, paired
bootstrap intervals, timings, the machine's bare-step figure), a table and a plot of the paired differences into
the model card (``bundle/docs/README.md``, ``bundle/docs/ablation_differences.png``) and the AALS arm's test
metrics into ``eval_metrics`` of ``bundle/configs/metadata.json``.

Every training and evaluation is the bundle's own ``python -m monai.bundle run`` command. A finished step leaves
a ``result.json`` (or its checkpoint) in the work folder and is skipped when the command is run again, so an
interrupted benchmark resumes where it stopped. ``--from-json`` only rewrites the docs from ``ablation.json``.

Example (about 90 minutes on a 2-core CPU)::

    .venv/bin/python scripts/benchmark_ablation.py --work-dir runs/ablation
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from ablation_data import derive_datalists, subset_counts
from ablation_stats import auroc, bootstrap_indices, froc, paired_interval, read_outcomes
from bundle_command import run_bundle

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
DOCS = REPO / "bundle" / "docs"

#: Everything that defines the benchmark (see bundle/docs/ablation_protocol.md); recorded in ablation.json.
SETTINGS: dict[str, Any] = {
    "pool": {
        "seed": 4242,  # the pilot used 777, the demo 2026
        "num_images": 3000,
        "size": 256,
        "zoom": 2.0,
        "difficulty": 0.1,
        "prevalence": 0.3,
        "val_fraction": 0.1,
        "test_fraction": 0.3667,
        "format": "png",
    },
    "num_r": 48,
    "derivation_seed": 0,
    "network": "configs/demo.json (ResNet 1-1-1-1, widths 16-128, FPN 32), 256 px input, batch 16",
    "training_seeds": [0, 1, 2],
    "stage1": {"epochs": 24, "samples_per_epoch": 512, "learning_rate": 0.002, "pos_weight": 10.0, "val_interval": 4},
    "stage2": {
        "epochs": 4,
        "samples_per_epoch": 512,
        "learning_rate": 0.0005,
        "pos_weight": 1.0,
        "val_interval": 4,
        "mix": "R 0.25, N 0.5, P 0.25 (control: R 1/3, N 2/3)",
        "t": 0.4,
    },
    "tuning": {"seed": 0, "a0": [2.0, 4.0, 8.0], "ema_decay": [0.99, 0.999], "first_decay": 0.99},
    "arms": ["stage1", "control", "plain", "pseudo_label", "symmetric", "asymmetric_fixed", "aals", "oracle"],
    "froc_fp_rates": [0.1, 0.2, 0.3, 0.4],
    "bootstrap": {"resamples": 2000, "seed": 0, "level": 0.95},
    "selection": "validation selection score (mean over classes of AUROC and FROC): stage 1 best epoch; stage 2 "
    "student or EMA teacher at the end; a0 and EMA decay on seed 0",
}
ARM_VARIANT = {"plain": "plain", "pseudo_label": "pseudo_label", "symmetric": "symmetric"}
ARM_VARIANT.update({"asymmetric_fixed": "asymmetric_fixed", "aals": "aals", "control": "aals", "oracle": "boxes"})
ARM_LABELS = {
    "stage1": "stage 1 (R + N), calibrated",
    "control": "control: stage 2 on R + N only",
    "plain": "plain distillation",
    "pseudo_label": "hard pseudo-labels (> t)",
    "symmetric": "symmetric sharpening (t = 0.5)",
    "asymmetric_fixed": "asymmetric, fixed a = a0",
    "aals": "AALS",
    "oracle": "oracle: P with boxes",
}
#: (arm A, arm B) pairs whose paired differences A - B get bootstrap intervals.
COMPARISONS = [("aals", "plain"), ("aals", "control"), ("aals", "stage1"), ("aals", "pseudo_label")]
COMPARISONS += [("aals", "symmetric"), ("aals", "asymmetric_fixed"), ("oracle", "aals"), ("plain", "stage1")]
CLASSES = ("rib", "clavicle")
METRICS = ("auroc", "froc")
MARK_START, MARK_END = "<!-- ablation:start -->", "<!-- ablation:end -->"
EVAL_METRICS = {
    "phantom_test_rib_auroc": ("rib", "auroc"),
    "phantom_test_rib_froc": ("rib", "froc"),
    "phantom_test_clavicle_auroc": ("clavicle", "auroc"),
    "phantom_test_clavicle_froc": ("clavicle", "froc"),
}


class Progress:
    """Elapsed-time log lines."""

    def __init__(self) -> None:
        self.started = time.time()

    def __call__(self, message: str) -> None:
        print(f"[ablation {(time.time() - self.started) / 60:6.1f} min] {message}", flush=True)


log = Progress()


# ----------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------


def prepare_data(data: Path) -> dict[str, Any]:
    """Generate the pool once and derive ``semi.json`` and ``oracle.json`` beside it; returns the subset counts."""
    pool = SETTINGS["pool"]
    if not (data / "datalist.json").is_file():
        log(f"generating the {pool['num_images']}-image phantom pool into {data}")
        subprocess.run(
            [
                sys.executable, str(REPO / "scripts" / "generate_phantoms.py"), "--out", str(data),
                "--num-images", str(pool["num_images"]), "--size", str(pool["size"]), "--seed", str(pool["seed"]),
                "--zoom", str(pool["zoom"]), "--difficulty", str(pool["difficulty"]),
                "--prevalence", str(pool["prevalence"]), "--r-fraction", "1", "--format", pool["format"],
                "--val-fraction", str(pool["val_fraction"]), "--test-fraction", str(pool["test_fraction"]),
                "--workers", "2",
            ],
            check=True,
        )  # fmt: skip
    semi, oracle = derive_datalists(
        json.loads((data / "datalist.json").read_text()), SETTINGS["num_r"], SETTINGS["derivation_seed"]
    )
    for name, content in (("semi.json", semi), ("oracle.json", oracle)):
        (data / name).write_text(json.dumps(content, indent=1) + "\n")
    counts = subset_counts(semi)
    log(f"datalists: {counts}")
    if counts["test_images"] < 1000 or counts["test_rib_positive"] < 250:
        log("WARNING: the test split is smaller than the protocol asks (>= 1000 images, >= 250 rib-positive)")
    return counts


# ----------------------------------------------------------------------------------------------------------------
# bundle runs
# ----------------------------------------------------------------------------------------------------------------


def best_validation(log_text: str, key: str) -> float:
    """The best value of a key metric (e.g. ``val_score``) that the training log reports."""
    values = re.findall(rf"Key metric: {key} best value: ([-0-9.eE]+)", log_text)
    if not values:
        raise RuntimeError(f"no '{key}' best value in the training log")
    return float(values[-1])


def teacher_maxima_quartiles(log_text: str) -> list[list[float]]:
    """Per-epoch quartiles of the teacher's map maxima on P images, as the AALS handler logs them."""
    found = re.findall(r"teacher map maxima.*quartiles ([0-9.]+) / ([0-9.]+) / ([0-9.]+)", log_text)
    return [[float(v) for v in q] for q in found]


def evaluate(data: Path, checkpoint: Path, out: Path) -> dict[str, Any]:
    """Evaluate a checkpoint on the test split (no overlay crops); returns per-class AUROC and FROC."""
    if not (out / "metrics.json").is_file():
        run_bundle(
            "evaluating",
            ["train.json", "evaluate.json", "demo.json"],
            {"dataset_dir": data, "datalist": data / "semi.json", "ckpt_path": checkpoint, "output_dir": out,
             "validate#handlers#3#num_overlays": 0},
            out.parent / f"{out.name}.log",
        )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())["classes"]
    result = {f"{c}_auroc": metrics[c]["auroc"] for c in CLASSES}
    result.update({f"{c}_froc": metrics[c]["froc_paper"] for c in CLASSES})
    result.update({f"{c}_ece": metrics[c].get("expected_calibration_error") for c in CLASSES})
    return result


def stage1(data: Path, seed: int, root: Path) -> Path:
    """Train stage 1 and calibrate it on validation; returns the calibrated checkpoint."""
    out = root / "stage1"
    calibrated = out / "model_calibrated.pt"
    if calibrated.is_file():
        return calibrated
    if (out / "checkpoint_final.pt").is_file():  # training finished earlier; only the calibration is missing
        log(f"seed {seed}: reusing the finished stage 1 in {out}")
    else:
        _train_stage1(data, seed, root, out)
    log(f"seed {seed}: Platt calibration of stage 1 on validation")
    run_bundle(
        "calibrating",
        ["train.json", "calibrate.json", "demo.json"],
        {"dataset_dir": data, "datalist": data / "semi.json", "ckpt_path": out / "model.pt",
         "calibrated_path": calibrated},
        root / "calibrate.log",
    )  # fmt: skip
    return calibrated


def _train_stage1(data: Path, seed: int, root: Path, out: Path) -> None:
    s1 = SETTINGS["stage1"]
    log(f"seed {seed}: stage 1 ({s1['epochs']} x {s1['samples_per_epoch']} samples)")
    run_bundle(
        "training",
        ["train.json", "demo.json"],
        {
            "dataset_dir": data, "datalist": data / "semi.json", "seed": seed, "ckpt_dir": out,
            "output_dir": out / "runs", "train#trainer#max_epochs": s1["epochs"],
            "train#samples_per_epoch": s1["samples_per_epoch"], "learning_rate": s1["learning_rate"],
            "loss#pos_weight": s1["pos_weight"], "val_interval": s1["val_interval"], "tensorboard_overlays": 0,
        },
        root / "stage1.log",
    )  # fmt: skip


def arm_overrides(
    arm: str, data: Path, seed: int, out: Path, start: Path, a0: float, decay: float
) -> dict[str, object]:
    """Bundle overrides of one stage-2 arm (train.json + distill.json + demo.json); values as the CLI takes them."""
    s2 = SETTINGS["stage2"]
    overrides: dict[str, object] = {
        "dataset_dir": data, "datalist": data / "semi.json", "seed": seed, "stage1_checkpoint": start,
        "ckpt_dir": out, "output_dir": out / "runs", "train#trainer#max_epochs": s2["epochs"],
        "train#samples_per_epoch": s2["samples_per_epoch"], "learning_rate": s2["learning_rate"],
        "loss#pos_weight": s2["pos_weight"], "val_interval": s2["val_interval"], "ema_decay": decay,
        "aals_a0": a0, "aals_t": s2["t"], "target_variant": ARM_VARIANT[arm], "tensorboard_overlays": 0,
    }  # fmt: skip
    if arm == "control":  # the same stage 2 without P: R and N in the stage-2 ratio
        overrides.update({"train#datalist#subsets": ["R", "N"], "train#subset_mix": {"R": 0.25, "N": 0.5}})
    if arm == "oracle":  # the same images and sampling, P trained on its boxes
        overrides.update({"datalist": data / "oracle.json", "train#datalist#p_boxes": True})
    return overrides


def stage2(data: Path, seed: int, root: Path, name: str, arm: str, a0: float, decay: float, start: Path) -> dict:
    """Train one stage-2 arm, choose student or teacher on validation, evaluate it on test; cached in result.json."""
    out = root / name
    result_file = out / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    s2 = SETTINGS["stage2"]
    log(f"seed {seed}: stage 2 '{name}' ({s2['epochs']} x {s2['samples_per_epoch']} samples, a0 {a0}, decay {decay})")
    overrides = arm_overrides(arm, data, seed, out, start, a0, decay)
    text = run_bundle("training", ["train.json", "distill.json", "demo.json"], overrides, root / f"{name}.log")
    student, teacher = best_validation(text, "val_score"), best_validation(text, "teacher_val_score")
    chosen = "teacher" if teacher > student else "student"
    checkpoint = out / ("teacher.pt" if chosen == "teacher" else "model.pt")
    result = {
        "arm": arm, "seed": seed, "name": name, "a0": a0, "ema_decay": decay, "selected": chosen,
        "val_score_student": student, "val_score_teacher": teacher, "val_score": max(student, teacher),
        "teacher_p_max_quartiles_per_epoch": teacher_maxima_quartiles(text),
        **evaluate(data, checkpoint, root / f"eval_{name}"), "eval_dir": str(root / f"eval_{name}"),
    }  # fmt: skip
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    log(f"seed {seed}: {name}: {chosen} chosen (val {result['val_score']:.4f}); test {_short(result)}")
    return result


def _short(result: dict) -> str:
    return ", ".join(f"{c} {m} {result[f'{c}_{m}']:.3f}" for c in CLASSES for m in METRICS)


# ----------------------------------------------------------------------------------------------------------------
# preconditions (what AALS needs to act)
# ----------------------------------------------------------------------------------------------------------------


def preconditions(data: Path, checkpoint: Path, out: Path) -> dict[str, float]:
    """Shares that tell whether AALS can act, measured with the calibrated stage-1 model (the first teacher).

    ``p_in_band``: share of (P image, positive class) pairs whose map maximum lies in ``(t, 0.8)``, the band where
    AALS raises targets most; ``p_above_t``: share above ``t``; ``val_negative_above_t_<class>``: share of
    validation images negative for that class whose maximum exceeds ``t``. Runs in a subprocess of the bundle's
    own config (network, validation preprocessing), so nothing here re-implements them.
    """
    if out.is_file():
        return json.loads(out.read_text())
    code = r"""
import json, sys, numpy as np, torch
from monai.bundle import ConfigParser
sys.path.insert(0, "bundle")
from scripts.distill.aals import load_weights
from scripts.data.datalist import load_datalist
data, ckpt, out, t = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
parser = ConfigParser()
parser.read_config(["bundle/configs/train.json", "bundle/configs/demo.json"])
parser["dataset_dir"] = data
parser["datalist"] = data + "/semi.json"
net = load_weights(parser.get_parsed_content("network_def"), ckpt).eval()
transform = parser.get_parsed_content("validate#preprocessing")
def maxima(items):
    result = []
    for start in range(0, len(items), 32):
        batch = torch.stack([transform(dict(item))["image"] for item in items[start:start + 32]])
        with torch.no_grad():
            result.append(torch.sigmoid(net(batch)).amax(dim=(-2, -1)).numpy())
    return np.concatenate(result)
p_items = load_datalist(data + "/semi.json", "training", subsets=["P"])
p_max, p_lab = maxima(p_items), np.stack([i["image_label"] for i in p_items])
v_items = load_datalist(data + "/semi.json", "validation")
v_max, v_lab = maxima(v_items), np.stack([i["image_label"] for i in v_items])
pos = p_max[p_lab > 0]
record = {"p_in_band": float(((pos > t) & (pos < 0.8)).mean()), "p_above_t": float((pos > t).mean()),
          "p_max_quartiles": np.percentile(pos, [25, 50, 75]).tolist(), "num_p_pairs": int(pos.size)}
for c, name in enumerate(["rib", "clavicle"]):
    record["val_negative_above_t_" + name] = float((v_max[v_lab[:, c] == 0, c] > t).mean())
json.dump(record, open(out, "w"), indent=2)
"""
    subprocess.run(
        [sys.executable, "-c", code, str(data), str(checkpoint), str(out), str(SETTINGS["stage2"]["t"])],
        cwd=REPO,
        check=True,
    )
    return json.loads(out.read_text())


# ----------------------------------------------------------------------------------------------------------------
# one seed
# ----------------------------------------------------------------------------------------------------------------


def tune(data: Path, root: Path, start: Path) -> dict[str, Any]:
    """Choose AALS's a0, then the EMA decay, by validation score on the tuning seed (never on test)."""
    grid, seed = SETTINGS["tuning"], SETTINGS["tuning"]["seed"]
    first = grid["first_decay"]
    runs = [stage2(data, seed, root, f"aals_a{a0:g}_d{first:g}", "aals", a0, first, start) for a0 in grid["a0"]]
    a0 = max(runs, key=lambda r: r["val_score"])["a0"]
    runs += [
        stage2(data, seed, root, f"aals_a{a0:g}_d{d:g}", "aals", a0, d, start) for d in grid["ema_decay"] if d != first
    ]
    decay = max((r for r in runs if r["a0"] == a0), key=lambda r: r["val_score"])["ema_decay"]
    log(f"tuning on validation: a0 = {a0:g}, EMA decay = {decay:g}")
    return {"a0": a0, "ema_decay": decay, "runs": [{k: r[k] for k in ("a0", "ema_decay", "val_score")} for r in runs]}


def run_seed(data: Path, seed: int, work: Path, chosen: dict | None) -> tuple[list[dict], dict, dict | None]:
    """Stage 1, calibration, preconditions and every stage-2 arm of one seed."""
    root = work / f"seed{seed}"
    root.mkdir(parents=True, exist_ok=True)
    start = stage1(data, seed, root)
    pre = preconditions(data, start, root / "preconditions.json")
    log(f"seed {seed}: preconditions {pre}")
    stage1_eval = root / "eval_stage1"
    runs = [{"arm": "stage1", "seed": seed, "selected": "calibrated stage 1", **evaluate(data, start, stage1_eval)}]
    runs[0]["eval_dir"] = str(stage1_eval)
    if chosen is None:
        chosen = tune(data, root, start)
    a0, decay = chosen["a0"], chosen["ema_decay"]
    for arm in SETTINGS["arms"][1:]:
        name = f"aals_a{a0:g}_d{decay:g}" if arm == "aals" else arm
        runs.append(stage2(data, seed, root, name, arm, a0, decay, start))
    return runs, pre, chosen


# ----------------------------------------------------------------------------------------------------------------
# statistics and docs
# ----------------------------------------------------------------------------------------------------------------


def intervals(runs: list[dict]) -> dict[str, Any]:
    """Paired bootstrap intervals over test images for every comparison, class and metric."""
    boot = SETTINGS["bootstrap"]
    seeds = sorted({r["seed"] for r in runs})
    by_key = {(r["arm"], r["seed"]): r for r in runs}
    arms = sorted({a for pair in COMPARISONS for a in pair})
    outcomes = {  # each detections.json read once: (arm, seed) -> class -> outcomes
        (arm, s): read_outcomes(Path(by_key[(arm, s)]["eval_dir"]) / "detections.json", CLASSES)
        for arm in arms
        for s in seeds
    }
    index = bootstrap_indices(outcomes[(arms[0], seeds[0])][CLASSES[0]].num_images, boot["resamples"], boot["seed"])
    rates = SETTINGS["froc_fp_rates"]
    values: dict[tuple[str, str, str], np.ndarray] = {}
    for arm in arms:
        for cls in CLASSES:
            per_seed = [outcomes[(arm, s)][cls] for s in seeds]
            values[(arm, cls, "auroc")] = np.array([[auroc(o, i) for i in index] for o in per_seed])
            values[(arm, cls, "froc")] = np.array([[froc(o, i, rates) for i in index] for o in per_seed])
        log(f"bootstrap: {arm} done")
    result = {}
    for a, b in COMPARISONS:
        for cls in CLASSES:
            for metric in METRICS:
                entry = paired_interval(values[(a, cls, metric)], values[(b, cls, metric)], boot["level"])
                result[f"{a}-{b}:{cls}_{metric}"] = entry
    return result


def summarize(runs: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Mean and standard deviation over seeds of every test metric of every arm."""
    summary = {}
    for arm in SETTINGS["arms"]:
        rows = [r for r in runs if r["arm"] == arm]
        summary[arm] = {}
        for cls in CLASSES:
            for metric in METRICS:
                values = np.array([np.nan if r[f"{cls}_{metric}"] is None else r[f"{cls}_{metric}"] for r in rows])
                summary[arm][f"{cls}_{metric}"] = [float(np.nanmean(values)), float(np.nanstd(values, ddof=1))]
    return summary


def verdict(entry: dict[str, float]) -> str:
    """The protocol's decision rule for one paired difference."""
    if entry["lower"] > 0:
        return "higher"
    if entry["upper"] < 0:
        return "lower"
    return "not resolved"


def markdown(record: dict[str, Any]) -> str:
    summary, ivals = record["summary_mean_sd"], record["intervals"]
    columns = [f"{c}_{m}" for c in CLASSES for m in METRICS]
    lines = ["| arm | rib AUROC | rib FROC | clavicle AUROC | clavicle FROC |", "| --- " * 5 + "|"]
    for arm in SETTINGS["arms"]:
        cells = [f"{summary[arm][c][0]:.3f} ± {summary[arm][c][1]:.3f}" for c in columns]
        lines.append(f"| {ARM_LABELS[arm]} | " + " | ".join(cells) + " |")
    lines += ["", "| paired difference | rib AUROC | rib FROC | clavicle AUROC | clavicle FROC |", "| --- " * 5 + "|"]
    for a, b in COMPARISONS:
        cells = []
        for c in columns:
            e = ivals[f"{a}-{b}:{c}"]
            cells.append(f"{e['difference']:+.3f} [{e['lower']:+.3f}, {e['upper']:+.3f}] {verdict(e)}")
        lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    pool, s1, s2, pre = SETTINGS["pool"], SETTINGS["stage1"], SETTINGS["stage2"], record["preconditions"]
    band = ", ".join(f"{p['p_in_band']:.2f}" for p in pre.values())
    negs = ", ".join(f"{p['val_negative_above_t_rib']:.2f}" for p in pre.values())
    lines += [
        "",
        f"Test split: {record['test_images']} images ({record['test_rib_positive']} rib-positive) of a phantom pool "
        f"(generator seed {pool['seed']}, {pool['size']} px, zoom {pool['zoom']}, difficulty {pool['difficulty']}); "
        f"training R {record['counts']['R']}, P {record['counts']['P']}, N {record['counts']['N']}. Mean ± s.d. over "
        f"training seeds {SETTINGS['training_seeds']}; differences are seed means with paired bootstrap 95 % "
        f"intervals over test images ({SETTINGS['bootstrap']['resamples']} resamples); 'higher'/'lower' = the "
        f"interval excludes 0. Chosen on validation: a0 = {record['tuning']['a0']:g}, EMA decay "
        f"{record['tuning']['ema_decay']:g}. Stage 1 {s1['epochs']} x {s1['samples_per_epoch']} samples "
        f"(pos_weight {s1['pos_weight']:g}, then Platt-calibrated), stage 2 {s2['epochs']} x "
        f"{s2['samples_per_epoch']} samples (pos_weight 1). Preconditions per seed: share of P images whose "
        f"calibrated stage-1 maximum lies in (t, 0.8): {band}; share of validation rib-negatives above t: {negs}. "
        f"Wall time {record['minutes']:.0f} min on {record['machine']['cpus']} CPU cores; this machine's bare "
        f"training step: {record['machine']['bare_step_samples_per_s']:.1f} samples/s. Reproduce: "
        "`.venv/bin/python scripts/benchmark_ablation.py`; raw numbers in `ablation.json`.",
        "",
        "![Paired differences](ablation_differences.png)",
    ]
    return "\n".join(lines)


def plot_differences(record: dict[str, Any], path: Path) -> None:
    """Forest plot of the paired differences with their bootstrap intervals, one panel per class and metric."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    labels = [f"{a} − {b}" for a, b in COMPARISONS]
    for k, (cls, metric) in enumerate((c, m) for c in CLASSES for m in METRICS):
        axes = figure.add_subplot(2, 2, k + 1)
        for row, (a, b) in enumerate(COMPARISONS):
            e = record["intervals"][f"{a}-{b}:{cls}_{metric}"]
            colour = {"higher": "tab:green", "lower": "tab:red"}.get(verdict(e), "0.3")
            axes.plot([e["lower"], e["upper"]], [row, row], color=colour, lw=2)
            axes.plot([e["difference"]], [row], "o", color=colour)
            axes.plot(e["per_seed"], [row] * len(e["per_seed"]), "x", color="0.5", ms=4)
        axes.axvline(0, color="0.5", ls="--", lw=1)
        axes.set_yticks(range(len(labels)), labels if k % 2 == 0 else [""] * len(labels))
        axes.invert_yaxis()
        axes.set_title(f"{cls} {metric.upper()}: difference, 95 % CI (x = seeds)")
        axes.grid(True, axis="x", alpha=0.3)
    figure.savefig(path)


def write_docs(record: dict[str, Any]) -> None:
    plot_differences(record, DOCS / "ablation_differences.png")
    readme = DOCS / "README.md"
    text = readme.read_text()
    block = f"{MARK_START}\n{markdown(record)}\n{MARK_END}"
    if MARK_START in text:
        before, rest = text.split(MARK_START, 1)
        text = before + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.replace("## Commands", f"### Ablation benchmark\n\n{block}\n\n## Commands", 1)
    readme.write_text(text)


def eval_metrics(record: dict[str, Any]) -> dict[str, float]:
    """``metadata.json`` eval_metrics: the AALS arm's test metrics, mean over seeds, 4 decimals."""
    summary = record["summary_mean_sd"]
    return {name: round(summary["aals"][f"{c}_{m}"][0], 4) for name, (c, m) in EVAL_METRICS.items()}


def write_metadata(metrics: dict[str, float]) -> None:
    """Replace the flat ``eval_metrics`` object of ``metadata.json`` in place (the rest is left as written)."""
    path = CONFIGS / "metadata.json"
    text = path.read_text()
    block = json.dumps(metrics, indent=4).replace("\n", "\n    ")
    text, count = re.subn(r'"eval_metrics": \{[^{}]*\}', lambda _: f'"eval_metrics": {block}', text)
    if count != 1:
        raise RuntimeError(f"{path}: expected one flat eval_metrics object, found {count}")
    json.loads(text)  # never write a broken file
    path.write_text(text)


def bare_step_samples_per_s(repeats: int = 20) -> float:
    """Forward + backward + AdamW step of the benchmark network on in-memory tensors (this machine's speed)."""
    code = r"""
import sys, time, torch
from monai.bundle import ConfigParser
sys.path.insert(0, "bundle")
parser = ConfigParser()
parser.read_config(["bundle/configs/train.json", "bundle/configs/demo.json"])
net, size, batch = parser.get_parsed_content("network_def"), parser["image_size"], parser["batch_size"]
opt = torch.optim.AdamW(net.parameters(), 1e-3)
x, y = torch.rand(batch, 1, size, size), torch.zeros(batch, 2, size // 4, size // 4)
def step():
    opt.zero_grad(); torch.nn.functional.binary_cross_entropy_with_logits(net(x), y).backward(); opt.step()
for _ in range(3): step()
start = time.perf_counter()
for _ in range(int(sys.argv[1])): step()
print(int(sys.argv[1]) * batch / (time.perf_counter() - start))
"""
    out = subprocess.run([sys.executable, "-c", code, str(repeats)], cwd=REPO, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "ablation", help="data, models and logs")
    parser.add_argument("--seeds", type=int, nargs="+", default=SETTINGS["training_seeds"], help="training seeds")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here, leave the docs (probes)")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the docs from ablation.json")
    args = parser.parse_args(argv)
    if args.from_json:
        record = json.loads((DOCS / "ablation.json").read_text())
        SETTINGS.update(record["settings"])
        write_docs(record)
        write_metadata(eval_metrics(record))
        print(f"rewrote the ablation section of {DOCS / 'README.md'}, its plot and metadata eval_metrics")
        return 0
    SETTINGS["training_seeds"] = args.seeds
    work = args.work_dir.resolve()
    data = work / "data"
    bare = bare_step_samples_per_s()
    log(f"bare training step on this machine: {bare:.1f} samples/s")
    counts = prepare_data(data)
    runs, pre, chosen = [], {}, None
    for seed in args.seeds:
        seed_runs, pre[str(seed)], chosen = run_seed(data, seed, work, chosen)
        runs += seed_runs
    log("paired bootstrap over test images")
    record: dict[str, Any] = {
        "settings": SETTINGS,
        "counts": counts,
        "test_images": counts["test_images"],
        "test_rib_positive": counts["test_rib_positive"],
        "tuning": chosen,
        "preconditions": pre,
        "runs": runs,
        "summary_mean_sd": summarize(runs),
        "intervals": intervals(runs),
        "minutes": round((time.time() - log.started) / 60, 1),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "bare_step_samples_per_s": round(bare, 1),
        },
    }
    target = args.output or DOCS / "ablation.json"
    target.write_text(json.dumps(record, indent=2) + "\n")
    if args.output is None:
        write_docs(record)
        write_metadata(eval_metrics(record))
    log(f"done; wrote {target}" + ("" if args.output else ", the model card section and metadata eval_metrics"))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
