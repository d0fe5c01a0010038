"""scripts/benchmark_agnostic.py: its datalist and stage-2 overrides on the method benchmark's runner (quick), and the
whole command at test size (``--protocol v2-tiny``), from the pool to the record, with every run reading one
preprocessed store. The whole command costs about one CPU-minute (eight tiny bundle runs), beyond the real-data
share of the CI budget: it runs only when the environment sets ``CXR_BENCHMARK_SMOKE=1``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from ablation_runner import Launcher, Progress
from ablation_settings import settings_for
from benchmark_agnostic import AgnosticBenchmark
from conftest import REPO_ROOT

from scripts.data.datalist import load_datalist


def _pool(data: Path) -> None:
    """A pool datalist as the method benchmark renders it (every training positive R with boxes); no image files."""

    def entry(name: str, rib: int, clavicle: int, subset: str | None) -> dict:
        boxes = [[4.0, 4.0, 12.0, 12.0]] * (rib + clavicle)
        classes = ["rib"] * rib + ["clavicle"] * clavicle
        item = {"image": f"{name}.png", "labels": {"rib": rib, "clavicle": clavicle}, "boxes": boxes,
                "box_classes": classes}  # fmt: skip
        return {**item, "subset": subset} if subset else item

    training = [entry(f"t{i}", 1, i % 2, "R") for i in range(6)] + [entry(f"n{i}", 0, 0, "N") for i in range(4)]
    content = {"classes": ["rib", "clavicle"], "training": training, "validation": [entry("v0", 1, 0, None)],
               "test": [entry("e0", 0, 1, None), entry("e1", 0, 0, None)]}  # fmt: skip
    data.mkdir(parents=True)
    (data / "datalist.json").write_text(json.dumps(content))


def test_agnostic_arm_trains_on_the_p_images_as_subset_a(tmp_path):
    settings = settings_for("v1")
    settings["num_r"] = 2
    bench = AgnosticBenchmark(settings, tmp_path, Launcher("light"), Progress("test"))
    _pool(bench.data)
    semi = bench.datalist(0)
    path = bench.agnostic_datalist(0)

    def training(datalist: Path, subset: str) -> list[dict]:
        return load_datalist(datalist, "training", subsets=[subset], check_files=False)

    p_items, a_items = training(semi, "P"), training(path, "A")
    assert len(p_items) == 4 and [a["image"] for a in a_items] == [p["image"] for p in p_items]
    assert all(a["image_label"].tolist() == [1.0, 1.0] and len(a["boxes"]) == 0 for a in a_items)
    hidden = [e["hidden_labels"] for e in json.loads(path.read_text())["training"] if e["subset"] == "A"]
    assert hidden == [e["labels"] for e in json.loads(semi.read_text())["training"] if e["subset"] == "P"]
    for subset in ("R", "N"):  # the rest of the training data as it was
        assert [i["image"] for i in training(path, subset)] == [i["image"] for i in training(semi, subset)]
    assert json.loads(path.read_text())["test"] == json.loads(semi.read_text())["test"]
    level = settings["levels"][-1]
    aals = bench.arm_overrides("aals", 0, level, tmp_path / "arm", 4.0, 0.99)
    agnostic = bench.arm_overrides("agnostic", 0, level, tmp_path / "arm", 4.0, 0.99)
    assert agnostic.pop("datalist") == path and aals.pop("datalist") == semi
    assert agnostic.pop("train#datalist#subsets") == ["R", "N", "A"]
    mix = aals.pop("train#subset_mix")
    assert agnostic.pop("train#subset_mix") == {"R": mix["R"], "N": mix["N"], "A": mix["P"]}
    assert agnostic == aals  # everything else as in the class-specific AALS arm


def test_the_command_drives_the_runner_through_its_current_methods(tmp_path):
    """main() against the runner's methods with their real signatures (``autospec``), stages stubbed: a renamed or
    re-signed runner method fails here, in the quick tier, rather than hours into a measurement."""
    import benchmark_agnostic
    from ablation_runner import Benchmark

    def teacher(bench: Benchmark, seed: int, level: dict) -> None:
        bench.level_dir(seed, level).mkdir(parents=True, exist_ok=True)
        (bench.level_dir(seed, level) / "result.json").write_text(json.dumps({"rib_auroc": 0.5}))

    def rule_choice(launcher: Launcher, data: Path, datalist: Path, checkpoint: Path) -> dict:
        assert checkpoint.name == "model_calibrated.pt"
        return {"rule_picks_a_true_class": 1.0}

    _pool(tmp_path / "data")
    with (
        mock.patch.object(Benchmark, "prepare_pool", autospec=True),
        mock.patch.object(Benchmark, "check_counts", autospec=True, return_value={"P": 4}),
        mock.patch.object(Benchmark, "stage1", autospec=True) as stage1,
        mock.patch.object(Benchmark, "teacher", autospec=True, side_effect=teacher),
        mock.patch.object(Benchmark, "stage2", autospec=True) as stage2,
        mock.patch.object(benchmark_agnostic, "rule_choice", side_effect=rule_choice),
    ):
        record = benchmark_agnostic.main(["--protocol", "v2-tiny", "--work-dir", str(tmp_path)])
    assert record == {}  # the stubbed arms wrote no result: the record waits for them
    (bench, seed), _ = stage1.call_args
    assert seed == 0 and bench.launch.overrides["cache_dir"] == tmp_path.resolve() / "cache"
    assert bench.launch.overrides["image_size"] == 64  # the tiny protocol's bundle overrides reach every run
    level = settings_for("v2-tiny")["levels"][-1]
    assert [c.args[1:] for c in stage2.call_args_list] == [
        (0, level, folder, arm, benchmark_agnostic.A0, benchmark_agnostic.EMA_DECAY)
        for folder, arm in benchmark_agnostic.ARMS.values()
    ]
    assert json.loads((bench.level_dir(0, level) / "rule_choice.json").read_text()) == {"rule_picks_a_true_class": 1.0}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CXR_BENCHMARK_SMOKE") != "1", reason="about one CPU-minute: CXR_BENCHMARK_SMOKE=1")
def test_agnostic_benchmark_at_tiny_size_writes_its_record(tmp_path):
    command = [sys.executable, "scripts/benchmark_agnostic.py", "--protocol", "v2-tiny", "--in-process",
               "--work-dir", str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    record = json.loads((tmp_path / "agnostic_positives_tiny.json").read_text())
    assert not (REPO_ROOT / "bundle" / "docs" / "agnostic_positives_tiny.json").exists()
    assert set(record["runs"]) == {"control", "class_specific", "agnostic"}
    # the agnostic arm trains on the same images as P, with their classes hidden
    semi = next(tmp_path.joinpath("data").glob("semi_*.json"))
    agnostic = load_datalist(semi.with_name(semi.name.replace("semi", "agnostic")), "training")
    p_images = sorted(item["image"] for item in load_datalist(semi, "training", subsets=["P"]))
    a_items = [item for item in agnostic if item["subset"] == "A"]
    assert sorted(item["image"] for item in a_items) == p_images and len(p_images) == record["counts"]["P"]
    assert all(item["image_label"].tolist() == [1.0, 1.0] for item in a_items)
    assert record["counts"]["A (agnostic arm)"] == len(p_images)
    # the agnostic arm's teacher targets were formed (the AALS statistics cover its A images) ...
    stats = record["runs"]["agnostic"]["aals_stats"]
    assert stats and all(epoch["num_maps"] > 0 for epoch in stats), stats
    assert record["runs"]["control"]["aals_stats"] == []  # ... and the control arm has no image-level positives
    choice = record["rule_choice_at_stage2_start"]
    assert choice["num_p_images"] == len(p_images)
    assert 0.0 <= choice["rule_picks_a_true_class"] <= 1.0
    assert {"agnostic-control:rib_auroc", "agnostic-class_specific:clavicle_froc"} <= set(record["intervals"])
    entry = record["intervals"]["agnostic-control:rib_auroc"]
    assert entry["lower"] <= entry["difference"] <= entry["upper"]
    # one store for every run, in the work folder, not bundle/cache
    assert list((tmp_path / "cache").glob("*/settings.json")), "no preprocessed store in the work folder"
    assert "--protocol v2-tiny" in record["command"]
