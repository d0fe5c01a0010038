"""Method benchmark: when does AALS distillation on image-level positives beat more training and plain KD?

One command per protocol (read the protocol document first: arms, levels, sizes, what is chosen on validation,
the decision rule)::

    .venv/bin/python scripts/benchmark_ablation.py --protocol v2            # bundle/docs/ablation_protocol_v2.md
    .venv/bin/python scripts/benchmark_ablation.py --protocol v2-pilot      # the pilot that fixed v2's levers
    .venv/bin/python scripts/benchmark_ablation.py --protocol v1            # bundle/docs/ablation_protocol.md
    .venv/bin/python scripts/benchmark_ablation.py --protocol v2 --device cuda --network default   # on a GPU

Every training and evaluation is the bundle's own workflow (``ablation_runner``). Each finished step leaves its
result in the work folder (default ``runs/ablation_<protocol>``) and is skipped when the command runs again, even
days later, so a killed benchmark resumes where it stopped; progress lines give the elapsed time and the steps
left. At the end it writes the protocol's JSON record (``bundle/docs/ablation_v2.json`` for v2), the model-card
section with its figures and, for the top level's AALS arm, ``eval_metrics`` in ``metadata.json``
(``--no-docs`` writes the JSON only; ``--from-json`` only rewrites the documents from a record).

Parts: ``ablation_settings`` (protocols), ``ablation_data`` (datalists), ``ablation_runner`` (steps),
``ablation_preconditions`` (what AALS needs to act), ``ablation_pilot`` (v2's pilot), ``ablation_stats``
(bootstrap), ``ablation_report`` (statistics, tables, figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from ablation_report import (
    DOCS,
    analyse,
    eval_metrics,
    markdown_v1,
    markdown_v2,
    payoff,
    write_docs,
    write_metadata,
)
from ablation_runner import Benchmark, Launcher, Progress
from ablation_settings import PROTOCOLS, settings_for
from bundle_command import CONFIGS, REPO

__all__ = ["bare_step_samples_per_s", "build_record", "main"]


def bare_step_samples_per_s(launcher: Launcher, repeats: int = 20) -> float:
    """Forward + backward + AdamW step of the benchmark's network on in-memory tensors: this machine's speed.

    The network, input size and batch come from the same configs and overrides as the benchmark's runs.
    """
    import time

    import torch
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in launcher.configs(["train.json"])])
    for key, value in launcher.overrides.items():
        parser[key] = value
    device = torch.device(parser.get_parsed_content("device"))
    network = parser.get_parsed_content("network_def").to(device)
    size, batch = parser.get_parsed_content("image_size"), parser.get_parsed_content("batch_size")
    optimizer = torch.optim.AdamW(network.parameters(), 1e-3)
    images = torch.rand(batch, 1, size, size, device=device)
    targets = torch.zeros(batch, 2, size // 4, size // 4, device=device)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(network(images), targets).backward()
        optimizer.step()

    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats * batch / (time.perf_counter() - start)


def _levels(settings: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """Per level: its teacher quality (validation rib AUROC) and AALS preconditions, mean over its seeds."""
    levels = []
    for level in settings["levels"]:
        pre, epochs, seeds_done = [], [], []
        for seed in level["seeds"]:
            folder = work / f"seed{seed}" / "stage1" / f"level_{level['name']}"
            if (folder / "preconditions.json").is_file():
                seeds_done.append(seed)
                pre.append(json.loads((folder / "preconditions.json").read_text()))
                epochs.append(json.loads((folder / "level.json").read_text())["epoch"])
        if not pre:
            continue

        def mean(key: str, items: list[dict[str, Any]] = pre) -> float:
            return float(np.mean([p[key] for p in items]))

        levels.append({
            "name": level["name"], "definition": {k: v for k, v in level.items() if k in ("epoch", "val_rib_auroc")},
            "seeds": level["seeds"], "stage1_epoch_per_seed": epochs,
            "teacher_val_rib_auroc": mean("val_rib_auroc"),
            "teacher_val_rib_auroc_per_seed": [p["val_rib_auroc"] for p in pre],
            "seeds_with_teacher": seeds_done,
            "teacher_val_clavicle_auroc": mean("val_clavicle_auroc"),
            "p_in_band": mean("p_in_band"), "p_above_t": mean("p_above_t"),
            "p_max_median": float(np.mean([p["p_max_quartiles"][1] for p in pre])),
            "p_target_max_median": float(np.mean([p["p_target_max_quartiles"][1] for p in pre])),
            "val_negative_above_t_rib": mean("val_negative_above_t_rib"),
            "val_negative_above_t_clavicle": mean("val_negative_above_t_clavicle"),
        })  # fmt: skip
    return levels


def _p_dose(settings: dict[str, Any], runs: list[dict[str, Any]], analysis: dict[str, Any]) -> list[dict[str, Any]]:
    """Top level: test rib AUROC and the gain over control against the number of P images used."""
    if not settings["p_dose"]:
        return []
    top = settings["levels"][-1]["name"]
    summary, intervals = analysis["summary_mean_sd"].get(top, {}), analysis["intervals"]
    doses = []
    for fraction, key in [(0.0, "control"), *((f, f"aals_p{f:g}") for f in settings["p_dose"]), (1.0, "aals")]:
        rows = [r for r in runs if r["level"] == top and (r["name"] == key or (key == "control" and r["arm"] ==
                "control") or (key == "aals" and r["arm"] == "aals" and r["name"] == "aals"))]  # fmt: skip
        if not rows or key not in summary:
            continue
        doses.append({
            "fraction": fraction, "num_p": int(np.mean([r.get("num_p", 0) for r in rows])),
            "rib_auroc": summary[key]["rib_auroc"], "rib_froc": summary[key]["rib_froc"],
            "gain_rib_auroc": intervals.get(f"{top}:{key}-control:rib_auroc"),
            "gain_rib_froc": intervals.get(f"{top}:{key}-control:rib_froc"),
        })  # fmt: skip
    return doses


def build_record(
    settings: dict[str, Any], bench: Benchmark, log: Progress, bare: float, launcher: Launcher
) -> dict[str, Any]:
    """The protocol's JSON record from the finished runs in the work folder."""
    runs = bench.results()
    tuned = bench.tuned() if settings.get("tuning") else None
    if tuned:  # v1: the AALS arm is the tuned configuration; the other tuning runs are left out
        chosen = f"aals_a{tuned['a0']:g}_d{tuned['ema_decay']:g}"
        runs = [r for r in runs if r["arm"] != "aals" or r["name"] == chosen]
    log("bootstrap over seeds and test images")
    analysis = analyse(settings, runs, log)
    counts = bench.counts(settings["training_seeds"][0])
    top_seed = settings["training_seeds"][0]
    record: dict[str, Any] = {
        "settings": settings,
        "counts": counts,
        "test_images": counts["test_images"],
        "test_rib_positive": counts["test_rib_positive"],
        "seeds": {level["name"]: level["seeds"] for level in settings["levels"]},
        "levels": _levels(settings, bench.work),
        "runs": runs,
        **analysis,
        "preconditions": {
            f"{level['name']}/seed{seed}": json.loads(p.read_text())
            for level in settings["levels"]
            for seed in level["seeds"]
            if (p := bench.level_dir(seed, level) / "preconditions.json").is_file()
        },
        "stage2_epochs": bench.stage2_epochs(top_seed),
        "minutes": round(log.minutes(), 1),
        "child_cpu_minutes": round(launcher.child_cpu_seconds / 60, 1),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "device": launcher.device or "config default",
            "network": launcher.network,
            "bare_step_samples_per_s": round(bare, 1),
        },
    }
    # the fewest passes any P arm made over its own P (the protocol's floor; the P-dose arms make more over less P)
    record["passes_over_p"] = float(min([r["passes_over_p"] for r in runs if r.get("passes_over_p")] or [0.0]))
    record["p_dose"] = _p_dose(settings, runs, analysis)
    record["stage1_spread"] = _stage1_spread(settings, runs, record["levels"])
    record["payoff"] = payoff(record["levels"], record["intervals"])
    record["compute"] = _compute(bench.work, runs)
    plan = bench.plan()
    record["planned_steps"] = len(plan)
    record["not_run"] = [step.name for step in plan if not step.done()]
    if tuned:
        record["tuning"] = tuned
    return record


