"""Ablation benchmark: stage 1 alone vs stage-2 distillation variants (plain, symmetric, fixed asymmetric, AALS).

For each training seed it trains stage 1 once, then every stage-2 variant from that stage-1 model, evaluates all
on the test split of a phantom data set generated from a fixed generator seed (not the demo's), and writes

* ``bundle/docs/ablation.json``: every run's per-class AUROC and FROC, the settings, timings and machine;
* a Markdown table (mean ± standard deviation over seeds) into ``bundle/docs/README.md`` between the markers
  ``<!-- ablation:start -->`` and ``<!-- ablation:end -->``;
* the AALS student's mean test metrics into ``eval_metrics`` of ``bundle/configs/metadata.json`` (the numbers the
  Model Zoo shows), named ``phantom_*`` because they come from synthetic data.

``--from-json`` rewrites the table and the metadata from an existing ``ablation.json`` without training.

Hyperparameters are fixed in advance (see ``SETTINGS``); checkpoints are selected on the validation split only.
Every run is the bundle's own ``python -m monai.bundle run`` command, so the numbers are those a user gets.

Example (about 45 minutes on 2 CPU cores)::

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

import numpy as np
from bundle_command import run_bundle

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
DOCS = REPO / "bundle" / "docs"

#: Everything that defines the benchmark; recorded in the JSON next to the results.
SETTINGS = {
    "generator": {
        "seed": 1234,  # the demo uses 2026
        "num_images": 1000,
        "size": 320,
        "difficulty": 0.2,
        "prevalence": 0.4,
        "r_fraction": 0.2,
    },
    "network": "configs/demo.json (ResNet 1-1-1-1, widths 16-128, FPN 32), 256 px input",
    "training_seeds": [0, 1, 2],
    "stage1": {
        "epochs": 30,
        "samples_per_epoch": 512,
        "learning_rate": 0.002,
        "pos_weight": 20.0,
        "mix": "R 0.5 N 0.5",
    },
    "stage2": {
        "epochs": 12,
        "samples_per_epoch": 512,
        "learning_rate": 0.0005,
        "pos_weight": 20.0,
        "ema_decay": 0.99,
        "a0": 4.0,
        "t": 0.4,
        "mix": "R 0.25 N 0.5 P 0.25",
    },
    "variants": ["plain", "symmetric", "asymmetric_fixed", "aals"],
    "selection": "best validation mean of image AUROC and FROC (0.1-0.4 FP/image), student network",
}
MARK_START, MARK_END = "<!-- ablation:start -->", "<!-- ablation:end -->"
#: The model whose numbers go into metadata.json: the bundle's final model is the AALS-distilled student.
REPORTED_MODEL = "aals"
#: eval_metrics name -> ablation summary key.
EVAL_METRICS = {
    "phantom_test_mean_auroc": "mean_auroc",
    "phantom_test_mean_froc": "mean_froc_paper",
    "phantom_test_rib_auroc": "rib_auroc",
    "phantom_test_rib_froc": "rib_froc_paper",
    "phantom_test_clavicle_auroc": "clavicle_auroc",
    "phantom_test_clavicle_froc": "clavicle_froc_paper",
}


def log(message: str, started: float) -> None:
    print(f"[ablation {time.time() - started:7.0f}s] {message}", flush=True)


def generate(data: Path, started: float) -> None:
    if (data / "datalist.json").is_file():
        log(f"reusing phantoms in {data}", started)
        return
    g = SETTINGS["generator"]
    log(f"generating {g['num_images']} phantoms into {data}", started)
    subprocess.run(
        [
            sys.executable, str(REPO / "scripts" / "generate_phantoms.py"), "--out", str(data),
            "--num-images", str(g["num_images"]), "--size", str(g["size"]), "--seed", str(g["seed"]),
            "--difficulty", str(g["difficulty"]), "--prevalence", str(g["prevalence"]),
            "--r-fraction", str(g["r_fraction"]), "--workers", "2",
        ],
        check=True,
    )  # fmt: skip


def evaluate(data: Path, checkpoint: Path, out: Path) -> dict:
    run_bundle(
        "evaluating",
        ["train.json", "evaluate.json", "demo.json"],
        {"dataset_dir": data, "ckpt_path": checkpoint, "output_dir": out},
        out.with_suffix(".log"),
    )
    metrics = json.loads((out / "metrics.json").read_text())
    result = {f"{c}_{k}": metrics["classes"][c][k] for c in metrics["classes"] for k in ("auroc", "froc_paper")}
    result.update({f"mean_{k}": metrics["mean"][k] for k in ("auroc", "froc_paper")})
    return result


def run_seed(seed: int, data: Path, work: Path, started: float) -> dict[str, dict]:
    s1, s2 = SETTINGS["stage1"], SETTINGS["stage2"]
    root = work / f"seed{seed}"
    root.mkdir(parents=True, exist_ok=True)
    results = {}
    log(f"seed {seed}: stage 1 ({s1['epochs']} epochs)", started)
    run_bundle(
        "training",
        ["train.json", "demo.json"],
        {
            "dataset_dir": data, "seed": seed, "ckpt_dir": root / "stage1", "output_dir": root / "runs_stage1",
            "train#trainer#max_epochs": s1["epochs"], "train#samples_per_epoch": s1["samples_per_epoch"],
            "learning_rate": s1["learning_rate"], "loss#pos_weight": s1["pos_weight"],
        },
        root / "stage1.log",
    )  # fmt: skip
    results["stage1"] = evaluate(data, root / "stage1" / "model.pt", root / "eval_stage1")
    log(f"seed {seed}: stage 1 test {results['stage1']}", started)
    for variant in SETTINGS["variants"]:
        log(f"seed {seed}: stage 2 '{variant}' ({s2['epochs']} epochs)", started)
        run_bundle(
            "training",
            ["train.json", "distill.json", "demo.json"],
            {
                "dataset_dir": data, "seed": seed, "stage1_checkpoint": root / "stage1" / "model.pt",
                "ckpt_dir": root / variant, "output_dir": root / f"runs_{variant}", "target_variant": variant,
                "train#trainer#max_epochs": s2["epochs"], "train#samples_per_epoch": s2["samples_per_epoch"],
                "learning_rate": s2["learning_rate"], "loss#pos_weight": s2["pos_weight"],
                "ema_decay": s2["ema_decay"], "aals_a0": s2["a0"], "aals_t": s2["t"],
            },
            root / f"{variant}.log",
        )  # fmt: skip
        results[variant] = evaluate(data, root / variant / "model.pt", root / f"eval_{variant}")
        log(f"seed {seed}: {variant} test {results[variant]}", started)
    return results


def summarize(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict[str, list[float]]]:
    """Mean and standard deviation over seeds of every metric of every model."""
    models = ["stage1", *SETTINGS["variants"]]
    summary = {}
    for model in models:
        keys = per_seed[next(iter(per_seed))][model].keys()
        summary[model] = {}
        for key in keys:
            values = np.array([np.nan if r[model][key] is None else r[model][key] for r in per_seed.values()], float)
            summary[model][key] = [float(np.nanmean(values)), float(np.nanstd(values))]
    return summary


def markdown(summary: dict, elapsed_min: float) -> str:
    names = {
        "stage1": "stage 1 only (R + N)",
        "plain": "stage 2, plain distillation",
        "symmetric": "stage 2, symmetric sharpening (t = 0.5)",
        "asymmetric_fixed": "stage 2, asymmetric, fixed a = a0",
        "aals": "stage 2, AALS",
    }
    columns = ["rib_auroc", "rib_froc_paper", "clavicle_auroc", "clavicle_froc_paper", "mean_auroc", "mean_froc_paper"]
    header = "| model | rib AUROC | rib FROC | clavicle AUROC | clavicle FROC | mean AUROC | mean FROC |"
    lines = [header, "| --- " * 7 + "|"]
    for model, label in names.items():
        if model not in summary:
            continue
        cells = [f"{summary[model][c][0]:.3f} ± {summary[model][c][1]:.3f}" for c in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    g, s1, s2 = SETTINGS["generator"], SETTINGS["stage1"], SETTINGS["stage2"]
    lines += [
        "",
        f"Test split of a {g['num_images']}-image phantom set (generator seed {g['seed']}, {g['size']} px, difficulty "
        f"{g['difficulty']}, prevalence {g['prevalence']}, R fraction {g['r_fraction']}); mean ± s.d. over training "
        f"seeds {SETTINGS['training_seeds']}. FROC = mean sensitivity at 0.1-0.4 false positives per image. "
        f"{SETTINGS['network']}; stage 1 {s1['epochs']} x {s1['samples_per_epoch']} samples, stage 2 "
        f"{s2['epochs']} x {s2['samples_per_epoch']} samples, EMA decay {s2['ema_decay']}, a0 {s2['a0']}, t {s2['t']}. "
        f"Total time {elapsed_min:.0f} min on {os.cpu_count()} CPU cores. Reproduce: "
        "`.venv/bin/python scripts/benchmark_ablation.py`; raw numbers in `ablation.json`.",
    ]
    return "\n".join(lines)


def write_docs(table: str) -> None:
    readme = DOCS / "README.md"
    text = readme.read_text()
    block = f"{MARK_START}\n{table}\n{MARK_END}"
    if MARK_START in text:
        before, rest = text.split(MARK_START, 1)
        text = before + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.replace("## Commands", f"### Ablation benchmark\n\n{block}\n\n## Commands", 1)
    readme.write_text(text)


def eval_metrics(summary: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """``metadata.json`` eval_metrics: mean over seeds of the reported model's test metrics, 4 decimals."""
    return {name: round(summary[REPORTED_MODEL][key][0], 4) for name, key in EVAL_METRICS.items()}


