"""End-to-end bundle runs on a tiny phantom set, exactly as a user types them: train, resume, distill, evaluate, infer.

Each run is a ``python -m monai.bundle run ...`` subprocess from the repository root, with the light network and
64 px images so that the whole module takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_runs import run_bundle
from monai.metrics import compute_roc_auc
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from scripts.evaluate.froc import froc_score


def test_stage1_saves_weights_tensorboard_and_resumes(stage1, phantoms, tmp_path):
    assert (stage1 / "model.pt").is_file() and (stage1 / "checkpoint_epoch=1.pt").is_file()
    events = EventAccumulator(str(stage1 / "runs" / "tensorboard"), size_guidance={"images": 0}).Reload()
    tags = {name: set(values) for name, values in events.Tags().items() if isinstance(values, list)}
    assert {"train_loss", "val_auroc", "val_froc_rib"} <= tags["scalars"]
    overlays = {tag for tag in tags["images"] if tag.startswith("val_overlay/")}
    assert len(overlays) == 4  # tensorboard_overlays images per validation
    image = events.Images("val_overlay/0")[-1]
    assert image.step == 1 and image.width > 0 and image.height > 0
    weights = torch.load(stage1 / "model.pt", weights_only=True)
    assert any(key.startswith("head.") for key in weights)
    # the operating point chosen on validation sits next to the selected checkpoint
    operating_point = json.loads((stage1 / "model_operating_point.json").read_text())
    assert operating_point["split"] == "validation" and operating_point["fp_rate"] == 0.2
    assert operating_point["checkpoint"] == "model.pt" and operating_point["epoch"] == 1
    for values in operating_point["classes"].values():
        assert values["threshold"] is None or 0 <= values["threshold"] <= 1
        assert values["fp_per_image"] <= 0.2
    # resume with the default run id: continues at epoch 2, does not restart at 1 (in a copy: the session's
    # stage-1 model stays as trained for the other tests)
    resumed = shutil.copytree(stage1, tmp_path / "stage1")
    output = run_bundle(
        None, ["train.json"], "--dataset_dir", str(phantoms), "--ckpt_dir", str(resumed),
        "--output_dir", str(resumed / "runs"), "--train#trainer#max_epochs", "2", "--train#samples_per_epoch", "8",
        "--resume_checkpoint", str(resumed / "checkpoint_epoch=1.pt"),
    )  # fmt: skip
    assert "Restored all variables" in output
    assert "Epoch: 2/2" in output and "Epoch: 1/2" not in output
    assert (resumed / "checkpoint_epoch=2.pt").is_file()


@pytest.mark.slow
def test_distillation_trains_student_and_teacher_and_resumes(stage1, phantoms, tmp_path):
    common = [
        "--dataset_dir", str(phantoms), "--stage1_checkpoint", str(stage1 / "model.pt"), "--ckpt_dir", str(tmp_path),
        "--output_dir", str(tmp_path / "runs"), "--train#samples_per_epoch", "8",
    ]  # fmt: skip
    output = run_bundle("training", ["train.json", "distill.json"], *common, "--train#trainer#max_epochs", "1")
    assert "loaded weights from" in output and "teacher map maxima" in output
    assert (tmp_path / "model.pt").is_file() and (tmp_path / "teacher.pt").is_file()
    for name in ("model", "teacher"):
        assert json.loads((tmp_path / f"{name}_operating_point.json").read_text())["checkpoint"] == f"{name}.pt"
    checkpoint = torch.load(tmp_path / "checkpoint_epoch=1.pt", weights_only=True)
    assert {"model", "teacher", "optimizer", "trainer"} <= set(checkpoint)
    output = run_bundle(
        None, ["train.json", "distill.json"], *common, "--train#trainer#max_epochs", "2",
        "--resume_checkpoint", str(tmp_path / "checkpoint_epoch=1.pt"),
    )  # fmt: skip
    assert "Epoch: 2/2" in output and "Epoch: 1/2" not in output
    first = torch.load(tmp_path / "checkpoint_epoch=1.pt", weights_only=True)["trainer"]
    resumed = torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)["trainer"]
    assert resumed["iteration"] == 2 * first["iteration"]


@pytest.mark.slow
def test_evaluation_writes_every_output_and_numbers_match_direct_computation(stage1, phantoms, tmp_path):
    output = run_bundle(
        "evaluating", ["train.json", "evaluate.json"], "--dataset_dir", str(phantoms),
        "--ckpt_path", str(stage1 / "model.pt"), "--output_dir", str(tmp_path),
    )  # fmt: skip
    for name in ["metrics.json", "detections.json", "report.html", "froc.png", "roc.png", "froc_curve_rib.csv"]:
        assert (tmp_path / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    images = json.loads((tmp_path / "detections.json").read_text())["images"]
    test_items = json.loads((phantoms / "datalist.json").read_text())["test"]
    assert len(images) == len(test_items) == metrics["num_images"]
    for name in metrics["classes"]:
        detections = [
            np.array([[d["x"], d["y"], d["score"]] for d in image["detections"] if d["class"] == name]).reshape(-1, 3)
            for image in images
        ]
        boxes = [
            np.array([[b[k] for k in ("x1", "y1", "x2", "y2")] for b in image["boxes"] if b["class"] == name])
            .reshape(-1, 4)
            for image in images
        ]  # fmt: skip
        expected_froc = froc_score(detections, boxes) if sum(len(b) for b in boxes) else None
        assert metrics["classes"][name]["froc_paper"] == pytest.approx(expected_froc, abs=1e-3)
        labels = torch.tensor([image["image_label"][name] for image in images], dtype=torch.float32)
        scores = torch.tensor([image["image_score"][name] for image in images])
        expected_auc = float(compute_roc_auc(scores, labels)) if 0 < labels.sum() < len(labels) else None
        assert metrics["classes"][name]["auroc"] == pytest.approx(expected_auc, abs=1e-3)
        # the evaluator's own ignite metrics (computed during the run, unrounded) agree with the report
        logged = re.search(rf"val_auroc_{name}: (\S+)", output).group(1)
        assert (metrics["classes"][name]["auroc"] is None) == (logged == "nan")
        if logged != "nan":
            assert metrics["classes"][name]["auroc"] == pytest.approx(float(logged), abs=1e-3)
    # the shipped operating point (chosen on validation) measured on the test split, equal to a recount
    shipped = json.loads((tmp_path / "operating_point.json").read_text())
    assert metrics["shipped_operating_point"] == shipped  # in metrics.json and report.html too
    assert "Shipped operating point" in (tmp_path / "report.html").read_text()
    chosen = json.loads((stage1 / "model_operating_point.json").read_text())["classes"]
    for name, result in shipped.items():
        threshold = chosen[name]["threshold"]
        assert result["threshold"] == threshold  # not re-chosen on the test split
        threshold = float("inf") if threshold is None else threshold
        boxes = [b for image in images for b in image["boxes"] if b["class"] == name]
        false_positives = [
            d for image in images for d in image["detections"]
            if d["class"] == name and d["outcome"] == "FP" and d["score"] >= threshold
        ]  # fmt: skip
        hits = [b for b in boxes if b["score"] is not None and b["score"] >= threshold]
        assert result["sensitivity"] == (pytest.approx(len(hits) / len(boxes), abs=1e-4) if boxes else None)
        assert result["fp_per_image"] == pytest.approx(len(false_positives) / len(images), abs=1e-4)


@pytest.mark.slow
def test_inference_writes_detections_and_overlays_and_survives_bad_files(stage1, phantoms, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    test_items = json.loads((phantoms / "datalist.json").read_text())["test"][:3]
    for item in test_items:
        shutil.copy(phantoms / item["image"], images)
    (images / "corrupt.dcm").write_bytes(b"\x00" * 300)
    (images / "notes.png").write_text("not an image")
    out = tmp_path / "results"
    shipped = json.loads((stage1 / "model_operating_point.json").read_text())["classes"]
    operating_point = {name: {k: v[k] for k in ("threshold", "fp_per_image", "validation_sensitivity")}
                       for name, v in shipped.items()}  # fmt: skip
    run_bundle(
        "inference", ["inference.json"], "--dataset_dir", str(images), "--output_dir", str(out),
        "--ckpt_path", str(stage1 / "model.pt"), "--score_floor", "0.0", status=2,  # 2: some inputs were refused
    )  # fmt: skip
    for item in test_items:
        stem = Path(item["image"]).stem
        record = json.loads((out / f"{stem}.json").read_text())
        assert (out / f"{stem}_overlay.png").stat().st_size > 0
        keys = {"image", "image_size", "classes", "image_score", "detections", "warnings", "image_call"}
        assert set(record) == keys | {"operating_point"}
        assert record["operating_point"] == operating_point
        assert record["classes"] == ["rib", "clavicle"]
        width, height = record["image_size"]
        assert record["detections"], "score_floor 0 must give peaks"
        for detection in record["detections"]:
            assert detection["class"] in record["classes"]
            assert 0 <= detection["x"] < width and 0 <= detection["y"] < height
            assert detection["score"] <= record["image_score"][detection["class"]] + 1e-4
            threshold = operating_point[detection["class"]]["threshold"]
            assert detection["finding"] == (threshold is not None and detection["score"] >= threshold - 1e-4)
        for name in record["classes"]:
            calls = [d["finding"] for d in record["detections"] if d["class"] == name]
            assert record["image_call"][name] == any(calls)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == 3 and summary["refused"] == 2
    reasons = {Path(f["image"]).name: f.get("reason") for f in summary["images"]}
    assert "corrupt.dcm" in reasons["corrupt.dcm"] and "cannot read as DICOM" in reasons["corrupt.dcm"]
    assert "cannot read as PNG" in reasons["notes.png"]


@pytest.mark.slow
def test_teacher_starts_from_stage1_weights_not_random(stage1, phantoms, tmp_path):
    """The EMA teacher deep-copies the student when built: stage-1 weights must be loaded before that."""
    run_bundle(
        "training", ["train.json", "distill.json"], "--dataset_dir", str(phantoms),
        "--stage1_checkpoint", str(stage1 / "model.pt"), "--ckpt_dir", str(tmp_path),
        "--output_dir", str(tmp_path / "runs"), "--train#trainer#max_epochs", "1", "--train#samples_per_epoch", "8",
        "--ema_decay", "0.999999",
    )  # fmt: skip
    stage1_weights = torch.load(stage1 / "model.pt", weights_only=True)
    checkpoint = torch.load(tmp_path / "checkpoint_epoch=1.pt", weights_only=True)
    learned = [k for k in stage1_weights if "running_" not in k and "num_batches" not in k]
    teacher_gap = max((checkpoint["teacher"][k] - stage1_weights[k]).abs().max().item() for k in learned)
    student_gap = max((checkpoint["model"][k] - stage1_weights[k]).abs().max().item() for k in learned)
    assert teacher_gap < 1e-4 < student_gap  # the teacher barely moved from stage 1; the student trained
