"""The demo's hint: a stage 1 compared with the method benchmark's payoff threshold."""

from __future__ import annotations

import json

from stage2_advice import advice, main


def _benchmark(threshold: float | None) -> dict:
    top = "higher" if threshold else "not resolved"
    rows = [{"level": "low", "teacher_val_rib_auroc": 0.70, "verdict": "not resolved"},
            {"level": "top", "teacher_val_rib_auroc": 0.85, "verdict": top}]  # fmt: skip
    return {"payoff": {"threshold_val_rib_auroc": threshold, "levels": rows}}


def test_advice_below_above_and_without_a_threshold():
    below = advice(0.72, _benchmark(0.85))
    assert "0.720" in below and "box more images" in below and "0.85" in below
    above = advice(0.88, _benchmark(0.85))
    assert "in that range" in above and "box more" not in above
    never = advice(0.88, _benchmark(None))
    assert "did not beat" in never and "low 0.70: not resolved" in never
    assert "indicative" not in never
    one_seed = _benchmark(None)
    one_seed["payoff"]["indicative"] = True
    assert "single training seed" in advice(0.88, one_seed)


def test_command_reads_the_calibration_record_and_never_fails(tmp_path, capsys):
    calibration = tmp_path / "model_calibrated_calibration.json"
    calibration.write_text(json.dumps({"classes": {"rib": {"validation_auroc": 0.7}}}))
    benchmark = tmp_path / "ablation_v2.json"
    benchmark.write_text(json.dumps(_benchmark(0.85)))
    assert main([str(calibration), "--benchmark", str(benchmark)]) == 0
    assert "box more images" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.json"), "--benchmark", str(benchmark)]) == 0
    assert "no advice" in capsys.readouterr().out
