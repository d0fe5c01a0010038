"""The method benchmark's statistics and documents: summaries, bootstrap intervals, tables, plots, model card.

* :func:`analyse` turns the runs of a protocol into its JSON record's numbers: per arm and level the mean and s.d.
  over seeds, and for every comparison of the protocol a paired interval over test images (``intervals_images``)
  and, for v2, a hierarchical one over seeds then test images (``intervals``, the one the decision rule uses).
* :func:`markdown_v1` / :func:`markdown_v2` render the model-card sections between their markers;
  :func:`plot_differences` and :func:`plot_levels` draw the figures; :func:`write_docs` writes them all.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from ablation_settings import ARM_LABELS, CLASSES, METRICS
from ablation_stats import (
    auroc,
    bootstrap_indices,
    froc,
    hierarchical_interval,
    paired_interval,
    read_outcomes,
    seed_draws,
)

__all__ = [
    "analyse",
    "eval_metrics",
    "markdown_v1",
    "markdown_v2",
    "payoff",
    "verdict",
    "write_docs",
    "write_metadata",
]

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "bundle" / "docs"
CONFIGS = REPO / "bundle" / "configs"
MARKERS = {
    "v1": ("<!-- ablation:start -->", "<!-- ablation:end -->"),
    "v2": ("<!-- ablation-v2:start -->", "<!-- ablation-v2:end -->"),
}
EVAL_METRICS = {
    "phantom_test_rib_auroc": ("rib", "auroc"),
    "phantom_test_rib_froc": ("rib", "froc"),
    "phantom_test_clavicle_auroc": ("clavicle", "auroc"),
    "phantom_test_clavicle_froc": ("clavicle", "froc"),
}


def run_key(run: dict[str, Any]) -> str:
    """The arm label a comparison names: the arm, or ``aals_p<fraction>`` for a P-dose run."""
    if run["arm"] == "aals" and run.get("name", "").startswith("aals_p"):
        return run["name"]
    return run["arm"]


def verdict(entry: dict[str, float]) -> str:
    """The protocol's decision rule for one paired difference."""
    if entry["lower"] > 0:
        return "higher"
    if entry["upper"] < 0:
        return "lower"
    return "not resolved"


# --------------------------------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    """``{level: {arm: {"<class>_<metric>": [mean, s.d.]}}}`` over seeds."""
    summary: dict[str, dict[str, dict[str, list[float]]]] = {}
    for run in runs:
        summary.setdefault(run["level"], {}).setdefault(run_key(run), {})
    for level, arms in summary.items():
        for arm in arms:
            rows = [r for r in runs if r["level"] == level and run_key(r) == arm]
            for cls in CLASSES:
                for metric in METRICS:
                    values = np.array([np.nan if r.get(f"{cls}_{metric}") is None else r[f"{cls}_{metric}"]
                                       for r in rows], dtype=float)  # fmt: skip
                    sd = float(np.nanstd(values, ddof=1)) if np.sum(~np.isnan(values)) > 1 else float("nan")
                    arms[arm][f"{cls}_{metric}"] = [float(np.nanmean(values)), sd]
            arms[arm]["seeds"] = sorted(r["seed"] for r in rows)
    return summary