def write_metadata(metrics: dict[str, float]) -> None:
    """Replace the ``eval_metrics`` object of ``metadata.json`` in place (the rest of the file is left as written)."""
    path = CONFIGS / "metadata.json"
    text = path.read_text()
    block = json.dumps(metrics, indent=4).replace("\n", "\n    ")
    text, count = re.subn(r'"eval_metrics": \{[^{}]*\}', lambda _: f'"eval_metrics": {block}', text)
    if count != 1:
        raise RuntimeError(f"{path}: expected one flat eval_metrics object, found {count}")
    json.loads(text)  # never write a broken file
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "ablation", help="data, models and logs")
    parser.add_argument("--seeds", type=int, nargs="+", default=SETTINGS["training_seeds"], help="training seeds")
    parser.add_argument("--variants", nargs="+", default=SETTINGS["variants"], help="stage-2 variants to train")
    parser.add_argument("--pos-weight", type=float, default=None, help="override the BCE positive weight (both stages)")
    parser.add_argument(
        "--output", type=Path, default=None, help="write the JSON here and leave bundle/docs untouched (probes)"
    )
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="only rewrite the docs table and metadata from bundle/docs/ablation.json",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        record = json.loads((DOCS / "ablation.json").read_text())
        SETTINGS.update(record["settings"])
        write_docs(markdown(record["summary_mean_std"], record["minutes"]))
        write_metadata(eval_metrics(record["summary_mean_std"]))
        print(f"rewrote the table in {DOCS / 'README.md'} and eval_metrics in {CONFIGS / 'metadata.json'}")
        return 0
    SETTINGS["training_seeds"], SETTINGS["variants"] = args.seeds, args.variants
    if args.pos_weight is not None:
        SETTINGS["stage1"]["pos_weight"] = SETTINGS["stage2"]["pos_weight"] = args.pos_weight
    started = time.time()
    work = args.work_dir.resolve()
    data = work / "data"
    generate(data, started)
    per_seed = {seed: run_seed(seed, data, work, started) for seed in args.seeds}
    elapsed = (time.time() - started) / 60
    summary = summarize(per_seed)
    record = {
        "settings": SETTINGS,
        "per_seed": per_seed,
        "summary_mean_std": summary,
        "minutes": round(elapsed, 1),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
    }
    table = markdown(summary, elapsed)
    if args.output is not None:
        args.output.write_text(json.dumps(record, indent=2))
        log(f"done; wrote {args.output}", started)
    else:
        (DOCS / "ablation.json").write_text(json.dumps(record, indent=2))
        write_docs(table)
        write_metadata(eval_metrics(summary))
        log(
            f"done; wrote {DOCS / 'ablation.json'}, the table in {DOCS / 'README.md'} and metadata eval_metrics",
            started,
        )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
