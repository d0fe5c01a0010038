"""The throughput benchmark's parts: phase stamps, phase tables and ratios, peak memory, the model-card table.

The benchmark itself is run by hand (``python scripts/benchmark_throughput.py``); these tests check that what it
reports is computed right, on a toy ignite engine and synthetic stamps.
"""

from __future__ import annotations

import os

import pytest
import torch
from ignite.engine import Engine, Events
from throughput_report import TABLE_END, TABLE_START, model_card_table, write_model_card_table
from throughput_sides import _peak_rss_mb
from throughput_stats import phase_table, run_summary
from throughput_timing import PHASES, Clock, StepTimer, TimedCall


def test_step_timer_stamps_every_iteration_and_takes_the_augmentation_out():
    clock = Clock(torch.device("cpu"))
    augment = TimedCall(lambda x: sum(range(20000)) + x, clock)

    def process(engine, batch):
        return sum(range(5000))

    engine = Engine(process)
    engine.add_event_handler(Events.ITERATION_STARTED, lambda e: augment(1))
    timer = StepTimer(engine, clock, augment)  # an ignite Engine has no FORWARD_COMPLETED: those stamps are skipped
    engine.run([0] * 5, max_epochs=1)
    assert len(timer.iterations) == 5
    rows = timer.phases()
    assert len(rows) == 4  # the first iteration is left out
    for row in rows:
        assert set(row) == {"data", "augmentation", "transfer_and_teacher", "handlers", "total"}
        parts = row["data"][0] + row["augmentation"][0] + row["transfer_and_teacher"][0] + row["handlers"][0]
        assert parts == pytest.approx(row["total"][0], abs=1e-9)
        assert row["augmentation"][0] > 0 and row["transfer_and_teacher"][0] >= 0


def test_phase_table_reports_means_that_add_up_and_cores_used():
    rows = [
        {"data": (0.01, 0.01), "forward": (0.09, 0.18), "total": (0.10, 0.19)},
        {"data": (0.03, 0.03), "forward": (0.07, 0.14), "total": (0.10, 0.17)},
    ]
    table = phase_table(rows, ("data", "forward", "backward"))
    assert table["data"] == {"ms": 20.0, "cores": 1.0}
    assert table["forward"] == {"ms": 80.0, "cores": 2.0}
    assert table["data"]["ms"] + table["forward"]["ms"] == table["total"]["ms"]
    assert "backward" not in table  # a phase no iteration had is left out


def test_run_summary_gives_ratios_per_round_and_the_teachers_cost():
    rounds = {"bare_step": [100.0, 50.0], "stage1": [90.0, 40.0], "stage2": [60.0, 20.0], "bare_forward": [10.0, 8.0],
              "inference": [5.0, 6.0], "inference_whole_run": [4.0, 5.0]}  # fmt: skip

    def row(transfer: float, handlers: float) -> dict:
        row = {phase: (0.001, 0.001) for phase in PHASES}
        row["transfer_and_teacher"], row["handlers"] = (transfer, transfer), (handlers, handlers)
        row["total"] = (0.1, 0.1)
        return row

    rows = {"stage1": [row(0.002, 0.001)], "stage2": [row(0.012, 0.004)],
            "bare_step": [{"forward": (0.05, 0.1), "total": (0.05, 0.1)}],
            "inference": [{"data": (0.2, 0.2), "forward": (0.05, 0.1), "total": (0.25, 0.3)}]}  # fmt: skip
    summary = run_summary(rounds, rows)
    assert summary["ratios"]["stage1_over_bare_step"] == pytest.approx({"median": 0.85, "min": 0.8, "max": 0.9})
    assert summary["ratios"]["stage2_step_over_stage1_step"] == pytest.approx({"median": 1.75, "min": 1.5, "max": 2})
    assert summary["ratios"]["inference_over_bare_forward"]["max"] == pytest.approx(0.75)
    assert summary["samples_per_s"]["inference_whole_run"]["median"] == pytest.approx(4.5)
    assert summary["stage2_teacher_ms"] == pytest.approx(10.0) and summary["stage2_ema_ms"] == pytest.approx(3.0)
    assert summary["stage2_teacher_share_of_student_step"] == pytest.approx(0.1)
    assert set(summary["phases"]) == {"stage1", "stage2", "bare_step", "inference"}


def test_peak_rss_of_this_process_is_read_from_proc():
    own, children = _peak_rss_mb(os.getpid())
    assert own > 50  # torch alone takes more than 50 MB
    assert children >= 0


def _run(network: str, amp: bool) -> dict:
    entry = {"median": 1.0, "min": 0.9, "max": 1.1}
    return {
        "network": network,
        "amp": amp,
        "image_size": 256,
        "batch_size": 16,
        "samples_per_s": {"bare_step": entry, "bare_forward": entry},
        "ratios": {
            "stage1_over_bare_step": entry,
            "stage2_step_over_stage1_step": entry,
            "inference_over_bare_forward": entry,
        },  # fmt: skip
        "inference_command": {"peak_rss_mb": 812.0},
    }


def test_model_card_table_is_replaced_between_the_markers(tmp_path):
    card = tmp_path / "README.md"
    card.write_text(f"# Card\n\n{TABLE_START}\nold table\n{TABLE_END}\n\nrest\n")
    table = model_card_table([_run("light", False), _run("default", True)])
    write_model_card_table(table, "CPU (x86_64, 2 cores)", card)
    text = card.read_text()
    assert "old table" not in text and text.endswith("\n\nrest\n")
    assert "| light (256 px, batch 16) | 1.00 (0.90-1.10) |" in text
    assert "| default + AMP (256 px, batch 16) |" in text
    assert "812 MB" in text and "CPU (x86_64, 2 cores)" in text
    write_model_card_table(table, "CPU (x86_64, 2 cores)", card)  # idempotent
    assert card.read_text() == text


def test_model_card_without_markers_is_refused(tmp_path):
    card = tmp_path / "README.md"
    card.write_text("# Card\n")
    with pytest.raises(RuntimeError, match="markers"):
        write_model_card_table("| table |", "CPU", card)