def analyse(settings: dict[str, Any], runs: list[dict[str, Any]], log: Any = print) -> dict[str, Any]:
    """Summaries and intervals of every comparison the protocol names, level by level.

    The same image resamples serve every arm, seed and level (the test split is shared); each level's seeds are
    redrawn per resample for the hierarchical interval.
    """
    boot = settings["bootstrap"]
    rates = settings["froc_fp_rates"]
    intervals: dict[str, Any] = {}
    intervals_images: dict[str, Any] = {}
    index = None
    for level, pairs in settings["comparisons"].items():
        level_runs = {(run_key(r), r["seed"]): r for r in runs if r["level"] == level}
        # each comparison uses the seeds on which both of its arms finished (a budget cut leaves some arms short)
        pair_seeds = {(a, b): sorted(s for arm, s in level_runs if arm == a and (b, s) in level_runs) for a, b in pairs}
        needed = {(arm, s) for (a, b), seeds in pair_seeds.items() for arm in (a, b) for s in seeds}
        if not needed:
            continue
        outcomes = {
            key: read_outcomes(Path(level_runs[key]["eval_dir"]) / "detections.json", CLASSES) for key in needed
        }
        if index is None:
            first = next(iter(outcomes.values()))[CLASSES[0]]
            index = bootstrap_indices(first.num_images, boot["resamples"], boot["seed"])
        values: dict[tuple[str, int, str, str], np.ndarray] = {}
        for arm, s in sorted(needed):
            for cls in CLASSES:
                values[(arm, s, cls, "auroc")] = np.array([auroc(outcomes[(arm, s)][cls], i) for i in index])
                values[(arm, s, cls, "froc")] = np.array([froc(outcomes[(arm, s)][cls], i, rates) for i in index])
        log(f"bootstrap: level {level} ({len(needed)} runs) done")
        for (a, b), seeds in pair_seeds.items():
            if not seeds:
                continue
            draws = seed_draws(len(seeds), boot["resamples"], boot["seed"])
            for cls in CLASSES:
                for metric in METRICS:
                    key = f"{level}:{a}-{b}:{cls}_{metric}"
                    va = np.stack([values[(a, s, cls, metric)] for s in seeds])
                    vb = np.stack([values[(b, s, cls, metric)] for s in seeds])
                    intervals_images[key] = {**paired_interval(va, vb, boot["level"]), "seeds": seeds}
                    # amendment 3: with one seed the interval holds no seed variance; its verdict is "indicative"
                    hierarchical = hierarchical_interval(va, vb, draws, boot["level"])
                    intervals[key] = {**hierarchical, "seeds": seeds, "indicative": len(seeds) < 2}
    return {"summary_mean_sd": summarize(runs), "intervals": intervals, "intervals_images": intervals_images}


def payoff(levels: list[dict[str, Any]], intervals: dict[str, Any]) -> dict[str, Any]:
    """Protocol v2's question 2: the lowest teacher quality at which stage 2 with AALS beats the control.

    ``threshold_val_rib_auroc`` (X) is the lowest level mean of the teacher's validation rib AUROC at which
    ``aals − control`` (rib AUROC, hierarchical interval) lies above 0, provided no higher level has it below 0;
    ``None`` when AALS beats the control at no level.
    """
    rows = []
    for level in sorted(levels, key=lambda lv: lv["teacher_val_rib_auroc"]):
        entry = intervals.get(f"{level['name']}:aals-control:rib_auroc")
        rows.append({"level": level["name"], "teacher_val_rib_auroc": level["teacher_val_rib_auroc"],
                     "aals_minus_control": entry, "verdict": verdict(entry) if entry else "not run",
                     "indicative": bool(entry and entry.get("indicative"))})  # fmt: skip
    threshold = None
    for i, row in enumerate(rows):
        if row["verdict"] == "higher" and all(r["verdict"] != "lower" for r in rows[i + 1 :]):
            threshold = row["teacher_val_rib_auroc"]
            break
    measured = [r for r in rows if r["verdict"] != "not run"]
    return {"threshold_val_rib_auroc": threshold, "levels": rows,
            "indicative": any(r["indicative"] for r in measured),  # a level with one seed (amendment 3)
            "rule": "lowest teacher validation rib AUROC with aals - control above 0 (rib AUROC) and none below 0 "
                    "at higher levels"}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# v1 (kept to rewrite its recorded section)
# --------------------------------------------------------------------------------------------------------------------


