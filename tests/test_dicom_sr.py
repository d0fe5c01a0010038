"""DICOM SR output: a DICOM phantom study through inference with ``--write_dicom_sr true`` gives a Comprehensive 3D SR
whose points, codes, scores and references read back equal to the JSON findings, and which ``dciodvfy`` accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from bundle_runs import run_bundle
from conftest import REPO_ROOT
from helpers import write_png
from pydicom import dcmread
from pydicom.uid import generate_uid

from cxr_phantom.writers import write_dicom as write_phantom_dicom
from scripts.model.network import FractureHeatmapNet

pytestmark = pytest.mark.slow  # inference bundle runs writing DICOM SR: full tier only

hd = pytest.importorskip("highdicom", reason="optional extra: pip install -r requirements-deploy.txt")

CODES = {"rib": "33737001", "clavicle": "58150001"}
LIGHT = {"block": "basic", "layers": (1, 1, 1, 1), "widths": (8, 16, 32, 64), "fpn_channels": 16}


def _dciodvfy_errors(path) -> list[str]:
    """Error lines of dciodvfy (dicom3tools) for ``path``; skips the test where it is not installed."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed: apt-get install dicom3tools")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def _read_report(path):
    """Findings and image-level results of an SR written by scripts.deliver.dicom_sr, read back with highdicom."""
    report = hd.sr.srread(path)
    findings = []
    for group in report.content.get_planar_roi_measurement_groups():
        region = group.roi
        (x, y), = region.value.tolist()  # fmt: skip
        reference = region.ContentSequence[0].ReferencedSOPSequence[0]
        (measurement,) = group.get_measurements()
        findings.append({"code": group.finding_type.value, "x": x, "y": y, "sop": reference.ReferencedSOPInstanceUID,
                         "certainty": measurement.value, "unit": measurement.unit.value})  # fmt: skip
    calls = {}
    for group in report.content.get_image_measurement_groups():
        (evaluation,) = group.get_qualitative_evaluations()
        image = [item for item in group[0].ContentSequence if item.ValueType == "IMAGE"][0]
        sop = image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        calls[(sop, group.finding_type.value)] = evaluation.value.meaning
    return report, findings, calls


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Two DICOM images of one phantom study, a PNG, and random light weights."""
    root = tmp_path_factory.mktemp("sr")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    write_phantom_dicom(images / "pa.dcm", rng.integers(0, 4000, (96, 80)).astype(np.uint16), "sr-test", 7)
    second = dcmread(images / "pa.dcm")
    second.SOPInstanceUID = second.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    second.InstanceNumber = 2
    second.save_as(images / "pa2.dcm", enforce_file_format=True)
    write_png(images / "other.png", rng.integers(0, 65535, (64, 64)).astype(np.uint16))
    torch.manual_seed(0)
    network = FractureHeatmapNet(num_classes=2, **LIGHT)
    with torch.no_grad():  # rib logits around 0 (probabilities around 0.5): findings and candidates at 0.5
        network.head[-1].bias[0] = 0.0
    torch.save(network.state_dict(), root / "model.pt")
    return root


def test_inference_writes_an_sr_that_reads_back_to_the_json_findings(study, tmp_path):
    # thresholds: rib in the middle of the network's scores, clavicle none within the budget
    operating_point = {"classes": {"rib": {"threshold": 0.5, "fp_per_image": 0.2, "validation_sensitivity": 0.5},
                                   "clavicle": {"threshold": None, "fp_per_image": 0.0,
                                                "validation_sensitivity": None}}}  # fmt: skip
    (tmp_path / "op.json").write_text(json.dumps(operating_point))
    out = tmp_path / "results"
    run_bundle(
        "inference", ["inference.json"], "--dataset_dir", str(study / "images"), "--output_dir", str(out),
        "--ckpt_path", str(study / "model.pt"), "--operating_point_file", str(tmp_path / "op.json"),
        "--score_floor", "0.0", "--write_dicom_sr", "true", "--write_dicom_gsps", "true",
    )  # fmt: skip
    source = dcmread(study / "images" / "pa.dcm", stop_before_pixels=True)
    reports = sorted(out.glob("sr_*.dcm"))
    assert [p.name for p in reports] == [f"sr_{source.StudyInstanceUID}.dcm"]  # one report for the study, no PNG
    report, findings, calls = _read_report(reports[0])
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "AccessionNumber", "StudyID"):
        assert report[keyword].value == source[keyword].value, keyword
    assert report.Modality == "SR" and report.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    expected = []
    for name in ("pa", "pa2"):
        record = json.loads((out / f"{name}.json").read_text())
        sop = dcmread(study / "images" / f"{name}.dcm", stop_before_pixels=True).SOPInstanceUID
        for detection in record["detections"]:
            if detection["finding"]:
                expected.append((CODES[detection["class"]], detection["x"], detection["y"], sop, detection["score"]))
        for cls, call in record["image_call"].items():
            assert calls[(sop, CODES[cls])] == ("Present" if call else "Absent")
    candidates = [d for name in ("pa", "pa2") for d in json.loads((out / f"{name}.json").read_text())["detections"]
                  if not d["finding"]]  # fmt: skip
    assert expected and candidates, "both findings and candidates are needed for this test"
    assert all(code == CODES["rib"] for code, *_ in expected)  # clavicle: threshold null, no finding
    assert len(findings) == len(expected)
    for (code, x, y, sop, score), finding in zip(sorted(expected), sorted(findings, key=lambda f: (f["code"], f["x"],
                                                 f["y"], f["sop"])), strict=True):  # fmt: skip
        assert finding["code"] == code and finding["sop"] == sop and finding["unit"] == "%"
        assert finding["x"] == pytest.approx(x, abs=0.051) and finding["y"] == pytest.approx(y, abs=0.051)
        assert finding["certainty"] == pytest.approx(100 * score, abs=0.011)
    assert _dciodvfy_errors(reports[0]) == []
    # the presentation states draw the same findings on each image
    for name in ("pa", "pa2"):
        sop = dcmread(study / "images" / f"{name}.dcm", stop_before_pixels=True).SOPInstanceUID
        state = dcmread(out / f"pr_{sop}.dcm")
        assert state.Modality == "PR" and state.PatientID == source.PatientID
        referenced = state.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID
        assert referenced == sop
        annotations = state.get("GraphicAnnotationSequence", [])
        objects = [g for a in annotations for g in a.GraphicObjectSequence]
        assert all(g.GraphicType == "CIRCLE" for g in objects)
        centres = sorted(tuple(float(v) for v in g.GraphicData[:2]) for g in objects)
        points = sorted((f["x"], f["y"]) for f in findings if f["sop"] == sop)
        assert len(centres) == len(points)
        np.testing.assert_allclose(centres, np.reshape(points, (-1, 2)), atol=1e-3)
        assert _dciodvfy_errors(out / f"pr_{sop}.dcm") == []


def test_no_sr_by_default_and_the_core_does_not_import_highdicom(study, tmp_path):
    out = tmp_path / "results"
    output = run_bundle(
        "inference", ["inference.json"], "--dataset_dir", str(study / "images"), "--output_dir", str(out),
        "--ckpt_path", str(study / "model.pt"),
    )  # fmt: skip
    assert not list(out.glob("sr_*.dcm")) and (out / "pa.json").is_file()
    assert "DICOM SR" not in output
    check = "import sys; sys.path.insert(0, 'bundle'); import scripts.deliver.dicom_sr, scripts.deliver.writers; "
    check += "assert 'highdicom' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True, cwd=REPO_ROOT)
