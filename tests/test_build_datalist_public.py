"""Builders for CANDID-PTX, CheXpert and MIMIC-CXR-JPG, on label files in the datasets' layouts written here.

No real data is used. Column names follow what public loaders of each dataset read (CANDID-PTX:
``acute_rib_fracture.csv`` = ``anon_SOPUID, annotation_ref, mask_rle``; ``Pneumothorax_reports.csv`` with
``SOPInstanceUID, filename, EncodedPixels``; CheXpert ``train.csv`` and the three MIMIC-CXR-JPG 2.0.0 CSVs with their
full headers); the rows are made up. Fracture masks are drawn here, run-length encoded here in both readings that
SIIM-style loaders use (gap-then-run and 1-based absolute starts, column-major), and the boxes the builder reads
back are compared with the regions drawn.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging

import numpy as np
import pytest
import torch
from build_datalist import choose_rle_reading, main, parse_rle, rle_runs, runs_to_boxes
from helpers import write_dicom
from PIL import Image
from test_build_datalist import _write_vindr

from scripts.data.datalist import load_datalist

# ----------------------------------------------------------------------------------------------------------------
# masks and run-length codes, written independently of the builder
# ----------------------------------------------------------------------------------------------------------------


def draw(rows: int, cols: int, rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    """A (rows, cols) boolean mask with filled rectangles ``(x1, y1, x2, y2)`` (x = column, exclusive ends)."""
    mask = np.zeros((rows, cols), bool)
    for x1, y1, x2, y2 in rects:
        mask[y1:y2, x1:x2] = True
    return mask


def encode(mask: np.ndarray, reading: str) -> str:
    """SIIM-style RLE of a (rows, cols) mask, column-major: gap-then-run ("relative") or 1-based start ("absolute")."""
    flat = np.concatenate([[0], mask.T.ravel().astype(np.int8), [0]])
    starts = np.flatnonzero(np.diff(flat) == 1)
    ends = np.flatnonzero(np.diff(flat) == -1)
    if reading == "absolute":
        pairs = np.stack([starts + 1, ends - starts], axis=1)
    else:
        gaps = starts - np.concatenate([[0], ends[:-1]])
        pairs = np.stack([gaps, ends - starts], axis=1)
    return " ".join(str(v) for v in pairs.ravel())


def decode(runs: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A (rows, cols) mask from 0-based column-major runs."""
    flat = np.zeros(rows * cols, bool)
    for start, length in runs:
        flat[start : start + length] = True
    return flat.reshape(cols, rows).T


ROWS, COLS = 40, 30  # not square: a transposed reading would put the boxes elsewhere
# Two separate fractures, one spanning several columns, and pixels at the foot of column 20 and the head of column
# 21: one run in the code (consecutive in column-major order), two regions in the image.
RECTS = [(3, 5, 9, 8), (14, 20, 16, 31), (20, 38, 21, 40), (21, 0, 22, 2)]


@pytest.mark.parametrize("reading", ["relative", "absolute"])
def test_rle_round_trip_and_one_box_per_region(reading):
    mask = draw(ROWS, COLS, RECTS)
    pairs = parse_rle(encode(mask, reading), "x.csv: line 2")
    runs = rle_runs(pairs, reading, ROWS * COLS)
    np.testing.assert_array_equal(decode(runs, ROWS, COLS), mask)
    assert sorted(runs_to_boxes(runs, ROWS)) == sorted([float(v) for v in r] for r in RECTS)
    # the other reading does not fit this multi-run mask: runs out of order, or past the image's end
    other = "absolute" if reading == "relative" else "relative"
    assert rle_runs(pairs, other, ROWS * COLS) is None
    assert parse_rle(" -1 ", "x") is None