def markdown_v1(record: dict[str, Any]) -> str:
    """v1's model-card section (its record predates levels: ``summary_mean_sd`` is per arm)."""
    settings = record["settings"]
    arms_order = settings["arms"] if isinstance(settings["arms"], list) else settings["arms"]["final"]
    comparisons = _V1_COMPARISONS
    summary, ivals = record["summary_mean_sd"], record["intervals"]
    columns = [f"{c}_{m}" for c in CLASSES for m in METRICS]
    lines = ["| arm | rib AUROC | rib FROC | clavicle AUROC | clavicle FROC |", "| --- " * 5 + "|"]
    for arm in arms_order:
        cells = [f"{summary[arm][c][0]:.3f} ± {summary[arm][c][1]:.3f}" for c in columns]
        lines.append(f"| {ARM_LABELS[arm]} | " + " | ".join(cells) + " |")
    lines += ["", "| paired difference | rib AUROC | rib FROC | clavicle AUROC | clavicle FROC |", "| --- " * 5 + "|"]
    for a, b in comparisons:
        cells = []
        for c in columns:
            e = ivals[f"{a}-{b}:{c}"]
            cells.append(f"{e['difference']:+.3f} [{e['lower']:+.3f}, {e['upper']:+.3f}] {verdict(e)}")
        lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    pool, s1, s2, pre = settings["pool"], settings["stage1"], settings["stage2"], record["preconditions"]
    band = ", ".join(f"{p['p_in_band']:.2f}" for p in pre.values())
    negs = ", ".join(f"{p['val_negative_above_t_rib']:.2f}" for p in pre.values())
    lines += [
        "",
        f"Test split: {record['test_images']} images ({record['test_rib_positive']} rib-positive) of a phantom pool "
        f"(generator seed {pool['seed']}, {pool['size']} px, zoom {pool['zoom']}, difficulty {pool['difficulty']}); "
        f"training R {record['counts']['R']}, P {record['counts']['P']}, N {record['counts']['N']}. Mean ± s.d. over "
        f"training seeds {settings['training_seeds']}; differences are seed means with paired bootstrap 95 % "
        f"intervals over test images ({settings['bootstrap']['resamples']} resamples); 'higher'/'lower' = the "
        f"interval excludes 0. Chosen on validation: a0 = {record['tuning']['a0']:g}, EMA decay "
        f"{record['tuning']['ema_decay']:g}. Stage 1 {s1['epochs']} x {s1['samples_per_epoch']} samples "
        f"(pos_weight {s1['pos_weight']:g}, then Platt-calibrated), stage 2 {s2['epochs']} x "
        f"{s2['samples_per_epoch']} samples (pos_weight 1). Preconditions per seed: share of P images whose "
        f"calibrated stage-1 maximum lies in (t, 0.8): {band}; share of validation rib-negatives above t: {negs}. "
        f"Wall time {record['minutes']:.0f} min on {record['machine']['cpus']} CPU cores; this machine's bare "
        f"training step: {record['machine']['bare_step_samples_per_s']:.1f} samples/s. Reproduce: "
        "`.venv/bin/python scripts/benchmark_ablation.py --protocol v1`; raw numbers in `ablation.json`.",
        "",
        "![Paired differences](ablation_differences.png)",
    ]
    return "\n".join(lines)


_V1_COMPARISONS = [("aals", "plain"), ("aals", "control"), ("aals", "stage1"), ("aals", "pseudo_label")]
_V1_COMPARISONS += [("aals", "symmetric"), ("aals", "asymmetric_fixed"), ("oracle", "aals"), ("plain", "stage1")]


