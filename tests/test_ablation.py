"""The method benchmark's parts: datalist derivation, P dose, bootstrap intervals, arm configuration, log parsing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from ablation_data import derive_datalists, subsample_p, subset_counts
from ablation_stats import (
    auroc,
    bootstrap_indices,
    froc,
    hierarchical_interval,
    paired_interval,
    read_outcomes,
    seed_draws,
)
from conftest import REPO_ROOT

from scripts.data.datalist import load_datalist


def _pool(num_pos: int = 12, num_neg: int = 20) -> dict:
    training = []
    for i in range(num_pos + num_neg):
        positive = i < num_pos
        entry = {"image": f"images/{i}.png", "subset": "R" if positive else "N"}
        entry["labels"] = {"rib": int(positive), "clavicle": 0}
        entry["boxes"] = [[10.0, 10.0, 20.0, 20.0 + i]] if positive else []
        entry["box_classes"] = ["rib"] if positive else []
        training.append(entry)
    test = [{"image": "images/t.png", "labels": {"rib": 1, "clavicle": 0}, "boxes": [[1, 1, 5, 5]],
             "box_classes": ["rib"]}]  # fmt: skip
    validation = copy.deepcopy(test)
    validation[0]["image"] = "images/v.png"
    return {"classes": ["rib", "clavicle"], "training": training, "validation": validation, "test": test}


def test_semi_and_oracle_datalists_differ_only_in_the_boxes_of_p():
    pool = _pool()
    semi, oracle = derive_datalists(pool, num_r=3, seed=0)
    assert pool == _pool()  # the pool is left as it was
    counts = subset_counts(semi)
    assert (counts["R"], counts["P"], counts["N"]) == (3, 9, 20)
    assert semi["validation"] == oracle["validation"] == pool["validation"]
    assert semi["test"] == oracle["test"] == pool["test"]
    for s_item, o_item, p_item in zip(semi["training"], oracle["training"], pool["training"], strict=True):
        assert s_item["image"] == o_item["image"] and s_item["subset"] == o_item["subset"]
        assert s_item["labels"] == o_item["labels"]
        if s_item["subset"] == "P":
            assert "boxes" not in s_item and o_item["boxes"] == p_item["boxes"]
        else:
            assert s_item == o_item
    assert semi["derivation"]["num_r"] == 3 and derive_datalists(pool, 3, 0)[0] == semi  # deterministic
    assert derive_datalists(pool, 3, 1)[0] != semi


def test_derivation_refuses_a_pool_without_boxes_on_every_positive():
    pool = _pool()
    pool["training"][0]["subset"] = "P"
    with pytest.raises(ValueError, match="r-fraction 1"):
        derive_datalists(pool, 3, 0)
    with pytest.raises(ValueError, match="num_r"):
        derive_datalists(_pool(), 13, 0)


def test_loader_uses_p_boxes_only_for_the_oracle(tmp_path):
    semi, oracle = derive_datalists(_pool(), num_r=3, seed=0)
    for name, content in (("semi.json", semi), ("oracle.json", oracle)):
        (tmp_path / name).write_text(json.dumps(content))
    p_semi = load_datalist(tmp_path / "semi.json", "training", subsets=["P"], check_files=False)
    p_oracle = load_datalist(tmp_path / "oracle.json", "training", subsets=["P"], check_files=False, p_boxes=True)
    assert all(item["boxes"].shape == (0, 4) for item in p_semi)
    assert all(item["boxes"].shape == (1, 4) for item in p_oracle)
    p_default = load_datalist(tmp_path / "oracle.json", "training", subsets=["P"], check_files=False)
    assert all(item["boxes"].shape == (0, 4) for item in p_default)  # boxes of P are ignored unless asked


def _detections_json(path, scores, labels, fp, boxes):
    """A minimal detections.json: per image a score, a label, FP detection scores and box hit scores."""
    images = []
    for score, label, fps, hits in zip(scores, labels, fp, boxes, strict=True):
        dets = [{"class": "rib", "x": 0, "y": 0, "score": s, "outcome": "FP"} for s in fps]
        dets += [{"class": "rib", "x": 0, "y": 0, "score": h, "outcome": "TP"} for h in hits if h is not None]
        images.append({
            "image": "x", "image_label": {"rib": label}, "image_score": {"rib": score}, "detections": dets,
            "boxes": [{"class": "rib", "score": h} for h in hits],
        })  # fmt: skip
    path.write_text(json.dumps({"images": images}))
    return path


def test_bootstrap_metrics_on_the_identity_equal_the_report_and_differences_are_paired(tmp_path):
    from scripts.evaluate.froc import froc_curve_from_scores, sensitivity_at

    path = _detections_json(
        tmp_path / "d.json",
        scores=[0.9, 0.2, 0.6, 0.1],
        labels=[1, 0, 1, 0],
        fp=[[0.3], [0.2, 0.15], [], [0.1]],
        boxes=[[0.9], [], [None], []],
    )
    out = read_outcomes(path, ["rib"])["rib"]
    index = bootstrap_indices(out.num_images, 50, seed=0)
    assert np.array_equal(index[0], np.arange(4)) and index.shape == (51, 4)
    assert auroc(out, index[0]) == pytest.approx(1.0)
    fps, sens, _ = froc_curve_from_scores([0.3, 0.2, 0.15, 0.1], [0.9, float("-inf")], 4)
    assert froc(out, index[0], [0.25, 0.5]) == pytest.approx(np.mean(sensitivity_at(fps, sens, [0.25, 0.5])))
    doubled = np.array([0, 0, 1, 1, 2, 2, 3, 3])  # every image twice: FP rate and sensitivity unchanged
    assert froc(out, doubled, [0.25, 0.5]) == pytest.approx(froc(out, index[0], [0.25, 0.5]))
    a = np.array([[0.8, 0.7, 0.9], [0.6, 0.5, 0.7]])
    interval = paired_interval(a, a - 0.1)
    assert interval["difference"] == pytest.approx(0.1) and interval["per_seed"] == pytest.approx([0.1, 0.1])
    assert interval["lower"] == pytest.approx(0.1) and interval["upper"] == pytest.approx(0.1)


@pytest.mark.parametrize("arm", ["control", "aals", "oracle"])
def test_arm_configurations_draw_the_right_images_with_the_right_targets(arm, tmp_path):
    """Parse train.json + distill.json + demo.json with the v2 benchmark's overrides of an arm, as the CLI does."""
    from ablation_runner import Benchmark, Launcher, Progress
    from ablation_settings import ARM_VARIANT, settings_for
    from monai.bundle import ConfigParser

    settings = settings_for("v2")
    assert set(ARM_VARIANT) | {"stage1"} >= set(settings["arms"]["top"])
    settings["num_r"] = 3
    bench = Benchmark(settings, tmp_path, Launcher(), Progress(), data=tmp_path)
    (tmp_path / "datalist.json").write_text(json.dumps(_pool()))
    overrides = bench.arm_overrides(arm, 0, settings["levels"][-1], tmp_path / "out", 4.0, 0.99)
    parser = ConfigParser()
    parser.read_config([str(REPO_ROOT / "bundle/configs" / n) for n in ("train.json", "distill.json", "demo.json")])
    for key, value in overrides.items():
        parser[key] = str(value) if isinstance(value, Path) else value  # run_bundle passes paths as text
    parser["train#datalist#check_files"] = False
    items = parser.get_parsed_content("train#datalist")
    weights = parser.get_parsed_content("train#sampler#weights")
    subsets = {item["subset"] for item in items}
    mass = {s: sum(w for w, item in zip(weights, items, strict=True) if item["subset"] == s) for s in subsets}
    assert parser.get_parsed_content("loss").pos_weight == 1.0  # stage 2: soft targets are their own optimum
    if arm == "control":
        assert subsets == {"R", "N"} and mass["R"] == pytest.approx(0.5) and mass["N"] == pytest.approx(0.5)
    else:
        assert subsets == {"R", "N", "P"} and mass["P"] == pytest.approx(0.5) and mass["R"] == pytest.approx(0.25)
        p_boxes = [item["boxes"].shape[0] for item in items if item["subset"] == "P"]
        assert all(n == 1 for n in p_boxes) if arm == "oracle" else all(n == 0 for n in p_boxes)
    assert (parser.get_parsed_content("aals_handler").target_fn is None) == (arm == "oracle")
    # every arm makes the same number of iterations: at least 8 passes over the seed's 9 P images at P share 0.5
    assert overrides["train#trainer#max_epochs"] * overrides["train#samples_per_epoch"] * 0.5 >= 8 * 9


