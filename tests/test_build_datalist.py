"""Public-data datalist builders (VinDr-CXR, PadChest, combined) on small CSVs in the datasets' real column layouts.

No real data is used: the CSVs below copy the column layouts of VinDr-CXR 1.0.0 (PhysioNet) and PadChest
(BIMCV), with made-up rows. The last test trains stage 1 for one epoch on the combined datalist and evaluates on a
PadChest-only test split (image-level labels: AUROC without FROC).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from build_datalist import fuse_reader_boxes, main, parse_padchest_labels
from bundle_runs import run_bundle
from helpers import write_dicom, write_png

from scripts.data.datalist import load_datalist

VINDR_LABELS = [
    "Aortic enlargement", "Atelectasis", "Calcification", "Cardiomegaly", "Clavicle fracture", "Consolidation",
    "Edema", "Emphysema", "Enlarged PA", "ILD", "Infiltration", "Lung Opacity", "Lung cavity", "Lung cyst",
    "Mediastinal shift", "Nodule/Mass", "Pleural effusion", "Pleural thickening", "Pneumothorax",
    "Pulmonary fibrosis", "Rib fracture", "Other lesion", "COPD", "Lung tumor", "Pneumonia", "Tuberculosis",
    "Other diseases", "No finding",
]  # fmt: skip
# (image_id, rad_id, class_name, box or None): three readers per training image, a consensus for test images
VINDR_TRAIN = [
    ("rib1", "R8", "Rib fracture", (10, 10, 30, 30)),
    ("rib1", "R9", "Rib fracture", (12, 12, 32, 32)),  # overlaps R8's box: one fracture, mean box
    ("rib1", "R9", "Aortic enlargement", (40, 5, 60, 20)),
    ("rib1", "R10", "No finding", None),
    ("clav1", "R8", "Clavicle fracture", (50, 8, 80, 20)),
    ("clav1", "R9", "Rib fracture", (5, 60, 15, 70)),  # second fracture, one reader only
    ("clav1", "R10", "Clavicle fracture", (52, 9, 82, 21)),
    *[(f"neg{i}", f"R{r}", "No finding", None) for i in range(8) for r in (1, 2, 3)],
    ("other1", "R1", "Cardiomegaly", (20, 40, 70, 80)),
    ("other1", "R2", "No finding", None),
    ("other1", "R3", "No finding", None),
]
VINDR_TEST = [
    ("trib", "R11", "Rib fracture", (20, 20, 40, 36)),
    ("tneg", "R11", "No finding", None),
]
PADCHEST_HEADER = [
    "", "ImageID", "ImageDir", "StudyDate_DICOM", "StudyID", "PatientID", "PatientBirth", "PatientSex_DICOM",
    "ViewPosition_DICOM", "Projection", "MethodProjection", "Pediatric", "Modality_DICOM", "Manufacturer_DICOM",
    "PhotometricInterpretation_DICOM", "PixelRepresentation_DICOM", "PixelAspectRatio_DICOM",
    "SpatialResolution_DICOM", "BitsStored_DICOM", "WindowCenter_DICOM", "WindowWidth_DICOM", "Rows_DICOM",
    "Columns_DICOM", "XRayTubeCurrent_DICOM", "Exposure_DICOM", "ExposureInuAs_DICOM", "ExposureTime",
    "RelativeXRayExposure_DICOM", "ReportID", "Report", "MethodLabel", "Labels", "Localizations",
    "LabelsLocalizationsBySentence", "labelCUIS", "LocalizationsCUIS",
]  # fmt: skip
# (image id, patient, projection, method, labels)
PADCHEST_ROWS = [
    ("p1.png", "pat1", "PA", "Physician", "['rib fracture', 'pleural effusion']"),
    ("p1l.png", "pat1", "L", "Physician", "['rib fracture']"),  # lateral: dropped
    ("p2.png", "pat2", "AP", "RNN_model", "['clavicle fracture']"),
    ("p3.png", "pat3", "PA", "Physician", "['callus rib fracture']"),
    ("p4.png", "pat4", "PA", "Physician", "['vertebral fracture']"),
    ("p5.png", "pat5", "AP_horizontal", "Physician", "[' rib fracture', 'callus rib fracture', '']"),
    ("p6.png", "pat6", "COSTAL", "Physician", "['rib fracture']"),
    *[(f"n{i}.png", f"npat{i}", "PA", "Physician" if i % 2 else "RNN_model", "['normal']") for i in range(12)],
    *[(f"f{i}.png", f"fpat{i}", "PA", "Physician", "['rib fracture']") for i in range(6)],
    ("n0b.png", "npat0", "PA", "Physician", "['cardiomegaly']"),  # same patient as n0.png: same split
    ("x.png", "xpat", "PA", "Physician", "['exclude']"),
    ("u.png", "upat", "PA", "Physician", ""),
]


def _write_vindr(root, with_images):
    csv_dir = root / "annotations"
    csv_dir.mkdir(parents=True)
    for split, rows in (("train", VINDR_TRAIN), ("test", VINDR_TEST)):
        with (csv_dir / f"annotations_{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_id", "rad_id", "class_name", "x_min", "y_min", "x_max", "y_max"])
            for image_id, reader, name, box in rows:
                writer.writerow([image_id, reader, name, *(box if box else ("", "", "", ""))])
        with (csv_dir / f"image_labels_{split}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_id", "rad_ID", *VINDR_LABELS])
            per_reader = {}
            for image_id, reader, name, _ in rows:
                per_reader.setdefault((image_id, reader), set()).add(name)
            for (image_id, reader), names in per_reader.items():
                writer.writerow([image_id, reader, *(int(label in names) for label in VINDR_LABELS)])
        if with_images:
            (root / split).mkdir()
            rng = np.random.default_rng(0)
            for image_id in {row[0] for row in rows}:
                write_dicom(root / split / f"{image_id}.dicom", rng.integers(0, 4095, (96, 96)).astype(np.uint16))
    return csv_dir


def _write_padchest(root, with_images):
    root.mkdir(parents=True, exist_ok=True)
    csv_path = root / "padchest.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PADCHEST_HEADER)
        for index, (image, patient, projection, method, labels) in enumerate(PADCHEST_ROWS):
            row = dict.fromkeys(PADCHEST_HEADER, "")
            row.update({"": str(index), "ImageID": image, "ImageDir": str(index % 2), "PatientID": patient,
                        "Projection": projection, "MethodLabel": method, "Labels": labels})  # fmt: skip
            writer.writerow(row.values())
    if with_images:
        rng = np.random.default_rng(1)
        for index, (image, *_rest) in enumerate(PADCHEST_ROWS):
            folder = root / "images" / str(index % 2)
            folder.mkdir(parents=True, exist_ok=True)
            write_png(folder / image, rng.integers(0, 65535, (80, 72)).astype(np.uint16))
    return csv_path


def test_fusion_groups_overlapping_readers_and_applies_consensus():
    boxes = [(10, 10, 30, 30), (12, 12, 32, 32), (100, 100, 110, 110), (11, 9, 29, 31)]
    fused, rejected = fuse_reader_boxes(boxes, ["R1", "R2", "R3", "R1"], iou_threshold=0.1, min_readers=1)
    assert rejected == 0 and len(fused) == 2
    np.testing.assert_allclose(fused[0], np.mean([boxes[0], boxes[1], boxes[3]], axis=0), atol=0.05)
    assert fused[1] == [100, 100, 110, 110]
    fused, rejected = fuse_reader_boxes(boxes, ["R1", "R2", "R3", "R1"], iou_threshold=0.1, min_readers=2)
    assert len(fused) == 1 and rejected == 1  # the lone box of R3 lacks a second reader
    # the result does not depend on the row order
    order = [3, 2, 1, 0]
    assert (
        fuse_reader_boxes([boxes[i] for i in order], ["R1", "R3", "R2", "R1"])[0]
        == fuse_reader_boxes(boxes, ["R1", "R2", "R3", "R1"])[0]
    )


def test_padchest_labels_are_parsed_as_data_only():
    assert parse_padchest_labels("[' Rib fracture', '', 'callus rib fracture']", "x") == [
        "rib fracture",
        "callus rib fracture",
    ]
    with pytest.raises(ValueError, match="not a list of strings"):
        parse_padchest_labels("__import__('os').system('echo no')", "labels.csv: line 3")


def test_vindr_regime_fusion_and_splits(tmp_path, capsys):
    csv_dir = _write_vindr(tmp_path, with_images=False)
    out = tmp_path / "vindr.json"
    report = main(["vindr", "--csv-dir", str(csv_dir), "--image-dir", str(tmp_path), "--out", str(out),
                   "--val-fraction", "0.2", "--seed", "1"])  # fmt: skip
    datalist = json.loads(out.read_text())
    every = {e["image"].split("/")[-1]: (s, e) for s in ("training", "validation", "test") for e in datalist[s]}
    negatives = {f"neg{i}.dicom" for i in range(8)}
    assert set(every) == {"rib1.dicom", "clav1.dicom", *negatives, "trib.dicom", "tneg.dicom"}
    assert "other1.dicom" not in every  # other finding, no fracture: not a "No finding" negative
    split, rib1 = every["rib1.dicom"]
    assert rib1["box_classes"] == ["rib"] and rib1["boxes"] == [[11.0, 11.0, 31.0, 31.0]]
    split, clav1 = every["clav1.dicom"]
    assert sorted(clav1["box_classes"]) == ["clavicle", "rib"] and clav1["labels"] == {"rib": 1, "clavicle": 1}
    assert every["trib.dicom"][0] == "test" and every["tneg.dicom"][0] == "test"
    assert every["trib.dicom"][1]["image"] == str(tmp_path.resolve() / "test" / "trib.dicom")
    for entry in datalist["training"]:
        assert entry["subset"] == ("R" if entry["boxes"] else "N")
    assert len(datalist["validation"]) == 2  # 20 % of the 10 usable training images, drawn by image
    assert report["excluded"] == {"vindr: other findings, no fracture (--negatives no-finding)": 1}
    assert "training" in capsys.readouterr().out
    # the bundle's loader accepts every split
    for split in ("training", "validation", "test"):
        assert load_datalist(out, split, check_files=False)
    # consensus of two readers: clav1's lone rib box is dropped, the image keeps its clavicle fracture only
    main(["vindr", "--csv-dir", str(csv_dir), "--image-dir", str(tmp_path), "--out", str(out), "--min-readers", "2",
          "--negatives", "no-fracture"])  # fmt: skip
    datalist = json.loads(out.read_text())
    entries = {e["image"].split("/")[-1]: e for split in ("training", "validation", "test") for e in datalist[split]}
    assert entries["clav1.dicom"]["box_classes"] == ["clavicle"] and entries["clav1.dicom"]["labels"]["rib"] == 0
    assert "other1.dicom" in entries and "rib1.dicom" in entries


def test_padchest_regime_patients_views_callus_and_physician_only(tmp_path):
    csv_path = _write_padchest(tmp_path, with_images=False)
    out = tmp_path / "padchest.json"
    report = main(["padchest", "--csv", str(csv_path), "--image-dir", str(tmp_path / "images"), "--out", str(out),
                   "--val-fraction", "0.25", "--test-fraction", "0.25", "--seed", "2"])  # fmt: skip
    datalist = json.loads(out.read_text())
    entries = [(split, e) for split in ("training", "validation", "test") for e in datalist[split]]
    names = {e["image"].split("/")[-1] for _, e in entries}
    assert not names & {"p1l.png", "p6.png", "p3.png", "p4.png", "x.png", "u.png"}
    excluded = report["excluded"]
    assert excluded["padchest: not frontal (projection L)"] == 1
    assert excluded["padchest: not frontal (projection COSTAL)"] == 1
    assert excluded["padchest: callus rib fracture only (--callus exclude)"] == 1
    assert excluded["padchest: other fracture labels only"] == 1 and excluded["padchest: no labels"] == 1
    # one split per patient
    patient_split = {}
    for split, entry in entries:
        assert patient_split.setdefault(entry["patient"], split) == split
    for split, entry in entries:
        if split == "training":
            assert entry["subset"] == ("P" if any(entry["labels"].values()) else "N")
        else:
            assert entry["boxed"] is False and entry["label_method"] == "Physician"
    p5 = [e for _, e in entries if e["image"].endswith("p5.png")]  # AP_horizontal, fresh + callus: rib positive
    assert p5 and p5[0]["labels"] == {"rib": 1, "clavicle": 0}
    for split in ("training", "validation", "test"):
        if datalist[split]:
            assert load_datalist(out, split, check_files=False)
    # callus counts as a rib fracture when asked; RNN-labelled rows are kept in evaluation with --eval-labels all
    main(["padchest", "--csv", str(csv_path), "--image-dir", str(tmp_path / "images"), "--out", str(out),
          "--callus", "positive", "--eval-labels", "all", "--val-fraction", "0", "--test-fraction", "0"])  # fmt: skip
    datalist = json.loads(out.read_text())
    p3 = [e for e in datalist["training"] if e["image"].endswith("p3.png")]
    assert p3 and p3[0]["subset"] == "P" and p3[0]["labels"] == {"rib": 1, "clavicle": 0}
    assert not datalist["validation"] and not datalist["test"]


def test_bad_label_files_are_named(tmp_path):
    bad = tmp_path / "padchest.csv"
    bad.write_text("ImageID,PatientID,Labels\na.png,1,['normal']\n")
    with pytest.raises(SystemExit, match="padchest.csv: missing column"):
        main(["padchest", "--csv", str(bad), "--image-dir", str(tmp_path), "--out", str(tmp_path / "o.json")])


@pytest.mark.slow
def test_combined_datalist_trains_and_evaluates_an_image_level_test_split(tmp_path):
    """VinDr-CXR gives R, N and boxed validation; PadChest gives P and N; a PadChest-only test split is scored."""
    vindr_csv = _write_vindr(tmp_path / "vindr", with_images=True)
    padchest_csv = _write_padchest(tmp_path / "padchest", with_images=True)
    main(["vindr", "--csv-dir", str(vindr_csv), "--image-dir", str(tmp_path / "vindr"),
          "--out", str(tmp_path / "vindr.json"), "--val-fraction", "0.3"])  # fmt: skip
    main(["padchest", "--csv", str(padchest_csv), "--image-dir", str(tmp_path / "padchest" / "images"),
          "--out", str(tmp_path / "padchest.json"), "--val-fraction", "0", "--test-fraction", "0.4",
          "--eval-labels", "all", "--seed", "3"])  # fmt: skip
    data = tmp_path / "data"
    report = main(["combine", "--inputs", str(tmp_path / "vindr.json"), str(tmp_path / "padchest.json"),
                   "--out", str(data / "datalist.json")])  # fmt: skip
    combined = json.loads((data / "datalist.json").read_text())
    assert {e.get("subset") for e in combined["training"]} == {"R", "N", "P"}
    assert all(e.get("boxed", True) for split in ("validation", "test") for e in combined[split])
    assert report["training"]["subsets"]["P"]["images"] > 0
    # stage 1 on the combined datalist (R + N; validation boxed)
    models = tmp_path / "models"
    run_bundle(
        "training", ["train.json"], "--dataset_dir", str(data), "--ckpt_dir", str(models),
        "--output_dir", str(models / "runs"), "--train#trainer#max_epochs", "1", "--train#samples_per_epoch", "4",
    )  # fmt: skip
    assert (models / "model.pt").is_file()
    # evaluation on PadChest's image-level test split: AUROC defined, FROC absent (no boxes)
    padchest = json.loads((tmp_path / "padchest.json").read_text())
    labels = [e["labels"]["rib"] for e in padchest["test"]]
    assert 0 < sum(labels) < len(labels)  # both rib labels present, so AUROC is defined
    evaluation = tmp_path / "eval"
    run_bundle(
        "evaluating", ["train.json", "evaluate.json"], "--dataset_dir", str(tmp_path),
        "--datalist", str(tmp_path / "padchest.json"), "--ckpt_path", str(models / "model.pt"),
        "--output_dir", str(evaluation),
    )  # fmt: skip
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["num_images"] == len(padchest["test"])
    assert metrics["classes"]["rib"]["auroc"] is not None and 0 <= metrics["classes"]["rib"]["auroc"] <= 1
    assert metrics["classes"]["rib"]["froc_paper"] is None and metrics["classes"]["rib"]["num_boxes"] == 0