def plot_differences(intervals: dict[str, Any], comparisons: list[tuple[str, str]], path: Path, prefix: str = "",
                     title_suffix: str = "") -> None:  # fmt: skip
    """Forest plot of paired differences with their intervals, one panel per class and metric."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 1.5 + 0.5 * len(comparisons)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    labels = [f"{a} − {b}" for a, b in comparisons]
    for k, (cls, metric) in enumerate((c, m) for c in CLASSES for m in METRICS):
        axes = figure.add_subplot(2, 2, k + 1)
        for row, (a, b) in enumerate(comparisons):
            e = intervals[f"{prefix}{a}-{b}:{cls}_{metric}"]
            colour = {"higher": "tab:green", "lower": "tab:red"}.get(verdict(e), "0.3")
            axes.plot([e["lower"], e["upper"]], [row, row], color=colour, lw=2)
            axes.plot([e["difference"]], [row], "o", color=colour)
            axes.plot(e["per_seed"], [row] * len(e["per_seed"]), "x", color="0.5", ms=4)
        axes.axvline(0, color="0.5", ls="--", lw=1)
        axes.set_yticks(range(len(labels)), labels if k % 2 == 0 else [""] * len(labels))
        axes.invert_yaxis()
        axes.set_title(f"{cls} {metric.upper()}: difference, 95 % CI (x = seeds){title_suffix}", fontsize=9)
        axes.grid(True, axis="x", alpha=0.3)
    figure.savefig(path)


# --------------------------------------------------------------------------------------------------------------------
# v2
# --------------------------------------------------------------------------------------------------------------------


def _cell(entry: dict[str, float] | None) -> str:
    if entry is None:
        return "—"
    label = verdict(entry) + (" (1 seed: indicative)" if entry.get("indicative") else "")
    return f"{entry['difference']:+.3f} [{entry['lower']:+.3f}, {entry['upper']:+.3f}] {label}"


def _compute_text(record: dict[str, Any]) -> str:
    """The finished steps' cost summed over invocations, or (older records) the last invocation's wall time."""
    compute = record.get("compute")
    if not compute:
        return f"Wall time {record['minutes']:.0f} min ({record['child_cpu_minutes']:.0f} CPU-min in bundle runs)"
    return (f"Compute: stage-1 training {compute['stage1_trainer_minutes']:.0f} min (trainer time), stage-2 arms and "
            f"teacher evaluations {compute['stage2_and_teacher_minutes']:.0f} min wall "
            f"({compute['stage2_and_teacher_cpu_minutes']:.0f} CPU-min), summed over the invocations")  # fmt: skip


def _not_run_note(record: dict[str, Any]) -> list[str]:
    """A paragraph naming, grouped by level and arm, the protocol's steps a budget cut left undone, or nothing."""
    not_run = record.get("not_run", [])
    if not not_run:
        return []
    stage1, groups = [], {}
    for name in not_run:
        seed, _, rest = name.removeprefix("seed ").partition(" ")
        seed = seed.rstrip(":")
        if rest.startswith("level "):
            level, _, arm = rest.removeprefix("level ").partition(": ")
            if arm != "teacher":  # a teacher is implied by its level's arms
                groups.setdefault((level, arm), []).append(seed)
        else:
            stage1.append(seed)
    parts = [f"stage 1 of seed{'s' if len(stage1) > 1 else ''} {', '.join(stage1)}"] if stage1 else []
    parts += [f"{level} {arm} (seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)})"
              for (level, arm), seeds in groups.items()]  # fmt: skip
    return ["", f"**Not run within this record's budget ({len(not_run)} of {record['planned_steps']} steps; the "
            "same command resumes and completes them):** " + "; ".join(parts) + "."]  # fmt: skip