def test_p_dose_keeps_r_and_n_and_a_fraction_of_p():
    semi, _ = derive_datalists(_pool(), num_r=3, seed=0)
    half = subsample_p(semi, 0.5, seed=0)
    counts = subset_counts(half)
    assert (counts["R"], counts["P"], counts["N"]) == (3, 4, 20)  # round(0.5 * 9) = 4 (banker's rounding)
    kept = {item["image"] for item in half["training"]}
    assert {item["image"] for item in semi["training"] if item["subset"] != "P"} <= kept
    assert half["validation"] == semi["validation"] and half["test"] == semi["test"]
    assert subsample_p(semi, 0.5, seed=0) == half and subsample_p(semi, 0.5, seed=1) != half
    assert subset_counts(subsample_p(semi, 1.0, seed=0))["P"] == 9
    with pytest.raises(ValueError, match="fraction"):
        subsample_p(semi, 0.0, seed=0)


def test_hierarchical_interval_adds_seed_variance_to_the_image_interval():
    rng = np.random.default_rng(0)
    base = rng.normal(0.8, 0.01, size=(5, 401))  # 5 seeds, identity + 400 image resamples
    same = hierarchical_interval(base + 0.02, base, seed_draws(5, 400), 0.95)  # the same gain on every seed
    assert same["difference"] == pytest.approx(0.02) and same["lower"] == pytest.approx(0.02)
    seed_effect = np.array([[0.05], [-0.03], [0.04], [-0.02], [0.01]])  # gains that differ by seed
    noisy = hierarchical_interval(base + seed_effect, base, seed_draws(5, 400), 0.95)
    images_only = paired_interval(base + seed_effect, base, 0.95)
    assert images_only["upper"] - images_only["lower"] == pytest.approx(0.0)  # blind to the seed spread
    assert noisy["lower"] < 0 < noisy["upper"] and noisy["per_seed"] == pytest.approx(seed_effect[:, 0])
    assert seed_draws(5, 400)[0].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="one seed draw per resample"):
        hierarchical_interval(base, base, seed_draws(5, 10), 0.95)