def _compute(work: Path, runs: list[dict[str, Any]]) -> dict[str, float]:
    """What the finished steps cost, summed over every invocation that made them (a resumed benchmark's own wall time
    covers only its last invocation): stage-2 arms and teacher evaluations from their records, stage-1 training from
    the trainer's per-epoch times in each seed's logs (the last time logged for each epoch: a resumed epoch counts
    once)."""
    epoch_seconds = 0.0
    for stage1 in sorted(work.glob("seed*/stage1")):
        if not (stage1 / "checkpoint_final.pt").is_file():
            continue
        per_epoch: dict[int, float] = {}
        for log_file in sorted(stage1.parent.glob("stage1_run*.log"), key=lambda f: int(f.stem[len("stage1_run") :])):
            for match in _TRAINER_EPOCH.finditer(log_file.read_text()):
                hours, minutes, seconds = (float(v) for v in match.group(2, 3, 4))
                per_epoch[int(match.group(1))] = 3600 * hours + 60 * minutes + seconds
        epoch_seconds += sum(per_epoch.values())
    return {
        "stage2_and_teacher_minutes": round(sum(r.get("minutes") or 0.0 for r in runs), 1),
        "stage2_and_teacher_cpu_minutes": round(sum(r.get("child_cpu_minutes") or 0.0 for r in runs), 1),
        "stage1_trainer_minutes": round(epoch_seconds / 60, 1),
    }


