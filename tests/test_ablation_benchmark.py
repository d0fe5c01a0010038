"""The whole method-benchmark command at tiny size (protocol ``v2-tiny``): a kill mid-run, then a rerun that skips
the finished steps, resumes the rest and writes the record with every key protocol v2 promises."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

REQUIRED_KEYS = {
    "settings", "levels", "runs", "intervals", "intervals_images", "preconditions", "p_dose", "seeds", "test_images",
    "test_rib_positive",
}  # fmt: skip


def test_benchmark_command_at_tiny_size_survives_a_kill_and_resumes(tmp_path):
    command = [sys.executable, "scripts/benchmark_ablation.py", "--protocol", "v2-tiny", "--in-process",
               "--work-dir", str(tmp_path)]  # fmt: skip
    first = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)  # fmt: skip
    seen, in_stage2 = [], False
    assert first.stdout is not None
    for line in first.stdout:  # kill (SIGKILL, whole process group) once the first stage-2 arm is training
        seen.append(line)
        in_stage2 = in_stage2 or "stage 2 'control'" in line
        if in_stage2 and "Epoch: 1/" in line:
            os.killpg(first.pid, signal.SIGKILL)
            break
    first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, "".join(seen[-40:])
    killed_arm = tmp_path / "seed0" / "low" / "control"  # the tiny priority list: top aals first, then low control
    assert killed_arm.is_dir() and not (killed_arm / "result.json").exists()

    second = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output[-4000:]
    progress = [line for line in output.splitlines() if line.startswith("[ablation")]
    # done before the kill, in the priority order: seed 0's stage 1 (with its level snapshots), its top-level teacher
    # and AALS arm, its low-level teacher
    assert any("4 already done" in line for line in progress), progress[:6]
    assert any("step 1/" in line and "seed 0 level low: control" in line for line in progress), progress[:6]
    assert not any("seed 0: stage 1, " in line for line in progress)  # finished steps are not redone

    record = json.loads((tmp_path / "ablation_v2_tiny.json").read_text())
    assert set(record) >= REQUIRED_KEYS
    assert [level["name"] for level in record["levels"]] == ["low", "top"]
    assert all(0.0 <= level["teacher_val_rib_auroc"] <= 1.0 for level in record["levels"])
    arms = {(r["level"], r["name"], r["seed"]) for r in record["runs"]}
    assert ("top", "control", 0) in arms and ("top", "aals_p0.5", 1) in arms and ("low", "aals", 0) in arms
    assert all(r["passes_over_p"] >= 1.0 for r in record["runs"] if r["arm"] in ("plain", "aals"))
    assert {"top:aals-control:rib_auroc", "low:aals-control:rib_auroc"} <= set(record["intervals"])
    entry = record["intervals"]["top:aals-control:rib_auroc"]
    assert entry["lower"] <= entry["difference"] <= entry["upper"] and len(entry["per_seed"]) == 2
    assert [dose["fraction"] for dose in record["p_dose"]] == [0.0, 0.5, 1.0]
    assert set(record["preconditions"]) == {"low/seed0", "top/seed0", "top/seed1"}
    low = json.loads((tmp_path / "seed0" / "stage1" / "level_low" / "level.json").read_text())
    assert (tmp_path / "seed0" / "stage1" / f"snapshot_model_epoch={low['epoch']}.pt").is_file()

    third = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "0 to run" in third.stdout  # a rerun days later redoes nothing


@pytest.mark.slow
def test_gpu_variant_runs_stage1_and_teachers_with_the_default_network_at_tiny_size(tmp_path):
    """``--device cuda --network default`` is prepared here: the same command with the bundle's ResNet-50 + FPN,
    on the CPU, at 64 px, through stage 1 and the teacher levels."""
    command = [sys.executable, "scripts/benchmark_ablation.py", "--protocol", "v2-tiny", "--in-process",
               "--network", "default", "--device", "cpu", "--only", "stage1", "--work-dir", str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "(default network)" in result.stdout
    log = (tmp_path / "seed0" / "stage1_run1.log").read_text()
    assert "demo.json" not in log and "network_def#block" not in log  # the bundle's own network, no override
    for seed, level in ((0, "low"), (0, "top"), (1, "top")):
        pre = json.loads((tmp_path / f"seed{seed}" / "stage1" / f"level_{level}" / "preconditions.json").read_text())
        assert 0.0 <= pre["p_above_t"] <= 1.0