def test_validation_history_reads_the_stats_handler_lines():
    from ablation_runner import validation_history

    log = (
        "2026 - INFO - Epoch[2] Metrics -- val_auroc: 0.6 val_auroc_rib: 0.7 val_score: 0.5 \n"
        "2026 - teacher - INFO - Epoch[2] Metrics -- teacher_val_auroc_rib: 0.8 teacher_val_score: 0.6 \n"
        "2026 - INFO - Epoch: 3/4, Iter: 1/2 -- train_loss: 0.1 \n"
        "2026 - INFO - Epoch[4] Metrics -- val_auroc: 0.65 val_auroc_rib: 0.75 val_score: 0.55 \n"
    )
    assert [h["val_auroc_rib"] for h in validation_history(log)] == [0.7, 0.75]
    assert validation_history(log, "teacher_val") == [{"epoch": 2, "teacher_val_auroc_rib": 0.8,
                                                      "teacher_val_score": 0.6}]  # fmt: skip


def test_protocol_v2_document_states_the_settings_the_script_runs():
    """The numbers the v2 protocol fixes appear in its document as the script's settings hold them."""
    from ablation_settings import settings_for

    settings, text = settings_for("v2"), (REPO_ROOT / "bundle/docs/ablation_protocol_v2.md").read_text()
    pool = settings["pool"]
    assert f"generator seed {pool['seed']}" in text and f"{pool['num_images']:,} images" in text
    assert f"R = {settings['num_r']}" in text and f"difficulty {pool['difficulty']:g}" in text
    assert f"{settings['stage1']['epochs']} epochs × {settings['stage1']['samples_per_epoch']} samples" in text
    for level in settings["levels"][:-1]:
        assert f"reaches {level['val_rib_auroc']:.2f}" in text or f"reaching {level['val_rib_auroc']:.2f}" in text
    assert len(settings["levels"][-1]["seeds"]) == 5 and all(len(lv["seeds"]) == 3 for lv in settings["levels"][:-1])
    s2 = settings["stage2"]
    assert f"a0 {s2['a0']:g}" in text and f"t {s2['t']:g}" in text and f"EMA decay {s2['ema_decay']:g}" in text
    assert f"at least {s2['passes_over_p']} passes over P" in text or f"{s2['passes_over_p']} passes over P" in text
    # the shape the issue asks for: P >= 8 R, a test split of >= 1,000 images with >= 250 rib-positive
    num_images, val, test = pool["num_images"], pool["val_fraction"], pool["test_fraction"]
    training = num_images - round(num_images * val) - round(num_images * test)
    assert round(training * pool["prevalence"]) - settings["num_r"] >= settings["min_p_per_r"] * settings["num_r"]
    assert round(num_images * test) >= settings["min_test_images"] >= 1000


