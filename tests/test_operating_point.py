"""Operating point: thresholds chosen on validation at an FP budget, saved with the checkpoint, used at inference."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from scripts.deliver.records import detection_record
from scripts.evaluate.froc import MISSED
from scripts.evaluate.operating_point import (
    OperatingPointSaver,
    choose_threshold,
    evaluate_at_operating_point,
    finding_flags,
    load_operating_point,
    operating_point_path,
)
from scripts.evaluate.overlays import render_overlay
from scripts.evaluate.report_metrics import ImageRecord

CLASSES = ["rib", "clavicle"]


def test_threshold_is_the_most_sensitive_within_the_fp_budget():
    # 10 images; FP scores 0.9, 0.5, 0.3, 0.2; boxes hit at 0.8 and 0.4, one missed
    fp, tp = np.array([0.9, 0.5, 0.3, 0.2]), np.array([0.8, 0.4, MISSED])
    result = choose_threshold(fp, tp, num_images=10, fp_rate=0.2)
    # at 0.4 two FPs (0.9, 0.5) remain = 0.2 FP/image; at 0.3 a third one would exceed the budget
    assert result == {"threshold": 0.4, "fp_per_image": 0.2, "validation_sensitivity": pytest.approx(2 / 3, abs=1e-4),
                      "num_boxes": 3}  # fmt: skip
    assert choose_threshold(fp, tp, num_images=10, fp_rate=0.4)["threshold"] == 0.2
    # 2 images: a single FP is 0.5 FP/image, over budget at any finite threshold -> no finding ever
    assert choose_threshold(np.array([0.1]), np.array([0.05]), num_images=2, fp_rate=0.2)["threshold"] is None
    # no box of the class: the threshold still bounds the FP rate, sensitivity is undefined
    none = choose_threshold(np.array([0.7, 0.6]), np.zeros(0), num_images=10, fp_rate=0.1)
    assert none["threshold"] == 0.7 and none["validation_sensitivity"] is None


class _Matches:
    """Stands in for FROCMetric: fixed per-class matches."""

    def class_matches(self):
        return [(np.array([0.9, 0.5, 0.3]), np.array([0.8])), (np.zeros(0), np.array([0.6]))], 10


class _Engine:
    class state:  # noqa: N801
        epoch = 3


def test_saver_writes_only_when_the_checkpoint_was_saved(tmp_path):
    checkpoint = tmp_path / "model.pt"
    saver = OperatingPointSaver(_Matches(), str(checkpoint), CLASSES, fp_rate=0.2)
    output = tmp_path / "model_operating_point.json"
    assert operating_point_path(checkpoint) == str(output)
    saver(_Engine())
    assert not output.exists()  # no checkpoint yet
    checkpoint.write_bytes(b"weights")
    saver(_Engine())
    written = json.loads(output.read_text())
    assert written["epoch"] == 3 and written["split"] == "validation" and written["num_images"] == 10
    assert written["classes"]["rib"]["threshold"] == 0.5 and written["classes"]["clavicle"]["threshold"] == 0.6
    output.unlink()
    saver(_Engine())
    assert not output.exists()  # checkpoint unchanged: this validation did not select the weights
    stat = checkpoint.stat()
    os.utime(checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    saver(_Engine())
    assert output.exists()


def test_load_falls_back_with_a_warning_and_refuses_other_classes(tmp_path, caplog):
    loaded = load_operating_point(tmp_path / "missing.json", CLASSES, fallback_threshold=0.5)
    assert loaded["rib"] == {"threshold": 0.5, "fp_per_image": None, "validation_sensitivity": None}
    assert "not one chosen on validation" in caplog.text
    bad = tmp_path / "bad_operating_point.json"
    bad.write_text(json.dumps({"classes": {"rib": {"threshold": 0.3}}}))
    with pytest.raises(ValueError, match="bad_operating_point.json: .*clavicle"):
        load_operating_point(bad, CLASSES)


OPERATING_POINT = {
    "rib": {"threshold": 0.5, "fp_per_image": 0.2, "validation_sensitivity": 0.7},
    "clavicle": {"threshold": None, "fp_per_image": 0.0, "validation_sensitivity": 0.0},
}


def test_findings_image_calls_and_the_json_contract():
    detections = torch.tensor([[10.0, 20.0, 0.8, 0], [30.0, 40.0, 0.2, 0], [50.0, 60.0, 0.9, 1]])
    flags, calls = finding_flags(detections, OPERATING_POINT, CLASSES)
    assert flags.tolist() == [True, False, False] and calls == {"rib": True, "clavicle": False}
    plain = detection_record(detections, torch.tensor([0.8, 0.9]), [100, 120], CLASSES)
    record = detection_record(
        detections, torch.tensor([0.8, 0.9]), [100, 120], CLASSES, operating_point=OPERATING_POINT
    )
    assert set(record) == set(plain) | {"image_call", "operating_point"}  # every existing key kept
    assert [d["finding"] for d in record["detections"]] == [True, False, False]
    assert [{k: v for k, v in d.items() if k != "finding"} for d in record["detections"]] == plain["detections"]
    assert record["image_call"] == calls and record["operating_point"] == OPERATING_POINT
    json.dumps(record, allow_nan=False)


def test_overlay_draws_findings_and_candidates_differently():
    image, heatmap = torch.zeros(1, 64, 64), torch.zeros(2, 16, 16)
    detections = torch.tensor([[16.0, 16.0, 0.8, 0], [48.0, 48.0, 0.2, 0]])
    args = (image, heatmap, detections, torch.ones(2), torch.tensor([64.0, 64.0]), CLASSES)
    drawn = np.asarray(render_overlay(*args, findings=[True, False])).astype(int)
    swapped = np.asarray(render_overlay(*args, findings=[False, True])).astype(int)

    def ink(picture, x, y):  # red ink (rib colour) around a point
        patch = picture[y - 8 : y + 9, x - 8 : x + 9]
        return int(((patch[..., 0] > 200) & (patch[..., 1] < 100)).sum())

    assert ink(drawn, 16, 16) > 2 * ink(drawn, 48, 48) > 0  # the finding's ring is heavier than the candidate's
    assert ink(swapped, 48, 48) > 2 * ink(swapped, 16, 16) > 0


def test_evaluation_at_the_shipped_threshold_counts_lesions_and_image_calls():
    records = [
        # a boxed positive: one hit above the threshold, one FP below it
        ImageRecord("a", [1, 0], [0.8, 0.1], [[5, 5, 0.8, 0], [50, 50, 0.3, 0]], [[0, 0, 10, 10, 0]]),
        # a negative with an FP above the threshold
        ImageRecord("b", [0, 0], [0.6, 0.1], [[5, 5, 0.6, 0]]),
        # an image-level positive without boxes: image call only, not in the lesion counts
        ImageRecord("c", [1, 0], [0.9, 0.0], [[5, 5, 0.9, 0]], boxed=False),
    ]
    result = evaluate_at_operating_point(records, CLASSES, OPERATING_POINT)["rib"]
    assert result["sensitivity"] == 1.0 and result["fp_per_image"] == 0.5 and result["num_boxed_images"] == 2
    assert result["image_sensitivity"] == 1.0 and result["image_specificity"] == 0.0
    assert result["threshold"] == 0.5 and result["validation_sensitivity"] == 0.7
    clavicle = evaluate_at_operating_point(records, CLASSES, OPERATING_POINT)["clavicle"]
    assert clavicle["sensitivity"] is None and clavicle["fp_per_image"] == 0.0


def test_demo_summary_lists_the_shipped_operating_point(tmp_path):
    from summarize_evaluations import summarize  # scripts/ is on the path (pyproject.toml, pytest's pythonpath)

    metrics = {"classes": {name: {"auroc": 0.7, "froc_paper": 0.3} for name in CLASSES},
               "mean": {"auroc": 0.7, "froc_paper": 0.3}}  # fmt: skip
    records = [ImageRecord("a", [1, 0], [0.8, 0.1], [[5, 5, 0.8, 0]], [[0, 0, 10, 10, 0]])]
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(metrics))
    shipped = evaluate_at_operating_point(records, CLASSES, OPERATING_POINT)
    (folder / "operating_point.json").write_text(json.dumps(shipped))
    table = summarize([folder])
    assert "chosen on validation" in table
    section = table.split("chosen on validation", 1)[1].splitlines()
    rib = [line for line in section if line.split()[1:2] == ["rib"]][0].split()
    assert rib[2:6] == ["0.5000", "1.000", "0.000", "0.700"]
