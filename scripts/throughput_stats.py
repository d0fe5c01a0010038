"""The throughput benchmark's statistics: per-round figures summarised, phase tables, ratios between sides."""

from __future__ import annotations

import statistics
from typing import Any

from throughput_timing import PHASES

#: Phases of a bare training step and of an inference iteration (an evaluator has no loss, backward or optimizer).
BARE_STEP_PHASES = ("forward", "loss", "backward", "optimizer")
INFERENCE_PHASES = ("data", "forward", "postprocessing", "handlers")


def summarise(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of per-round figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def phase_table(rows: list[dict[str, tuple[float, float]]], phases: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Mean wall milliseconds per iteration (means, so that the phases add up to the total) and cores used
    (CPU seconds over wall seconds) per phase."""
    table = {}
    for phase in (*phases, "total"):
        walls = [row[phase][0] for row in rows if phase in row]
        cpus = [row[phase][1] for row in rows if phase in row]
        if walls:
            wall = statistics.fmean(walls)
            table[phase] = {"ms": round(1000 * wall, 2), "cores": round(sum(cpus) / max(sum(walls), 1e-9), 2)}
    return table


def ratios(rounds: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per round: stage 1 over the bare step, a stage-2 step's cost in stage-1 steps, inference over bare forward."""
    return {
        "stage1_over_bare_step": [s / b for s, b in zip(rounds["stage1"], rounds["bare_step"], strict=True)],
        "stage2_step_over_stage1_step": [a / b for a, b in zip(rounds["stage1"], rounds["stage2"], strict=True)],
        "inference_over_bare_forward": [
            i / f for i, f in zip(rounds["inference"], rounds["bare_forward"], strict=True)
        ],  # fmt: skip
    }


def run_summary(rounds: dict[str, list[float]], rows: dict[str, list]) -> dict[str, Any]:
    """Rates, ratios, stage 2's teacher and EMA cost and the phase tables of one network's rounds.

    Args:
        rounds: per side, one rate (samples or images per second) per round.
        rows: per side, the phase rows (``{phase: (wall s, cpu s)}``) of every timed iteration.
    """
    stage1_phases, stage2_phases = phase_table(rows["stage1"], PHASES), phase_table(rows["stage2"], PHASES)
    teacher_ms = stage2_phases["transfer_and_teacher"]["ms"] - stage1_phases["transfer_and_teacher"]["ms"]
    ema_ms = stage2_phases["handlers"]["ms"] - stage1_phases["handlers"]["ms"]
    return {
        "samples_per_s": {key: summarise(values) for key, values in rounds.items()},
        "ratios": {key: summarise(values) for key, values in ratios(rounds).items()},
        "stage2_teacher_ms": round(teacher_ms, 2),
        "stage2_ema_ms": round(ema_ms, 2),
        "stage2_teacher_share_of_student_step": round(teacher_ms / stage1_phases["total"]["ms"], 3),
        "phases": {
            "stage1": stage1_phases,
            "stage2": stage2_phases,
            "bare_step": phase_table(rows["bare_step"], BARE_STEP_PHASES),
            "inference": phase_table(rows["inference"], INFERENCE_PHASES),
        },  # fmt: skip
    }


def preprocessing_table(preprocessing: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Milliseconds per image and cores used of each inference preprocessing transform."""
    return {k: {"ms": round(1000 * w, 2), "cores": round(c / max(w, 1e-9), 2)} for k, (w, c) in preprocessing.items()}