def test_rle_reading_of_a_file_is_decided_by_its_masks_or_refused():
    pixels = ROWS * COLS
    multi = parse_rle(encode(draw(ROWS, COLS, RECTS), "absolute"), "a")
    single = parse_rle(encode(draw(ROWS, COLS, [(2, 2, 3, 9)]), "absolute"), "b")  # one run: fits both readings
    assert choose_rle_reading([("a", multi, pixels), ("b", single, pixels)], "auto", "f.csv") == "absolute"
    with pytest.raises(ValueError, match="pass --rle"):
        choose_rle_reading([("b", single, pixels)], "auto", "f.csv")
    assert choose_rle_reading([("b", single, pixels)], "relative", "f.csv") == "relative"
    with pytest.raises(ValueError, match="a: mask_rle does not fit the relative RLE reading"):
        choose_rle_reading([("a", multi, pixels)], "relative", "f.csv")
    relative = parse_rle(encode(draw(ROWS, COLS, RECTS), "relative"), "c")
    with pytest.raises(ValueError, match="mixed encodings"):
        choose_rle_reading([("a", multi, pixels), ("c", relative, pixels)], "auto", "f.csv")
    with pytest.raises(ValueError, match="line 7: mask_rle fits neither"):
        choose_rle_reading([("f.csv: line 7", multi, pixels // 2)], "auto", "f.csv")  # image smaller than the mask
    with pytest.raises(ValueError, match="not a list of integers"):
        parse_rle("12 3 x", "f.csv: line 3")
    with pytest.raises(ValueError, match="pairs"):
        parse_rle("12 3 4", "f.csv: line 3")


# ----------------------------------------------------------------------------------------------------------------
# CANDID-PTX
# ----------------------------------------------------------------------------------------------------------------

# image uid -> (patient, pneumothorax, list of fracture masks as rectangle lists, or "-1" for a row without a mask)
CANDID = {
    "1.2.826.1.1": ("101", False, [[(3, 5, 9, 8)], [(14, 20, 16, 31)]]),  # two fracture rows
    "1.2.826.1.2": ("101", True, [[(2, 2, 6, 5), (20, 30, 24, 36)]]),  # one row, two regions; pneumothorax too
    "1.2.826.1.3": ("102", False, ["-1"]),  # a fracture row without a mask
    "1.2.826.1.4": ("103", True, []),  # pneumothorax, no fracture row: not a negative by default
    "1.2.826.1.9": (None, False, [[(5, 5, 9, 9)]]),  # not in the reports file: patient unknown
    **{f"1.2.826.2.{i}": (f"2{i:02d}", False, []) for i in range(12)},  # negatives
    "1.2.826.3.1": ("301", None, []),  # EncodedPixels blank
}


def _write_candid(root, reading="relative", grid=None, with_pixels=False):
    """CANDID-PTX's two CSVs and one DICOM per image (``ROWS x COLS``, or ``grid`` with pixels); masks on ``grid``."""
    images = root / "dataset"
    images.mkdir(parents=True, exist_ok=True)
    rows, cols = grid or (ROWS, COLS)
    with (root / "acute_rib_fracture.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["anon_SOPUID", "annotation_ref", "mask_rle"])
        for uid, (_, _, masks) in CANDID.items():
            for index, rects in enumerate(masks):
                code = "-1" if rects == "-1" else encode(draw(rows, cols, rects), reading)
                writer.writerow([uid, f"ref{index}", code])
    with (root / "Pneumothorax_reports.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "SOPInstanceUID", "StudyInstanceUID", "EncodedPixels", "Report"])
        for uid, (patient, pneumothorax, _) in CANDID.items():
            if patient is None:
                continue
            encoded = {None: "", False: "-1", True: encode(draw(ROWS, COLS, [(1, 1, 4, 4)]), reading)}[pneumothorax]
            writer.writerow([f"{patient}_{uid[-3:]}.dcm", uid, f"study{uid[-3:]}", encoded, "REPORT TEXT"])
    shape = grid if with_pixels and grid else (ROWS, COLS)
    ramp = (np.arange(shape[0] * shape[1]).reshape(shape) % 4096).astype(np.uint16)
    for uid in CANDID:
        write_dicom(images / uid, ramp, with_pixels=with_pixels)
    return root


def _candid_args(root, out, *extra):
    return ["candid-ptx", "--fracture-csv", str(root / "acute_rib_fracture.csv"), "--reports-csv",
            str(root / "Pneumothorax_reports.csv"), "--image-dir", str(root / "dataset"), "--out", str(out),
            *extra]  # fmt: skip


@pytest.mark.parametrize("reading", ["relative", "absolute"])
def test_candid_ptx_boxes_match_the_drawn_masks(tmp_path, reading):
    root = _write_candid(tmp_path / "candid", reading)
    out = tmp_path / "candid.json"
    report = main(_candid_args(root, out, "--val-fraction", "0.25", "--test-fraction", "0.25", "--seed", "4"))
    datalist = json.loads(out.read_text())
    every = {e["image"].rsplit("/", 1)[1]: (s, e) for s in ("training", "validation", "test") for e in datalist[s]}
    expected = {
        "1.2.826.1.1": [[3.0, 5.0, 9.0, 8.0], [14.0, 20.0, 16.0, 31.0]],
        "1.2.826.1.2": [[2.0, 2.0, 6.0, 5.0], [20.0, 30.0, 24.0, 36.0]],
    }
    for uid, boxes in expected.items():
        split, entry = every[uid]
        assert entry["boxes"] == boxes and entry["box_classes"] == ["rib", "rib"]
        assert entry["labels"] == {"rib": 1, "clavicle": 0} and entry["patient"] == "candid-ptx:101"
        assert entry.get("subset", "R") == "R"
    assert every["1.2.826.1.1"][0] == every["1.2.826.1.2"][0]  # one patient, one split
    negatives = {f"1.2.826.2.{i}" for i in range(12)}
    assert set(every) == set(expected) | negatives
    assert report["excluded"] == {
        "candid-ptx: EncodedPixels blank (pneumothorax unknown)": 1,
        "candid-ptx: fracture image not in the reports file (patient unknown)": 1,
        "candid-ptx: fracture rows without a mask (-1)": 1,
        "candid-ptx: pneumothorax, no fracture row (--negatives no-pneumothorax)": 1,
    }
    assert report["notes"] == {
        f"candid-ptx: masks read as {reading} RLE": 3,
        "candid-ptx: fracture masks of one region": 2,
        "candid-ptx: fracture masks of several regions (one box each)": 1,
    }
    patient_split: dict[str, str] = {}
    for split, entry in every.values():
        assert patient_split.setdefault(entry["patient"], split) == split
        if split == "training":
            assert entry["subset"] == ("R" if entry["boxes"] else "N")
        else:
            assert "subset" not in entry and entry.get("boxed", True)
    for split in ("training", "validation", "test"):
        if datalist[split]:
            assert load_datalist(out, split, check_files=False)
    # pneumothorax images without a fracture row become negatives only when asked
    report = main(_candid_args(root, out, "--negatives", "no-fracture", "--val-fraction", "0", "--test-fraction", "0"))
    names = {e["image"].rsplit("/", 1)[1] for e in json.loads(out.read_text())["training"]}
    assert "1.2.826.1.4" in names and report["training"]["subsets"]["R"]["rib_boxes"] == 4


def test_candid_ptx_masks_on_a_fixed_grid_are_scaled_to_the_dicom(tmp_path):
    root = _write_candid(tmp_path / "candid", "relative", grid=(80, 60))  # masks encoded at twice the DICOM's size
    out = tmp_path / "candid.json"
    main(_candid_args(root, out, "--mask-grid", "60x80", "--val-fraction", "0", "--test-fraction", "0"))
    entries = {e["image"].rsplit("/", 1)[1]: e for e in json.loads(out.read_text())["training"]}
    assert entries["1.2.826.1.1"]["boxes"] == [[1.5, 2.5, 4.5, 4.0], [7.0, 10.0, 8.0, 15.5]]
    # read on the DICOM's own 30 x 40 grid, the second row's code runs past the image: refused, naming the row
    with pytest.raises(SystemExit, match=r"acute_rib_fracture.csv: line 3: mask_rle fits neither"):
        main(_candid_args(root, out))


def test_candid_ptx_refuses_a_missing_image(tmp_path):
    root = _write_candid(tmp_path / "candid")
    (root / "dataset" / "1.2.826.1.2").unlink()
    with pytest.raises(SystemExit, match=r"1\.2\.826\.1\.2: image file not found"):
        main(_candid_args(root, tmp_path / "o.json"))


# ----------------------------------------------------------------------------------------------------------------
# CheXpert and MIMIC-CXR-JPG
# ----------------------------------------------------------------------------------------------------------------

CHEXPERT_HEADER = [
    "Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly",
    "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
    "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices",
]  # fmt: skip
# (patient, study, view, Fracture)
CHEXPERT_ROWS = [
    *[(f"patient{p:05d}", 1, "Frontal", "0.0") for p in range(1, 9)],
    *[(f"patient{p:05d}", 1, "Frontal", "1.0") for p in range(9, 13)],
    ("patient00001", 2, "Frontal", "1.0"),  # second study of a negative patient
    ("patient00001", 2, "Lateral", "1.0"),
    ("patient00013", 1, "Frontal", "-1.0"),
    ("patient00014", 1, "Frontal", ""),
    ("patient00015", 1, "Lateral", "0.0"),
]


def _write_chexpert(root, with_images=False):
    root.mkdir(parents=True, exist_ok=True)
    csv_path = root / "CheXpert-v1.0-small" / "train.csv"
    csv_path.parent.mkdir()
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CHEXPERT_HEADER)
        for index, (patient, study, view, fracture) in enumerate(CHEXPERT_ROWS):
            row = dict.fromkeys(CHEXPERT_HEADER, "")
            path = f"CheXpert-v1.0-small/train/{patient}/study{study}/view{index}_{view.lower()}.jpg"
            row.update({"Path": path, "Sex": "Female", "Age": "61", "Frontal/Lateral": view, "Fracture": fracture})
            row.update({"AP/PA": "AP" if view == "Frontal" else "", "Support Devices": "1.0"})
            writer.writerow(row.values())
            if with_images:  # 8-bit grey JPEG, as CheXpert ships them
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                pixels = np.add.outer(np.arange(48), np.arange(40)).astype(np.uint8) * 2 + index
                Image.fromarray(pixels, mode="L").save(root / path, quality=90)
    return csv_path


def test_chexpert_frontal_negatives_by_default_and_class_agnostic_positives_on_request(tmp_path):
    csv_path = _write_chexpert(tmp_path / "data")
    out = tmp_path / "chexpert.json"
    report = main(["chexpert", "--csv", str(csv_path), "--image-root", str(tmp_path / "data"), "--out", str(out)])
    datalist = json.loads(out.read_text())
    assert [e["subset"] for e in datalist["training"]] == ["N"] * 8 and not datalist["validation"]
    first = datalist["training"][0]
    assert first["image"] == str(
        tmp_path.resolve() / "data/CheXpert-v1.0-small/train/patient00001/study1/view0_frontal.jpg"
    )
    assert first["labels"] == {"rib": 0, "clavicle": 0} and first["patient"] == "chexpert:patient00001"
    assert report["excluded"] == {
        "chexpert: Fracture -1 (--uncertain exclude)": 1,
        "chexpert: Fracture blank (--blank exclude)": 1,
        "chexpert: class-agnostic positive (--agnostic exclude)": 5,
        "chexpert: not frontal (Lateral)": 2,
    }
    # opt in: Fracture = 1 (and -1 as 1) becomes subset A with both classes as candidates; blank as N; held-out
    # patients give image-level negatives only
    report = main(["chexpert", "--csv", str(csv_path), "--image-root", str(tmp_path / "data"), "--out", str(out),
                   "--agnostic", "include", "--uncertain", "positive", "--blank", "negative", "--val-fraction", "0.3",
                   "--seed", "1"])  # fmt: skip
    datalist = json.loads(out.read_text())
    a_entries = [e for e in datalist["training"] if e["subset"] == "A"]
    assert a_entries and all(e["labels"] == {"rib": 1, "clavicle": 1} for e in a_entries)
    assert datalist["validation"] and all(
        e["boxed"] is False and e["labels"] == {"rib": 0, "clavicle": 0} for e in datalist["validation"]
    )
    held_out = report["excluded"].get("chexpert: class-agnostic positive in validation (cannot be scored per class)")
    training_a = report["training"]["subsets"]["A"]["images"]
    assert training_a + (held_out or 0) == 6  # 5 positives + 1 uncertain
    split_of = {}
    for split in ("training", "validation"):
        for entry in datalist[split]:
            assert split_of.setdefault(entry["patient"], split) == split
    assert load_datalist(out, "validation", check_files=False)
    items = load_datalist(out, "training", subsets=["R", "N", "P", "A"], check_files=False)
    assert {item["subset"] for item in items} == {"A", "N"}
    assert all(item["image_label"].tolist() == [1.0, 1.0] for item in items if item["subset"] == "A")


MIMIC_LABELS = [
    "subject_id", "study_id", "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
    "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
]  # fmt: skip
MIMIC_METADATA = [
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
    "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]  # fmt: skip
# (dicom_id, subject, study, view, split, Fracture of the study)
MIMIC_ROWS = [
    ("d1", "10000032", "50414267", "PA", "train", "0.0"),
    ("d2", "10000032", "50414267", "LATERAL", "train", "0.0"),
    ("d3", "10000032", "53189527", "AP", "train", "1.0"),
    ("d4", "11000011", "51000001", "AP", "validate", "0.0"),
    ("d5", "11000011", "51000002", "PA", "validate", "1.0"),
    ("d6", "12000022", "52000001", "PA", "test", ""),
    ("d7", "12000022", "52000002", "PA", "test", "0.0"),
    ("d8", "13000033", "53000001", "LL", "train", "0.0"),
    ("d9", "14000044", "54000001", "AP", "train", "-1.0"),
]


def _write_mimic(root, rows=MIMIC_ROWS):
    root.mkdir(parents=True, exist_ok=True)
    studies = {(subject, study): fracture for _, subject, study, _, _, fracture in rows}
    with (root / "mimic-cxr-2.0.0-chexpert.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MIMIC_LABELS)
        for (subject, study), fracture in studies.items():
            row = dict.fromkeys(MIMIC_LABELS, "")
            row.update({"subject_id": subject, "study_id": study, "Fracture": fracture, "Support Devices": "1.0"})
            writer.writerow(row.values())
    with (root / "mimic-cxr-2.0.0-metadata.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MIMIC_METADATA)
        for dicom_id, subject, study, view, _, _ in rows:
            writer.writerow([dicom_id, subject, study, "CHEST (PA AND LAT)", view, 3056, 2544, 21800506, 213014.531,
                             "CHEST (PA AND LAT)", "postero-anterior", "Erect"])  # fmt: skip
    with gzip.open(root / "mimic-cxr-2.0.0-split.csv.gz", "wt", newline="") as handle:  # as PhysioNet ships them
        writer = csv.writer(handle)
        writer.writerow(["dicom_id", "study_id", "subject_id", "split"])
        for dicom_id, subject, study, _, split, _ in rows:
            writer.writerow([dicom_id, study, subject, split])
    return root


def test_mimic_cxr_joins_metadata_labels_and_official_split(tmp_path):
    root = _write_mimic(tmp_path / "mimic")
    out = tmp_path / "mimic.json"
    report = main(["mimic-cxr", "--csv-dir", str(root), "--out", str(out), "--agnostic", "include"])
    datalist = json.loads(out.read_text())
    names = {split: [e["image"].rsplit("/", 1)[1] for e in datalist[split]] for split in datalist if split != "classes"}
    assert names == {"training": ["d1.jpg", "d3.jpg"], "validation": ["d4.jpg"], "test": ["d7.jpg"]}
    assert datalist["training"][0]["image"] == str(root.resolve() / "files/p10/p10000032/s50414267/d1.jpg")
    assert [e["subset"] for e in datalist["training"]] == ["N", "A"]
    assert report["excluded"] == {
        "mimic-cxr: Fracture -1 (--uncertain exclude)": 1,
        "mimic-cxr: Fracture blank (--blank exclude)": 1,
        "mimic-cxr: class-agnostic positive in validation (cannot be scored per class)": 1,
        "mimic-cxr: not frontal (ViewPosition LATERAL)": 1,
        "mimic-cxr: not frontal (ViewPosition LL)": 1,
    }
    for split in ("training", "validation", "test"):
        assert load_datalist(out, split, check_files=False)
    # a patient in two official splits is refused; --split training puts every image in training
    leaky = _write_mimic(tmp_path / "leaky", [*MIMIC_ROWS, ("d10", "10000032", "59999999", "PA", "test", "0.0")])
    with pytest.raises(SystemExit, match=r"patients in more than one split \(\['10000032'\]"):
        main(["mimic-cxr", "--csv-dir", str(leaky), "--out", str(out)])
    report = main(["mimic-cxr", "--csv-dir", str(leaky), "--out", str(out), "--split", "training"])
    assert report["training"]["images"] == 4 and report["validation"]["images"] == 0  # d1, d4, d7, d10


# ----------------------------------------------------------------------------------------------------------------
# combine with the new entry type
# ----------------------------------------------------------------------------------------------------------------


def test_combine_keeps_class_agnostic_entries_in_training_only(tmp_path, caplog):
    vindr_csv = _write_vindr(tmp_path / "vindr", with_images=False)
    main(["vindr", "--csv-dir", str(vindr_csv), "--image-dir", str(tmp_path / "vindr"),
          "--out", str(tmp_path / "vindr.json"), "--val-fraction", "0.2"])  # fmt: skip
    candid = _write_candid(tmp_path / "candid")
    main(_candid_args(candid, tmp_path / "candid.json"))
    chexpert_csv = _write_chexpert(tmp_path / "chexpert")
    main(["chexpert", "--csv", str(chexpert_csv), "--image-root", str(tmp_path / "chexpert"), "--agnostic",
          "include", "--val-fraction", "0.3", "--out", str(tmp_path / "chexpert.json")])  # fmt: skip
    out = tmp_path / "data" / "datalist.json"
    report = main(["combine", "--inputs", *(str(tmp_path / f"{n}.json") for n in ("vindr", "candid", "chexpert")),
                   "--out", str(out)])  # fmt: skip
    combined = json.loads(out.read_text())
    assert {e["subset"] for e in combined["training"]} == {"R", "N", "A"}
    assert {e["source"] for e in combined["training"] if e["subset"] == "A"} == {"chexpert"}
    assert all(e.get("boxed", True) for split in ("validation", "test") for e in combined[split])
    assert report["training"]["subsets"]["A"]["images"] == sum(e["subset"] == "A" for e in combined["training"])
    # stage 1 and the default stage 2 read R, N (and P): the A entries are counted in the log, not used
    with caplog.at_level(logging.INFO, logger="scripts.data.datalist"):
        items = load_datalist(out, "training", subsets=["R", "N", "P"], check_files=False)
    assert "A" not in {item["subset"] for item in items}
    assert f"{report['training']['subsets']['A']['images']} A training entries not used" in caplog.text


def test_public_datalists_and_subset_a_through_the_preprocessed_store(tmp_path):
    """CANDID-PTX DICOMs and CheXpert JPEGs, built, combined and read by train.json's datasets from the store
    (``cache_dir``): R items get their rib boxes as target maps, A items an all-zero map with both classes marked as
    candidates, N items zeros; validation items keep their boxes' images."""
    from repo_paths import REPO_ROOT

    from monai.bundle import ConfigParser

    candid = _write_candid(tmp_path / "candid", grid=(80, 60), with_pixels=True)  # the loader refuses < 32 px
    main(_candid_args(candid, tmp_path / "candid.json", "--val-fraction", "0.25", "--test-fraction", "0"))
    chexpert_csv = _write_chexpert(tmp_path / "chexpert", with_images=True)
    main(["chexpert", "--csv", str(chexpert_csv), "--image-root", str(tmp_path / "chexpert"), "--agnostic",
          "include", "--out", str(tmp_path / "chexpert.json")])  # fmt: skip
    out = tmp_path / "data" / "datalist.json"
    main(["combine", "--inputs", str(tmp_path / "candid.json"), str(tmp_path / "chexpert.json"), "--out", str(out)])

    def dataset(section: str):
        parser = ConfigParser()
        parser.read_config(str(REPO_ROOT / "bundle" / "configs" / "train.json"))
        parser.update({"dataset_dir": str(out.parent), "cache_dir": str(tmp_path / "cache"), "image_size": 32,
                       "num_workers": 0, "train#datalist#subsets": ["R", "N", "A"]})  # fmt: skip
        return parser.get_parsed_content(f"{section}#dataset")

    train = dataset("train")
    assert train.build_report.refused == {} and train.build_report.built == len(train)
    items = [train[i] for i in range(len(train))]
    by_subset = {name: [item for item in items if item["subset"] == name] for name in ("R", "N", "A")}
    assert all(by_subset.values()), {name: len(found) for name, found in by_subset.items()}
    assert {item["image_path"].rsplit(".", 1)[-1] for item in by_subset["A"]} == {"jpg"}
    for item in by_subset["A"]:
        assert item["image"].shape == (1, 32, 32) and item["image"].dtype == torch.float16
        assert item["image_label"].tolist() == [1.0, 1.0] and int(item["label"].sum()) == 0
    for item in by_subset["R"]:  # rib boxes -> rib target pixels only
        assert item["label"][0].sum() > 0 and item["label"][1].sum() == 0
    assert all(int(item["label"].sum()) == 0 for item in by_subset["N"])
    validation = dataset("validate")
    assert len(validation) and all(validation[i]["image"].shape == (1, 32, 32) for i in range(len(validation)))
    assert len(list((tmp_path / "cache").glob("*/*/*.npy"))) == len(train) + len(validation)