_TRAINER_EPOCH = re.compile(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete\. Time taken: (\d+):(\d+):([\d.]+)")


def _stage1_spread(settings: dict[str, Any], runs: list[dict[str, Any]], levels: list[dict]) -> dict[str, Any]:
    """Stage 1 across the seeds' R draws: validation and test rib AUROC per seed, per level."""
    spread = {}
    for level in levels:
        rows = [r for r in runs if r["level"] == level["name"] and r["arm"] == "stage1"]
        rows.sort(key=lambda r: r["seed"])
        test = [r["rib_auroc"] for r in rows if r.get("rib_auroc") is not None]
        spread[level["name"]] = {
            "val_rib_auroc": level["teacher_val_rib_auroc_per_seed"],
            "test_rib_auroc": test,
            "test_rib_auroc_range": [min(test), max(test)] if test else None,
        }
    return spread


def _remember_bare_step(work: Path, value: float) -> list[float]:
    """Every invocation's bare-step figure in ``work/bare_steps.json``: on a shared machine the largest is the
    closest to the machine's own speed, and the record quotes it beside the list."""
    path = work / "bare_steps.json"
    values = json.loads(path.read_text()) if path.is_file() else []
    values.append(round(value, 1))
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values) + "\n")
    return values


def v1_record(record: dict[str, Any]) -> dict[str, Any]:
    """v1's record layout (one level, image-only intervals, preconditions per seed) from a generic record."""
    level = record["settings"]["levels"][0]["name"]
    prefix = f"{level}:"
    v1 = dict(record)
    v1["summary_mean_sd"] = record["summary_mean_sd"][level]
    v1["intervals"] = {k[len(prefix) :]: v for k, v in record["intervals_images"].items() if k.startswith(prefix)}
    v1["preconditions"] = {k.split("/seed")[1]: v for k, v in record["preconditions"].items()}
    return v1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=[*PROTOCOLS, "v2-pilot"], default="v2", help="protocol (default v2)")
    parser.add_argument("--work-dir", type=Path, default=None, help="data, models and logs (runs/ablation_<p>)")
    parser.add_argument("--device", default=None, help="e.g. cuda or cpu (default: the config's choice)")
    parser.add_argument(
        "--network",
        choices=["light", "default"],
        default="light",
        help="light = configs/demo.json (CPU); default = ResNet-50 + FPN at 512 px (GPU)",
    )
    parser.add_argument("--budget-minutes", type=float, default=None, help="start no new step after this")
    parser.add_argument("--in-process", action="store_true", help="run the bundle workflows in this process")
    parser.add_argument(
        "--only",
        choices=["stage1"],
        default=None,
        help="stage1: run the stage-1 segments and teacher levels only, then stop",
    )
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here instead of bundle/docs")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only, leave the model card")
    parser.add_argument("--record-finished", action="store_true",
                        help="v2-pilot: write the record from the finished runs, run nothing")  # fmt: skip
    parser.add_argument("--from-json", type=Path, default=None, help="only rewrite the docs from this record")
    args = parser.parse_args(argv)
    if args.from_json:
        record = json.loads(args.from_json.read_text())
        write_docs(record)
        write_metadata(eval_metrics(record))
        print(f"rewrote the model-card section of {record['settings']['protocol']}, its figures and eval_metrics")
        return 0
    work = (args.work_dir or REPO / "runs" / f"ablation_{args.protocol}").resolve()
    log = Progress()
    if args.protocol == "v2-pilot":
        from ablation_pilot import run_pilot

        launcher = Launcher(args.network, args.device, in_process=args.in_process)
        record = run_pilot(settings_for("v2"), work, launcher, log, run=not args.record_finished)
        target = args.output or DOCS / "ablation_v2_pilot.json"
        target.write_text(json.dumps(record, indent=1) + "\n")
        log(f"wrote {target}")
        return 0
    settings = settings_for(args.protocol)
    overrides = dict(settings.get("bundle_overrides", {}))
    if args.network == "light":
        overrides.update(settings.get("light_network_overrides", {}))
    overrides["cache_dir"] = work / "cache"  # one preprocessed store for every run of the benchmark
    launcher = Launcher(args.network, args.device, overrides, in_process=args.in_process)
    bare = bare_step_samples_per_s(launcher, repeats=3 if args.protocol.endswith("tiny") else 20)
    log(f"bare training step on this machine: {bare:.1f} samples/s ({args.network} network)")
    bench = Benchmark(settings, work, launcher, log)
    bare_steps = _remember_bare_step(work, bare)
    bench.prepare_pool()
    bench.check_counts()
    bench.execute(args.budget_minutes, args.only)
    if args.only:
        log(f"--only {args.only}: stopping before the record")
        return 0
    record = build_record(settings, bench, log, max(bare_steps), launcher)
    record["machine"]["bare_step_measurements"] = bare_steps
    if args.protocol == "v1":
        record = v1_record(record)
    target = args.output or (work / settings["output"] if args.protocol.endswith("tiny") else DOCS / settings["output"])
    target.write_text(json.dumps(record, indent=1) + "\n")
    if not (args.no_docs or args.output or args.protocol.endswith("tiny")):
        write_docs(record)
        write_metadata(eval_metrics(record))
    log(f"done; wrote {target}")
    print(markdown_v1(record) if args.protocol == "v1" else markdown_v2(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
