"""Federated benchmark: how much of the centralised result a consortium of three phantom sites keeps.

Follows ``bundle/docs/federated_protocol.md`` (read it first: sites, arms, sizes, statistics, decision rules). In
short, from the method benchmark's phantom pool (R 48, P 432, N 1,120), dealt to site A (R + N), B and C (P + N):

* ``site_a``: federated stage 1 at site A (the only R site) in the FLARE simulator, calibrated on A's validation;
* ``central_stage1`` / ``central``: the bundle's stage 1 and stage 2 on the pooled data (bundle commands);
* ``fed`` / ``fed_local`` / ``fed_control``: federated stage 2 at A, B, C from ``site_a`` (teacher policy
  ``global`` / ``local``; control: B and C without their P);

every model is evaluated on the pool's test split, which no site holds. It writes ``bundle/docs/federated.json``
(settings, site counts, one record per arm and seed, hierarchical bootstrap intervals, wall and CPU time, the
machine's bare-step figure) and the tables between the ``federated`` markers of the model card
(``bundle/docs/README.md``).

Every training and evaluation is the bundle's own: bundle commands for the central arms, ``fl/job.py``'s FLARE job
(``MonaiAlgo`` on the same configs) for the federated ones. A finished step leaves its result in the work folder and
is skipped when the command is run again. ``--from-json`` only rewrites the model card section.

Example (about 60 CPU-minutes; needs ``requirements-fl.txt``)::

    .venv/bin/python scripts/benchmark_federated.py --work-dir runs/federated
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import repo_paths  # noqa: F401  (bundle, repository root and fl/ on the import path)

import numpy as np
from ablation_data import derive_datalists, subset_counts
from ablation_runner import Launcher
from ablation_settings import settings_for
from ablation_stats import (
    auroc,
    bootstrap_indices,
    froc,
    hierarchical_interval,
    paired_interval,
    read_outcomes,
    seed_draws,
)
from benchmark_ablation import bare_step_samples_per_s
from bundle_command import run_bundle
from cxr_fl.jobs import build_job
from cxr_fl.sites import split_sites, write_site_datalists

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "bundle" / "docs"

#: Everything that defines the benchmark (see bundle/docs/federated_protocol.md); recorded in federated.json.
SETTINGS: dict[str, Any] = {
    "pool": copy.deepcopy(settings_for("v1")["pool"]),  # the method benchmark's v1 pool (the protocol says so)
    "num_r": 48,
    "derivation_seed": 0,
    "sites": {"site-a": ["R", "N"], "site-b": ["P", "N"], "site-c": ["P", "N"]},
    "site_seed": 0,
    "network": "configs/demo.json (ResNet 1-1-1-1, widths 16-128, FPN 32), 256 px input, batch 16",
    "training_seeds": [0, 1, 2],
    "stage1": {
        "epochs": 16,
        "samples_per_epoch": 512,
        "learning_rate": 0.002,
        "pos_weight": 10.0,
        "fl_rounds": 4,
        "fl_local_epochs": 4,
    },
    "stage2": {
        "central_epochs": 4,
        "central_samples_per_epoch": 512,
        "fl_rounds": 8,
        "fl_local_epochs": 1,
        "fl_samples_per_epoch": 256,
        "learning_rate": 0.0005,
        "pos_weight": 1.0,
        "ema_decay": 0.99,
        "a0": 4.0,
        "t": 0.4,
    },
    "arms": ["site_a", "central_stage1", "central", "fed", "fed_local", "fed_control"],
    "froc_fp_rates": [0.1, 0.2, 0.3, 0.4],
    "bootstrap": {"resamples": 2000, "seed": 0, "level": 0.95, "kind": "seeds, then test images (hierarchical)"},
    "margins": {"auroc": 0.02, "froc": 0.03},
    "selection": "none: every arm's last model (stage 1 after its last epoch or round, stage 2 the student)",
}
ARM_LABELS = {
    "site_a": "site A alone (federated stage 1, R + N)",
    "central_stage1": "centralised stage 1 (pooled R + N)",
    "central": "centralised stage 2 (pooled R + N + P)",
    "fed": "federated stage 2, global teacher",
    "fed_local": "federated stage 2, local teacher",
    "fed_control": "federated stage 2, B and C without P",
}
#: (arm A, arm B) pairs whose paired differences A - B get intervals.
COMPARISONS = [("fed", "central"), ("fed", "site_a"), ("fed", "fed_control"), ("fed_local", "fed")]
COMPARISONS += [("central", "site_a")]
CLASSES = ("rib", "clavicle")
METRICS = ("auroc", "froc")
MARK_START, MARK_END = "<!-- federated:start -->", "<!-- federated:end -->"
#: Seconds one FLARE job may run before the benchmark stops it (far above a job's expected time on a loaded machine).
JOB_TIMEOUT = 3 * 3600


class Progress:
    """Elapsed-time log lines."""

    def __init__(self) -> None:
        self.started = time.time()

    def __call__(self, message: str) -> None:
        print(f"[federated {(time.time() - self.started) / 60:6.1f} min] {message}", flush=True)


log = Progress()


def store_dir(data: Path) -> Path:
    """The benchmark's one preprocessed store (``cache_dir``), beside the pool in the work folder: every central run,
    calibration, evaluation and federated site reads it. The phantom sites share one machine and one pool, so they
    share one store here; a real site keeps its own (``<work_dir>/cache``, ``cxr_fl.client.bundle_overrides``)."""
    return data.parent / "cache"


# ----------------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------------


def prepare_data(data: Path) -> dict[str, Any]:
    """Generate the pool once (the method benchmark's), derive ``semi.json`` and the site datalists beside it."""
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
    generator = json.loads((data / "datalist.json").read_text()).get("generator", {})
    for key, value in pool.items():  # a pool made elsewhere must be the protocol's pool
        recorded = generator.get("image_format" if key == "format" else key)
        if recorded is not None and recorded != value:
            raise ValueError(f"{data / 'datalist.json'}: generator {key} = {recorded!r}, the protocol says {value!r}")
    semi, _ = derive_datalists(
        json.loads((data / "datalist.json").read_text()), SETTINGS["num_r"], SETTINGS["derivation_seed"]
    )
    (data / "semi.json").write_text(json.dumps(semi, indent=1) + "\n")
    sites = split_sites(semi, SETTINGS["sites"], SETTINGS["site_seed"])
    write_site_datalists(data, sites)
    controls = {}
    for name, content in sites.items():
        if "P" in SETTINGS["sites"][name]:  # the control arm: the same site without its P images
            control = dict(content, training=[item for item in content["training"] if item["subset"] != "P"])
            controls[f"{name}_no_p"] = control
    write_site_datalists(data, controls)
    counts = subset_counts(semi)
    counts["sites"] = {name: content["site"]["counts"] for name, content in sites.items()}
    log(f"datalists: {counts}")
    if counts["test_images"] < 600:
        log("WARNING: the test split is smaller than the protocol asks (>= 600 images)")
    return counts


# ----------------------------------------------------------------------------------------------------------------
# federated runs (FLARE simulator)
# ----------------------------------------------------------------------------------------------------------------


def run_federated(
    stage: int,
    data: Path,
    site_lists: dict[str, str],
    out: Path,
    seed: int,
    rounds: int,
    local_epochs: int,
    overrides: dict[str, Any],
    teacher: str = "global",
    initial_ckpt: Path | None = None,
) -> tuple[Path, float]:
    """Run one FLARE job in the simulator; returns the final global model (a copy in ``out``) and its wall seconds.

    Args:
        site_lists: FLARE site name -> datalist file name in ``data`` (e.g. ``site-b_no_p.json``).
    """
    model = out / "global_model.pt"
    if model.is_file():
        return model, json.loads((out / "run.json").read_text())["seconds"]
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    settings = {
        site: {
            "dataset_dir": str(data),
            "datalist": str(data / datalist),
            "bundle_root": str(REPO / "bundle"),
            "work_dir": str(out / "sites" / site),
            "overrides": {"cache_dir": str(store_dir(data))},
        }
        for site, datalist in site_lists.items()
    }
    (out / "sites.json").write_text(json.dumps(settings, indent=1) + "\n")
    configs = ["train.json", "demo.json"] if stage == 1 else ["train.json", "distill.json", "demo.json"]
    job_dir = build_job(
        stage=stage, sites=list(site_lists), rounds=rounds, configs=configs, out_dir=out / "job",
        initial_ckpt=initial_ckpt, overrides=overrides, local_epochs=local_epochs, teacher=teacher, seed=seed,
        validate_every=0,
    )  # fmt: skip
    env = dict(os.environ, CXR_FL_SITE_CONFIG=str(out / "sites.json"))
    if len(site_lists) > 1:  # one process per site on a 2-core machine: one thread each
        env["OMP_NUM_THREADS"] = "1"
    command = [str(Path(sys.executable).with_name("nvflare")), "simulator", str(job_dir), "-w", str(out / "ws")]
    command += ["-c", ",".join(site_lists), "-t", str(len(site_lists))]
    started = time.time()
    with (out / "simulator.log").open("w") as handle:
        process = subprocess.Popen(
            command, env=env, cwd=out, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:  # a job that cannot finish (e.g. a site that never answers) must not hang the benchmark
            process.wait(timeout=JOB_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)  # the simulator and its site processes
            process.wait()
            handle.write(f"\n[benchmark] simulator stopped after {JOB_TIMEOUT} s\n")
    seconds = time.time() - started
    text = (out / "simulator.log").read_text()
    produced = out / "ws" / "server" / "simulate_job" / "app_server" / "FL_global_model.pt"
    # an aborted job (e.g. a site failed and the quorum could not be reached) still prints "Finished FedAvg" and
    # writes FL_global_model.pt with the results that had arrived: the exit status and the abort line tell it apart
    aborted = process.returncode != 0 or "Aborting current RUN" in text
    if aborted or "Finished FedAvg" not in text or not produced.is_file():
        tail = "\n".join(text.splitlines()[-30:])
        raise RuntimeError(f"FLARE job failed (log: {out / 'simulator.log'}):\n{tail}")
    site_cpu = {}  # each site process logs its own CPU time when the job ends (cxr_fl.client)
    for log_file in sorted((out / "ws").glob("site-*/log.txt")):
        found = re.findall(r"finished: ([0-9.]+) CPU seconds", log_file.read_text())
        if found:
            site_cpu[log_file.parent.name] = float(found[-1])
    (out / "run.json").write_text(json.dumps({"seconds": round(seconds, 1), "site_cpu_seconds": site_cpu}) + "\n")
    shutil.copyfile(produced, model)
    return model, seconds


def teacher_quartiles(out: Path) -> dict[str, list[list[float]]]:
    """Per site, the AALS handler's per-epoch quartiles of the teacher's P-map maxima (from the site logs)."""
    result = {}
    for log_file in sorted((out / "ws").glob("site-*/log.txt")):
        found = re.findall(r"teacher map maxima.*quartiles ([0-9.]+) / ([0-9.]+) / ([0-9.]+)", log_file.read_text())
        if found:
            result[log_file.parent.name] = [[float(v) for v in q] for q in found]
    return result


# ----------------------------------------------------------------------------------------------------------------
# arms of one seed
# ----------------------------------------------------------------------------------------------------------------


def evaluate(data: Path, checkpoint: Path, out: Path) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the pool's test split (bundle command, no overlay crops); per-class AUROC, FROC
    (mean sensitivity at the paper's FP rates) and ECE of the image scores."""
    if not (out / "metrics.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        run_bundle(
            "evaluating",
            ["train.json", "evaluate.json", "demo.json"],
            {"dataset_dir": data, "datalist": data / "semi.json", "ckpt_path": checkpoint, "output_dir": out,
             "validate#handlers#3#num_overlays": 0, "cache_dir": store_dir(data)},
            out.parent / f"{out.name}.log",
        )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())["classes"]
    result: dict[str, Any] = {f"{c}_auroc": metrics[c]["auroc"] for c in CLASSES}
    result.update({f"{c}_froc": metrics[c]["froc_paper"] for c in CLASSES})
    result.update({f"{c}_ece": metrics[c].get("expected_calibration_error") for c in CLASSES})
    return result


def share_interval(
    values_fed: np.ndarray, values_base: np.ndarray, values_central: np.ndarray, seeds: np.ndarray, level: float = 0.95
) -> dict[str, float]:
    """Share of the centralised gain kept, ``(fed - base) / (central - base)``, with its hierarchical interval.

    The arrays are ``(S, 1 + R)`` per-seed metrics on the full test set then on ``R`` image resamples, ``seeds`` the
    ``(1 + R, S)`` seed draws (:func:`ablation_stats.seed_draws`). The ratio of the two seed-mean differences is
    formed on every resample (the same seeds and images for both), so the interval carries their correlation.
    Resamples whose denominator is not positive are left out and counted (``dropped``): the ratio is only read
    where ``central - base`` is resolved above 0.
    """

    def seed_mean(diff: np.ndarray) -> np.ndarray:
        return np.nanmean(diff[seeds, np.arange(diff.shape[1])[:, None]], axis=1)

    gain = seed_mean(np.asarray(values_fed, np.float64) - np.asarray(values_base, np.float64))
    ceiling = seed_mean(np.asarray(values_central, np.float64) - np.asarray(values_base, np.float64))
    valid = ceiling[1:] > 0
    ratio = gain[1:][valid] / ceiling[1:][valid]
    tail = (1.0 - level) / 2 * 100
    lower, upper = np.nanpercentile(ratio, [tail, 100 - tail]) if ratio.size else (np.nan, np.nan)
    share = gain[0] / ceiling[0] if ceiling[0] > 0 else np.nan
    return {"share": float(share), "lower": float(lower), "upper": float(upper), "dropped": int((~valid).sum())}


def calibrate(data: Path, checkpoint: Path, datalist: str, calibrated: Path, log_file: Path) -> Path:
    """Platt calibration of ``checkpoint`` on the validation split of ``datalist`` (bundle command)."""
    if not calibrated.is_file():
        run_bundle(
            "calibrating",
            ["train.json", "calibrate.json", "demo.json"],
            {
                "dataset_dir": data,
                "datalist": data / datalist,
                "ckpt_path": checkpoint,
                "calibrated_path": calibrated,
                "cache_dir": store_dir(data),
            },
            log_file,
        )
    return calibrated


def record(arm: str, seed: int, root: Path, checkpoint: Path, data: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the test split (cached) and return the arm's record."""
    result_file = root / f"{arm}.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    eval_dir = root / f"eval_{arm}"
    result = {"arm": arm, "seed": seed, **extra, **evaluate(data, checkpoint, eval_dir), "eval_dir": str(eval_dir)}
    result_file.write_text(json.dumps(result, indent=2) + "\n")
    log(f"seed {seed}: {arm}: test {_short(result)}")
    return result


def _short(result: dict) -> str:
    return ", ".join(f"{c} {m} {result[f'{c}_{m}']:.3f}" for c in CLASSES for m in METRICS)


def stage1_overrides() -> dict[str, Any]:
    s1 = SETTINGS["stage1"]
    return {
        "train#samples_per_epoch": s1["samples_per_epoch"], "learning_rate": s1["learning_rate"],
        "loss#pos_weight": s1["pos_weight"], "tensorboard_overlays": 0,
    }  # fmt: skip


def stage2_overrides(samples_per_epoch: int) -> dict[str, Any]:
    s2 = SETTINGS["stage2"]
    return {
        "train#samples_per_epoch": samples_per_epoch, "learning_rate": s2["learning_rate"],
        "loss#pos_weight": s2["pos_weight"], "ema_decay": s2["ema_decay"], "aals_a0": s2["a0"], "aals_t": s2["t"],
        "target_variant": "aals", "tensorboard_overlays": 0,
    }  # fmt: skip


def run_seed(data: Path, seed: int, work: Path) -> list[dict[str, Any]]:
    """Every arm of one training seed."""
    root = work / f"seed{seed}"
    root.mkdir(parents=True, exist_ok=True)
    s1, s2 = SETTINGS["stage1"], SETTINGS["stage2"]
    runs = []

    # site A alone = federated stage 1 (A is the only site with boxed positives), calibrated on A's validation
    log(f"seed {seed}: site_a (FLARE stage 1 at site-a, {s1['fl_rounds']} rounds x {s1['fl_local_epochs']} epochs)")
    fed1, seconds = run_federated(
        1, data, {"site-a": "site-a.json"}, root / "site_a", seed, s1["fl_rounds"], s1["fl_local_epochs"],
        stage1_overrides(),
    )  # fmt: skip
    site_a = calibrate(data, fed1, "site-a.json", root / "site_a" / "model_calibrated.pt", root / "site_a_cal.log")
    runs.append(record("site_a", seed, root, site_a, data, {"train_seconds": round(seconds, 1)}))

    # centralised stage 1 on the pooled R + N; its last epoch's model (validated once, at the end)
    central1_dir = root / "central_stage1"
    if not (central1_dir / "model.pt").is_file():
        log(f"seed {seed}: central_stage1 ({s1['epochs']} x {s1['samples_per_epoch']} samples, pooled R + N)")
        started = time.time()
        run_bundle(
            "training",
            ["train.json", "demo.json"],
            {
                "dataset_dir": data, "datalist": data / "semi.json", "cache_dir": store_dir(data), "seed": seed,
                "ckpt_dir": central1_dir,
                "output_dir": central1_dir / "runs", "train#trainer#max_epochs": s1["epochs"],
                "val_interval": s1["epochs"], **stage1_overrides(),
            },
            root / "central_stage1.log",
        )  # fmt: skip
        (central1_dir / "run.json").write_text(json.dumps({"seconds": round(time.time() - started, 1)}) + "\n")
    central1 = calibrate(
        data, central1_dir / "model.pt", "semi.json", central1_dir / "model_calibrated.pt", root / "central_cal.log"
    )
    seconds = json.loads((central1_dir / "run.json").read_text())["seconds"]
    runs.append(record("central_stage1", seed, root, central1, data, {"train_seconds": seconds}))

    # centralised stage 2 on the pooled R + N + P; the student after the last epoch
    central2_dir = root / "central"
    if not (central2_dir / "model.pt").is_file():
        log(f"seed {seed}: central ({s2['central_epochs']} x {s2['central_samples_per_epoch']} samples, pooled)")
        started = time.time()
        text = run_bundle(
            "training",
            ["train.json", "distill.json", "demo.json"],
            {
                "dataset_dir": data, "datalist": data / "semi.json", "cache_dir": store_dir(data), "seed": seed,
                "stage1_checkpoint": central1,
                "ckpt_dir": central2_dir, "output_dir": central2_dir / "runs",
                "train#trainer#max_epochs": s2["central_epochs"], "val_interval": s2["central_epochs"],
                **stage2_overrides(s2["central_samples_per_epoch"]),
            },
            root / "central.log",
        )  # fmt: skip
        quartiles = re.findall(r"teacher map maxima.*quartiles ([0-9.]+) / ([0-9.]+) / ([0-9.]+)", text)
        run_info = {"seconds": round(time.time() - started, 1), "teacher_p_max_quartiles": quartiles}
        (central2_dir / "run.json").write_text(json.dumps(run_info) + "\n")
    info = json.loads((central2_dir / "run.json").read_text())
    runs.append(
        record(
            "central", seed, root, central2_dir / "model.pt", data,
            {"train_seconds": info["seconds"], "teacher_p_max_quartiles": info["teacher_p_max_quartiles"]},
        )
    )  # fmt: skip

    # federated stage 2 at A, B, C from site A's calibrated model
    fed_sites = {"site-a": "site-a.json", "site-b": "site-b.json", "site-c": "site-c.json"}
    control_sites = {"site-a": "site-a.json", "site-b": "site-b_no_p.json", "site-c": "site-c_no_p.json"}
    for arm, sites, teacher in (
        ("fed", fed_sites, "global"),
        ("fed_local", fed_sites, "local"),
        ("fed_control", control_sites, "global"),
    ):
        log(f"seed {seed}: {arm} (FLARE stage 2 at {len(sites)} sites, {s2['fl_rounds']} rounds, teacher {teacher})")
        model, seconds = run_federated(
            2, data, sites, root / arm, seed, s2["fl_rounds"], s2["fl_local_epochs"],
            stage2_overrides(s2["fl_samples_per_epoch"]), teacher=teacher, initial_ckpt=site_a,
        )  # fmt: skip
        extra = {"train_seconds": round(seconds, 1), "teacher_p_max_quartiles": teacher_quartiles(root / arm)}
        extra["site_cpu_seconds"] = json.loads((root / arm / "run.json").read_text()).get("site_cpu_seconds", {})
        runs.append(record(arm, seed, root, model, data, extra))
    return runs


# ----------------------------------------------------------------------------------------------------------------
# statistics and docs
# ----------------------------------------------------------------------------------------------------------------


def intervals(runs: list[dict]) -> dict[str, Any]:
    """Hierarchical (seeds, then images) and images-only paired intervals for every comparison; share kept."""
    boot = SETTINGS["bootstrap"]
    seeds = sorted({r["seed"] for r in runs})
    by_key = {(r["arm"], r["seed"]): r for r in runs}
    arms = SETTINGS["arms"]
    outcomes = {
        (arm, s): read_outcomes(Path(by_key[(arm, s)]["eval_dir"]) / "detections.json", CLASSES)
        for arm in arms
        for s in seeds
    }
    index = bootstrap_indices(outcomes[(arms[0], seeds[0])][CLASSES[0]].num_images, boot["resamples"], boot["seed"])
    draws = seed_draws(len(seeds), boot["resamples"], boot["seed"])
    rates = SETTINGS["froc_fp_rates"]
    values: dict[tuple[str, str, str], np.ndarray] = {}
    for arm in arms:
        for cls in CLASSES:
            per_seed = [outcomes[(arm, s)][cls] for s in seeds]
            values[(arm, cls, "auroc")] = np.array([[auroc(o, i) for i in index] for o in per_seed])
            values[(arm, cls, "froc")] = np.array([[froc(o, i, rates) for i in index] for o in per_seed])
        log(f"bootstrap: {arm} done")
    result: dict[str, Any] = {"comparisons": {}, "share_kept": {}}
    for a, b in COMPARISONS:
        for cls in CLASSES:
            for metric in METRICS:
                entry = hierarchical_interval(values[(a, cls, metric)], values[(b, cls, metric)], draws, boot["level"])
                images = paired_interval(values[(a, cls, metric)], values[(b, cls, metric)], boot["level"])
                entry["images_only"] = {"lower": images["lower"], "upper": images["upper"]}
                result["comparisons"][f"{a}-{b}:{cls}_{metric}"] = entry
    for cls in CLASSES:
        for metric in METRICS:
            result["share_kept"][f"{cls}_{metric}"] = share_interval(
                values[("fed", cls, metric)], values[("site_a", cls, metric)], values[("central", cls, metric)], draws
            )
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
    """The protocol's rule for one paired difference."""
    if entry["lower"] > 0:
        return "above"
    if entry["upper"] < 0:
        return "below"
    return "not resolved"


def non_inferiority(entry: dict[str, float], metric: str) -> str:
    """Question 1's rule for ``fed - central``."""
    if entry["upper"] < 0:
        return "worse"
    if entry["lower"] > -SETTINGS["margins"][metric]:
        return "non-inferior"
    return "inconclusive"


def markdown(record: dict[str, Any]) -> str:
    """The model card's tables and their caption."""
    summary, comparisons = record["summary_mean_sd"], record["intervals"]["comparisons"]
    columns = [f"{c}_{m}" for c in CLASSES for m in METRICS]
    lines = ["| arm | rib AUROC | rib FROC | clavicle AUROC | clavicle FROC |", "| --- " * 5 + "|"]
    for arm in SETTINGS["arms"]:
        cells = [f"{summary[arm][c][0]:.3f} ± {summary[arm][c][1]:.3f}" for c in columns]
        lines.append(f"| {ARM_LABELS[arm]} | " + " | ".join(cells) + " |")
    lines += ["", "| paired difference | rib AUROC | rib FROC | clavicle AUROC | clavicle FROC |", "| --- " * 5 + "|"]
    for a, b in COMPARISONS:
        cells = []
        for c in columns:
            e = comparisons[f"{a}-{b}:{c}"]
            rule = non_inferiority(e, c.split("_")[1]) if (a, b) == ("fed", "central") else verdict(e)
            cells.append(f"{e['difference']:+.3f} [{e['lower']:+.3f}, {e['upper']:+.3f}] {rule}")
        lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    share = record["intervals"]["share_kept"]
    share_cells = []
    for c in columns:
        e = share[c]
        resolved = verdict(comparisons[f"central-site_a:{c}"]) == "above"
        share_cells.append(f"{e['share']:.2f} [{e['lower']:.2f}, {e['upper']:.2f}]" if resolved else "— (no gain)")
    lines.append("| share of the centralised gain kept | " + " | ".join(share_cells) + " |")
    pool, s1, s2, machine = SETTINGS["pool"], SETTINGS["stage1"], SETTINGS["stage2"], record["machine"]
    site_counts = "; ".join(
        f"{name}: " + ", ".join(f"{k} {v}" for k, v in counts.items() if v)
        for name, counts in record["counts"]["sites"].items()
    )
    lines += [
        "",
        f"Test split: {record['counts']['test_images']} images ({record['counts']['test_rib_positive']} "
        f"rib-positive), at no site, of the method benchmark's phantom pool (seed {pool['seed']}, {pool['size']} px, "
        f"zoom {pool['zoom']}, difficulty {pool['difficulty']}). Sites ({site_counts}). Mean ± s.d. over training "
        f"seeds {SETTINGS['training_seeds']}; differences are seed means with hierarchical paired bootstrap 95 % "
        f"intervals (seeds, then test images; {SETTINGS['bootstrap']['resamples']} resamples). 'above'/'below': the "
        f"interval excludes 0; fed − central: 'non-inferior' when the lower bound is above −"
        f"{SETTINGS['margins']['auroc']} (AUROC) / −{SETTINGS['margins']['froc']} (FROC). Stage 1 "
        f"{s1['epochs']} × {s1['samples_per_epoch']} samples (federated: {s1['fl_rounds']} rounds × "
        f"{s1['fl_local_epochs']} local epochs at site A), Platt-calibrated on the calibrating site's validation; "
        f"stage 2 central {s2['central_epochs']} × {s2['central_samples_per_epoch']} samples, federated "
        f"{s2['fl_rounds']} rounds × {s2['fl_samples_per_epoch']} samples per site (the same 128 steps per site), "
        f"a0 {s2['a0']:g}, EMA decay {s2['ema_decay']:g}; every arm's last model. Wall time {record['minutes']:.0f} "
        f"min{cpu_caption(record)}, on {machine['cpus']} CPU cores shared with other work; "
        f"this machine's bare training step at the start and the end: {machine['bare_step_samples_per_s']:.1f} and "
        f"{machine.get('bare_step_samples_per_s_at_end', float('nan')):.1f} samples/s (the probe shares the machine "
        "too; compare only with figures measured in the same run). Reproduce:"
        " `.venv/bin/python scripts/benchmark_federated.py` (protocol: "
        "`federated_protocol.md`); raw numbers in `federated.json`.",
    ]
    return "\n".join(lines)


def cpu_caption(record: dict[str, Any]) -> str:
    """``", N CPU-minutes"``, saying so when some attempts were killed before they could record their CPU time."""
    missing = record.get("attempts_without_cpu_time", 0)
    if not missing:
        return f", {record['cpu_minutes']:.0f} CPU-minutes"
    return (
        f" in {record['attempts']} attempts, {record['cpu_minutes']:.0f} CPU-minutes in those that recorded it "
        f"({missing} stopped by a signal did not)"
    )


def write_docs(record: dict[str, Any]) -> None:
    readme = DOCS / "README.md"
    text = readme.read_text()
    block = f"{MARK_START}\n{markdown(record)}\n{MARK_END}"
    if MARK_START in text:
        before, rest = text.split(MARK_START, 1)
        text = before + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.replace("## Commands", f"### Federated benchmark\n\n{block}\n\n## Commands", 1)
    readme.write_text(text)


def cpu_minutes() -> float:
    """CPU time (user + system) of this process and every finished child process, in minutes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime) / 60


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "federated", help="data, models and logs")
    parser.add_argument("--seeds", type=int, nargs="+", default=SETTINGS["training_seeds"], help="training seeds")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here, leave the docs (probes)")
    parser.add_argument("--from-json", action="store_true", help="only rewrite the model card from federated.json")
    args = parser.parse_args(argv)
    if args.from_json:
        record_ = json.loads((DOCS / "federated.json").read_text())
        SETTINGS.update(record_["settings"])
        write_docs(record_)
        print(f"rewrote the federated section of {DOCS / 'README.md'}")
        return 0
    SETTINGS["training_seeds"] = args.seeds
    work = args.work_dir.resolve()
    data = work / "data"
    work.mkdir(parents=True, exist_ok=True)
    attempts_file = work / "attempts.json"  # an interrupted run resumes from its cached steps: count every attempt
    attempts = json.loads(attempts_file.read_text()) if attempts_file.is_file() else []
    bare = None

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # so that ``finally`` records this attempt's time

    signal.signal(signal.SIGTERM, stop)
    try:
        bare = bare_step_samples_per_s(Launcher())
        log(f"bare training step on this machine: {bare:.1f} samples/s")
        counts = prepare_data(data)
        runs = []
        for seed in args.seeds:
            runs += run_seed(data, seed, work)
    finally:
        attempt = {"minutes": (time.time() - log.started) / 60, "cpu_minutes": cpu_minutes(), "bare_step": bare}
        attempts_file.write_text(json.dumps([*attempts, attempt], indent=1) + "\n")
    bare_first = next(a["bare_step"] for a in [*attempts, attempt] if a["bare_step"] is not None)
    bare_end = bare_step_samples_per_s(Launcher())
    log(f"bare training step on this machine at the end: {bare_end:.1f} samples/s")
    log("hierarchical paired bootstrap")
    result: dict[str, Any] = {
        "settings": SETTINGS,
        "counts": counts,
        "runs": runs,
        "summary_mean_sd": summarize(runs),
        "intervals": intervals(runs),
        "minutes": round(sum(a["minutes"] for a in attempts) + (time.time() - log.started) / 60, 1),
        # an attempt killed before it could record its CPU time (``cpu_minutes`` null) is left out of the sum
        "cpu_minutes": round(sum(a["cpu_minutes"] or 0.0 for a in attempts) + cpu_minutes(), 1),
        "attempts": len(attempts) + 1,
        "attempts_without_cpu_time": sum(a["cpu_minutes"] is None for a in attempts),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "bare_step_samples_per_s": round(bare_first, 1),
            "bare_step_samples_per_s_at_end": round(bare_end, 1),
            "shared": "yes: other engineers' benchmarks and tests ran on the same 2 cores",
        },
    }
    target = args.output or DOCS / "federated.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    if args.output is None:
        write_docs(result)
    log(f"done; wrote {target}" + ("" if args.output else " and the model card section"))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