def markdown_v2(record: dict[str, Any]) -> str:
    """v2's model-card section: teacher levels, arms per level, paired differences, P dose, preconditions."""
    settings, summary, ivals = record["settings"], record["summary_mean_sd"], record["intervals"]
    images = record["intervals_images"]
    columns = [f"{c}_{m}" for c in CLASSES for m in METRICS]
    lines = ["| level | stage-1 checkpoint (epoch per seed) | teacher val rib AUROC (per seed) | P maxima in "
             "(t, 0.8) | P maxima > t | P-max median before → after AALS | val rib-negatives > t |",
             "| --- " * 7 + "|"]  # fmt: skip
    for level in record["levels"]:
        rule = level["definition"]
        rule_text = f"first ≥ {rule['val_rib_auroc']:.2f}" if "val_rib_auroc" in rule else "best of the full run"
        epochs = ", ".join(str(e) if isinstance(e, int) else "best" for e in level["stage1_epoch_per_seed"])
        lines.append(
            f"| {level['name']} | {rule_text} ({epochs}) | {level['teacher_val_rib_auroc']:.3f} "
            f"({', '.join(f'{v:.3f}' for v in level['teacher_val_rib_auroc_per_seed'])}) | "
            f"{level['p_in_band']:.2f} | {level['p_above_t']:.2f} | {level['p_max_median']:.2f} → "
            f"{level['p_target_max_median']:.2f} | {level['val_negative_above_t_rib']:.2f} |"
        )
    lines += ["", "| level | arm | seeds | rib AUROC | rib FROC | clavicle AUROC | clavicle FROC |",
              "| --- " * 7 + "|"]  # fmt: skip
    for level in record["levels"]:
        arms = summary.get(level["name"], {})
        order = [a for a in settings["arms"].get(level["name"], []) if a in arms]
        order += sorted(a for a in arms if a not in order)  # the P-dose runs
        for arm in order:
            values = arms[arm]
            cells = [", ".join(map(str, values["seeds"]))]
            cells += [f"{values[c][0]:.3f}" + (f" ± {values[c][1]:.3f}" if len(values["seeds"]) > 1 else "")
                      for c in columns]  # fmt: skip
            label = ARM_LABELS.get(arm, f"AALS, {arm.split('_p')[1]} of P" if arm.startswith("aals_p") else arm)
            lines.append(f"| {level['name']} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "| level | paired difference | seeds | rib AUROC | rib FROC | clavicle AUROC | clavicle FROC | "
              "rib AUROC, images only |", "| --- " * 8 + "|"]  # fmt: skip
    for level, pairs in settings["comparisons"].items():
        for a, b in pairs:
            entry = ivals.get(f"{level}:{a}-{b}:rib_auroc")
            if entry is None:
                continue  # an arm of the pair did not run (listed under "not run" below)
            cells = [", ".join(map(str, entry["seeds"]))] + [_cell(ivals.get(f"{level}:{a}-{b}:{c}")) for c in columns]
            cells.append(_cell(images.get(f"{level}:{a}-{b}:rib_auroc")))
            lines.append(f"| {level} | {a} − {b} | " + " | ".join(cells) + " |")
    if record.get("p_dose"):
        lines += ["", "| P images used (top level) | rib AUROC | gain over control, rib AUROC | gain, rib FROC |",
                  "| --- " * 4 + "|"]  # fmt: skip
        for dose in record["p_dose"]:
            mean, sd = dose["rib_auroc"]
            spread = "" if np.isnan(sd) else f" ± {sd:.3f}"
            lines.append(f"| {dose['num_p']} ({dose['fraction']:g} of P) | {mean:.3f}{spread} | "
                         f"{_cell(dose.get('gain_rib_auroc'))} | "
                         f"{_cell(dose.get('gain_rib_froc'))} |")  # fmt: skip
    pool, s1, s2 = settings["pool"], settings["stage1"], settings["stage2"]
    counts, machine = record["counts"], record["machine"]
    lines += [
        "",
        f"Protocol v2 (`ablation_protocol_v2.md`). Test split: {record['test_images']} images "
        f"({record['test_rib_positive']} rib-positive) of a phantom pool (generator seed {pool['seed']}, "
        f"{pool['size']} px, zoom {pool['zoom']}, difficulty {pool['difficulty']}); training R {counts['R']}, "
        f"P {counts['P']}, N {counts['N']}, R drawn anew for every training seed. Mean ± s.d. over seeds; "
        f"differences are seed means with 95 % intervals from a hierarchical bootstrap (seeds, then test images; "
        f"{settings['bootstrap']['resamples']} resamples), and, in the last column, the image-only interval. "
        f"'higher'/'lower': the interval excludes 0. Stage 1: {s1['epochs']} x {s1['samples_per_epoch']} samples, "
        f"cosine decay, pos_weight {s1['pos_weight']:g}, Platt-calibrated; the lower levels are its first "
        f"validated checkpoints reaching the validation rib AUROC shown, the top level its best checkpoint. "
        f"Stage 2: {record['stage2_epochs']} x {s2['samples_per_epoch']} "
        f"samples (at least {record['passes_over_p']:.1f} passes over its P by every P arm), mix {s2['mix']}, "
        f"control {s2['control_mix']}, "
        f"a0 {s2['a0']:g}, t {s2['t']:g}, EMA decay {s2['ema_decay']:g}, pos_weight 1. {_compute_text(record)} on "
        f"{machine['cpus']} CPU cores{machine.get('note', '')}; this machine's bare training step: "
        f"{machine['bare_step_samples_per_s']:.1f} samples/s (the largest of the "
        f"{len(machine.get('bare_step_measurements', [0]))} measured at the start of each invocation: on a shared "
        f"machine it is the closest to its own speed). Reproduce: `.venv/bin/python "
        f"scripts/benchmark_ablation.py --protocol v2`; raw numbers in `ablation_v2.json`.",
        *_not_run_note(record),
        "",
        "![Differences against control by teacher level](ablation_v2_levels.png)",
        "",
        "![Paired differences at the top level](ablation_v2_differences.png)",
    ]
    return "\n".join(lines)