def test_priority_order_brings_each_arm_after_its_stage1_and_teacher_and_keeps_every_step(tmp_path):
    """Amendment 3: the plan follows ``priority``; nothing is dropped, and no arm runs before what it needs."""
    from ablation_runner import Benchmark, Launcher, Progress
    from ablation_settings import settings_for

    settings = settings_for("v2")
    plain = dict(settings, priority=None)
    ordered = [s.name for s in Benchmark(settings, tmp_path, Launcher(), Progress(), data=tmp_path).plan()]
    unordered = [s.name for s in Benchmark(plain, tmp_path, Launcher(), Progress(), data=tmp_path).plan()]
    assert sorted(ordered) == sorted(unordered) and len(set(ordered)) == len(ordered)
    assert ordered[:3] == [
        "seed 0: stage 1 and its teacher levels",
        "seed 0 level top: teacher",
        "seed 0 level top: control",
    ]
    for seed, level, arm in settings["priority"]:
        at = ordered.index(f"seed {seed} level {level}: {arm}")
        assert ordered.index(f"seed {seed}: stage 1 and its teacher levels") < at
        assert ordered.index(f"seed {seed} level {level}: teacher") < at
    named = {f"seed {s} level {lv}: {a}" for s, lv, a in settings["priority"]}
    last_named = max(ordered.index(n) for n in named)
    assert all(name in named or "teacher" in name or "stage 1" in name for name in ordered[: last_named + 1])
    with pytest.raises(ValueError, match="no step named"):
        Benchmark(dict(settings, priority=[[0, "top", "nonsense"]]), tmp_path, Launcher(), Progress()).plan()


def test_analysis_of_a_budget_cut_run_pairs_each_comparison_on_its_own_finished_seeds(tmp_path):
    """Amendment 3: a comparison uses the seeds where both arms finished; one seed is flagged indicative."""
    from ablation_report import analyse, payoff
    from ablation_settings import settings_for

    rng = np.random.default_rng(0)
    labels = [1] * 6 + [0] * 10
    runs = []
    for arm, seeds in {"control": [0, 1], "aals": [0, 1], "plain": [0]}.items():
        for seed in seeds:
            images = []
            for label in labels:
                score = float(np.clip(0.5 * label + rng.uniform(0, 0.6), 0, 1))
                entry = {"image": "x", "image_label": {}, "image_score": {}, "detections": [], "boxes": []}
                for cls in ("rib", "clavicle"):
                    entry["image_label"][cls], entry["image_score"][cls] = label, score
                    entry["detections"].append({"class": cls, "x": 0, "y": 0, "score": score / 2, "outcome": "FP"})
                    entry["boxes"] += [{"class": cls, "score": score}] if label else []
                images.append(entry)
            folder = tmp_path / f"{arm}{seed}"
            folder.mkdir()
            (folder / "detections.json").write_text(json.dumps({"images": images}))
            runs.append({"level": "top", "arm": arm, "name": arm, "seed": seed, "eval_dir": str(folder)})
    settings = settings_for("v2")
    settings["bootstrap"]["resamples"] = 40
    analysis = analyse(settings, runs, log=lambda *_: None)
    both, one = analysis["intervals"]["top:aals-control:rib_auroc"], analysis["intervals"]["top:aals-plain:rib_auroc"]
    assert both["seeds"] == [0, 1] and not both["indicative"] and len(both["per_seed"]) == 2
    assert one["seeds"] == [0] and one["indicative"] and len(one["per_seed"]) == 1
    assert not any(key.startswith("top:aals-pseudo_label") for key in analysis["intervals"])
    assert analysis["summary_mean_sd"]["top"]["plain"]["seeds"] == [0]
    levels = [{"name": "top", "teacher_val_rib_auroc": 0.85}]
    assert payoff(levels, analysis["intervals"])["indicative"] is False