def plot_levels(record: dict[str, Any], path: Path) -> None:
    """AALS − control and plain − control against the teacher's validation rib AUROC, with intervals."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for k, metric in enumerate(METRICS):
        axes = figure.add_subplot(1, 2, k + 1)
        for offset, (arm, colour) in enumerate((("aals", "tab:blue"), ("plain", "tab:orange"))):
            xs, ys, lows, highs = [], [], [], []
            for level in record["levels"]:
                entry = record["intervals"].get(f"{level['name']}:{arm}-control:rib_{metric}")
                if entry is None:
                    continue
                xs.append(level["teacher_val_rib_auroc"] + (offset - 0.5) * 0.004)
                ys.append(entry["difference"])
                lows.append(entry["difference"] - entry["lower"])
                highs.append(entry["upper"] - entry["difference"])
            axes.errorbar(xs, ys, yerr=[lows, highs], fmt="o-", color=colour, capsize=4, label=f"{arm} − control")
        axes.axhline(0, color="0.5", ls="--", lw=1)
        axes.set_xlabel("teacher (calibrated stage 1) validation rib AUROC")
        axes.set_ylabel(f"test rib {metric.upper()} difference")
        axes.set_title(f"rib {metric.upper()}: stage 2 with P minus the same training without P", fontsize=9)
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.savefig(path)


# --------------------------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------------------------


def _replace_block(text: str, start: str, end: str, block: str, anchor: str) -> str:
    content = f"{start}\n{block}\n{end}"
    if start in text:
        before, rest = text.split(start, 1)
        return before + content + rest.split(end, 1)[1]
    if anchor not in text:
        raise RuntimeError(f"model card has neither {start!r} nor the anchor {anchor!r}")
    return text.replace(anchor, f"{content}\n\n{anchor}", 1)


def write_docs(record: dict[str, Any], readme: Path = DOCS / "README.md") -> None:
    """Write the protocol's model-card section and its figures into ``bundle/docs``."""
    protocol = record["settings"]["protocol"]
    text = readme.read_text()
    start, end = MARKERS["v2" if protocol.startswith("v2") else "v1"]
    if protocol.startswith("v2"):
        top = record["settings"]["levels"][-1]["name"]
        plot_levels(record, DOCS / "ablation_v2_levels.png")
        pairs = [tuple(p) for p in record["settings"]["comparisons"][top]]
        pairs = [(a, b) for a, b in pairs if f"{top}:{a}-{b}:rib_auroc" in record["intervals"]]  # what finished
        if pairs:
            plot_differences(record["intervals"], pairs, DOCS / "ablation_v2_differences.png", prefix=f"{top}:",
                             title_suffix=", seeds then images")  # fmt: skip
        text = _replace_block(text, start, end, markdown_v2(record), MARKERS["v1"][0])
    else:
        plot_differences(record["intervals"], _V1_COMPARISONS, DOCS / "ablation_differences.png")
        text = _replace_block(text, start, end, markdown_v1(record), "## Commands")
    readme.write_text(text)


def eval_metrics(record: dict[str, Any]) -> dict[str, float]:
    """``metadata.json`` eval_metrics: the AALS arm's test metrics (top level for v2), mean over seeds."""
    summary = record["summary_mean_sd"]
    if "aals" not in summary:  # v2: per level
        summary = summary[record["settings"]["levels"][-1]["name"]]
    return {name: round(summary["aals"][f"{c}_{m}"][0], 4) for name, (c, m) in EVAL_METRICS.items()}


def write_metadata(metrics: dict[str, float], path: Path = CONFIGS / "metadata.json") -> None:
    """Replace the flat ``eval_metrics`` object of ``metadata.json`` in place (the rest is left as written)."""
    text = path.read_text()
    block = json.dumps(metrics, indent=4).replace("\n", "\n    ")
    text, count = re.subn(r'"eval_metrics": \{[^{}]*\}', lambda _: f'"eval_metrics": {block}', text)
    if count != 1:
        raise RuntimeError(f"{path}: expected one flat eval_metrics object, found {count}")
    json.loads(text)  # never write a broken file
    path.write_text(text)
