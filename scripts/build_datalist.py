"""Build this bundle's datalist from the label files of public chest X-ray datasets (no code to write).

    python scripts/build_datalist.py vindr --csv-dir VINDR/annotations --image-dir VINDR --out vindr.json
    python scripts/build_datalist.py padchest --csv PADCHEST_labels.csv --image-dir PADCHEST/images --out pc.json
    python scripts/build_datalist.py candid-ptx --fracture-csv acute_rib_fracture.csv \
        --reports-csv Pneumothorax_reports.csv --image-dir CANDID/dataset --out candid.json
    python scripts/build_datalist.py chexpert --csv CheXpert-v1.0/train.csv --image-root DATA --out chexpert.json
    python scripts/build_datalist.py mimic-cxr --csv-dir MIMIC-CXR-JPG --out mimic.json
    python scripts/build_datalist.py combine --inputs vindr.json pc.json --out datalist.json

Subsets follow Wang et al. (IPMI 2021): ``R`` positives with boxes, ``P`` image-level positives, ``N`` negatives.

**VinDr-CXR** (PhysioNet, credentialed access). ``annotations_{train,test}.csv`` hold one row per reader and box:
``image_id, rad_id, class_name, x_min, y_min, x_max, y_max`` (``No finding`` rows have no coordinates);
``image_labels_{train,test}.csv`` (optional here) hold ``image_id, rad_id`` and one 0/1 column per label.

* ``Rib fracture`` / ``Clavicle fracture`` boxes become R (training) or boxed positives (validation/test).
* Reader fusion rule, per image and class: two boxes are linked when their IoU is at least ``--fusion-iou``
  (0.1); each connected group of linked boxes is one fracture, its box the coordinate-wise mean of the group's
  boxes, kept when at least ``--min-readers`` (1) distinct readers drew a box in it. An image whose fracture
  marks all fail that consensus is ambiguous and left out (counted). The test file is a consensus of five
  readers already, so the rule leaves its boxes as they are unless two overlap.
* Negatives: ``--negatives no-finding`` (default) keeps images that every reader labelled ``No finding``;
  ``no-fracture`` keeps every image without a fracture mark (other findings allowed).
* An image with an image-level fracture label (``image_labels_*.csv``) but no box of that class is left out.
* The files hold no patient id (each image is its own de-identified study), so the validation split is drawn by
  image from ``annotations_train.csv``; VinDr-CXR's own test set is the test split. All its images are frontal
  (posteroanterior) radiographs.
* Images: ``<image-dir>/<split>/<image_id>.dicom`` (``--image-pattern`` changes it).

**PadChest** (BIMCV, data-use agreement). One CSV row per image with ``ImageID, ImageDir, PatientID, Projection,
MethodLabel, Labels`` (``Labels`` = a list of strings written as text, e.g. ``['rib fracture', 'pleural
effusion']``; ``MethodLabel`` = ``Physician`` or ``RNN_model``).

* Only frontal projections are kept (``PA``, ``AP``, ``AP_horizontal``); lateral and rib views are counted and
  dropped.
* ``rib fracture`` / ``clavicle fracture`` -> P; ``callus rib fracture`` (an old, healed fracture) by
  ``--callus``: ``exclude`` (default: the image is left out unless it also holds a fresh fracture label),
  ``positive`` (counts as a rib fracture) or ``negative`` (ignored). No label containing ``fracture`` -> N;
  other fractures (vertebral, humeral, unspecified ``fracture``) and rows labelled ``exclude`` are left out.
* Splits are drawn by ``PatientID``, so no patient is in two splits. ``--eval-labels physician`` (default) keeps
  only physician-labelled rows in validation/test. Validation/test entries carry image-level labels only
  (``"boxed": false``): evaluation reports AUROC, and FROC only where boxes exist.
* Images: ``<image-dir>/<ImageDir>/<ImageID>``.

**CANDID-PTX** (Dunedin, data-use agreement). ``acute_rib_fracture.csv``: one row per fracture, ``anon_SOPUID,
annotation_ref, mask_rle``; ``Pneumothorax_reports.csv``: one row per image (or per pneumothorax region),
``SOPInstanceUID, filename, EncodedPixels, ...``, where ``filename`` starts with the patient index
(``<patient>_...``) and ``EncodedPixels`` is ``-1`` without a pneumothorax. Images: ``<image-dir>/<anon_SOPUID>``
(``--image-pattern``), DICOM.

* Masks are SIIM-style run-length codes, column-major (pixel index = column * rows + row), ``-1`` = no mask. Public
  loaders read the pairs two ways: *relative* (pixels skipped since the end of the previous run, then the run
  length; SIIM-ACR's ``mask_functions``) and *absolute* (1-based start, then length; Kaggle's convention). Each row
  is tested against its image's Rows x Columns (DICOM header): a reading fits when its runs are in order, apart
  and inside the image. The file's reading is the one that the discriminating rows agree on; the command refuses
  a row that fits neither, a file whose rows disagree, and a file where no row tells them apart (then pass
  ``--rle``). ``--mask-grid COLSxROWS`` reads masks encoded on a fixed grid and scales their boxes to the DICOM.
* Every 8-connected region of a fracture row's mask becomes one rib box, in the DICOM's pixels (x = column,
  y = row; x2 and y2 exclusive). The count report notes how many rows gave one region and how many more: a
  fracture is one region, so many multi-region rows mean a wrong reading or image size.
* Negatives (``--negatives no-pneumothorax``, default): images without a fracture row and without a
  pneumothorax. Pneumothorax images without a fracture row are left out: a traumatic pneumothorax usually comes
  with rib fractures, so the absence of a fracture mask on such an image is weak evidence, and as N it would
  teach the network that a fracture is background (``--negatives no-fracture`` keeps them).
* CANDID-PTX annotates rib fractures only: its images are labelled clavicle-negative. Splits are drawn by patient
  (``filename``'s prefix); an image missing from the reports file has no patient and is left out.

**CheXpert** (Stanford AIMI) ``train.csv``/``valid.csv``: ``Path, Sex, Age, Frontal/Lateral, AP/PA, ...,
Fracture, Support Devices`` with 1.0, 0.0, -1.0 (uncertain) or blank (not mentioned). **MIMIC-CXR-JPG**
(PhysioNet): ``mimic-cxr-2.0.0-chexpert.csv`` (``subject_id, study_id, ..., Fracture, ...`` per study) joined to
images by ``mimic-cxr-2.0.0-metadata.csv`` (``dicom_id, subject_id, study_id, ..., ViewPosition, ...``) and split by
``mimic-cxr-2.0.0-split.csv`` (``dicom_id, study_id, subject_id, split``), each also read as the ``.csv.gz`` that
PhysioNet ships; images
``<csv-dir>/files/p<first two digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg``.

* Frontal views only (CheXpert ``Frontal/Lateral`` = Frontal; MIMIC ``ViewPosition`` PA or AP).
* ``Fracture`` = 0 -> N. ``Fracture`` = -1 and blank are left out (``--uncertain``, ``--blank`` change that).
* ``Fracture`` = 1 says neither rib nor clavicle (nor excludes other bones: a spine or humerus fracture counts
  too). Such class-agnostic positives are left out by default (``--agnostic exclude``); ``--agnostic include``
  writes them as training subset ``A`` (candidate classes rib and clavicle), which stage 2 reads only when asked
  (see ``bundle/scripts/distill/aals.py`` for its target rule and the bundle's docs for its measured effect).
* Evaluation splits hold image-level negatives only (``"boxed": false``): a class-agnostic positive cannot be
  scored per class and is left out there. CheXpert has no public patient-level split of ``train.csv``: every
  patient goes to training unless ``--val-fraction``/``--test-fraction`` are given (drawn by patient). MIMIC-CXR
  keeps its own split (``--split official``: train/validate/test, refused if a patient is in two) or puts every
  image in training (``--split training``).

``combine`` merges datalists: training is the union (every subset, ``A`` included); validation/test keep the boxed
entries only (``--eval boxed``, default; VinDr-CXR's) or every entry (``--eval all``).

Every command prints a count per split, subset and class, writes it next to the datalist as
``<out>.counts.json``, and validates the result with the bundle's own datalist loader. Image paths are written
absolute. Label files are parsed as data only (CSV and Python-literal lists of strings), never executed.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import repo_paths

import numpy as np

from scripts.data.datalist import DatalistError, load_datalist

CLASSES = ("rib", "clavicle")
SPLITS = ("training", "validation", "test")
VINDR_CLASSES = {"Rib fracture": "rib", "Clavicle fracture": "clavicle"}
VINDR_NO_FINDING = "No finding"
PADCHEST_LABELS = {"rib fracture": "rib", "clavicle fracture": "clavicle"}
PADCHEST_CALLUS = "callus rib fracture"
PADCHEST_FRONTAL = ("PA", "AP", "AP_HORIZONTAL")
PADCHEST_PHYSICIAN = "physician"
RLE_READINGS = ("relative", "absolute")
CHEXPERT_PATIENT = re.compile(r"(patient\d+)")
MIMIC_FRONTAL = ("PA", "AP")
MIMIC_SPLITS = {"train": "training", "validate": "validation", "test": "test"}


class LabelFileError(ValueError):
    """A label file is missing, lacks a column or holds a bad value; the message names the file and the row."""


# ------------------------------------------------------------------------------------------------------------------
# shared helpers
# ------------------------------------------------------------------------------------------------------------------


def read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file (``.csv`` or gzip-compressed ``.csv.gz``) as dicts keyed by the lower-cased header; checks
    the ``required`` columns (lower case)."""
    if not path.is_file():
        raise LabelFileError(f"{path}: label file not found.")
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise LabelFileError(f"{path}: empty file.")
        keys = [name.strip().lower() for name in header]
        missing = [name for name in required if name not in keys]
        if missing:
            raise LabelFileError(f"{path}: missing column(s) {missing}; the header is {header}.")
        return [dict(zip(keys, (value.strip() for value in row), strict=False)) for row in reader if row]


def labels_dict(positive: Iterable[str]) -> dict[str, int]:
    """``{"rib": 0/1, "clavicle": 0/1}`` from the positive class names."""
    positive = set(positive)
    return {name: int(name in positive) for name in CLASSES}


def split_groups(groups: Sequence[str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each group (patient, or image where no patient id exists) to a split, at random with ``seed``."""
    if min(val_fraction, test_fraction) < 0 or val_fraction + test_fraction >= 1:
        raise ValueError(f"fractions must be >= 0 and sum below 1, got {val_fraction} and {test_fraction}.")
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    num_val, num_test = round(val_fraction * len(unique)), round(test_fraction * len(unique))
    assignment = {}
    for rank, index in enumerate(order):
        split = "validation" if rank < num_val else "test" if rank < num_val + num_test else "training"
        assignment[unique[index]] = split
    return assignment


def count_report(datalist: dict[str, Any], excluded: Counter, notes: Counter | None = None) -> dict[str, Any]:
    """Images per split and subset, positive images and boxes per class, the reasons images were left out, notes.

    For subset ``A`` (class-agnostic positives) the per-class positive counts are candidate classes.
    """
    report: dict[str, Any] = {}
    for split in SPLITS:
        entries = datalist.get(split, [])
        by_subset: dict[str, Any] = {}
        for entry in entries:
            subset = entry.get("subset", "boxed" if entry.get("boxed", True) else "image-level")
            row = by_subset.setdefault(subset, {"images": 0, **{f"{c}_positive": 0 for c in CLASSES}})
            row["images"] += 1
            for name in CLASSES:
                row[f"{name}_positive"] += int(entry["labels"][name])
            for name in entry.get("box_classes", []):
                row[f"{name}_boxes"] = row.get(f"{name}_boxes", 0) + 1
        report[split] = {"images": len(entries), "subsets": by_subset}
    report["excluded"] = dict(sorted(excluded.items()))
    report["notes"] = dict(sorted((notes or Counter()).items()))
    return report


def format_report(report: dict[str, Any]) -> str:
    """The count report as a text table."""
    columns = "".join(f"{c + ' +':>12}{c + ' boxes':>14}" for c in CLASSES)
    lines = [f"{'split':<11}{'subset':<12}{'images':>8}{columns}"]
    for split in SPLITS:
        for subset, row in sorted(report[split]["subsets"].items()):
            cells = "".join(f"{row[f'{c}_positive']:>12}{row.get(f'{c}_boxes', 0):>14}" for c in CLASSES)
            lines.append(f"{split:<11}{subset:<12}{row['images']:>8}{cells}")
    if any("A" in report[split]["subsets"] for split in SPLITS):
        lines.append("subset A: class-agnostic positives; its class columns count candidate classes")
    for reason, count in report["excluded"].items():
        lines.append(f"left out: {count} ({reason})")
    for note, count in report.get("notes", {}).items():
        lines.append(f"note: {count} ({note})")
    return "\n".join(lines)


def write_datalist(
    datalist: dict[str, Any], out: Path, excluded: Counter, notes: Counter | None = None
) -> dict[str, Any]:
    """Validate ``datalist`` with the bundle's loader, write it and its count report; return the report."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(datalist, indent=1))
    for split in SPLITS:
        if datalist.get(split):
            try:
                load_datalist(out, split, classes=CLASSES, check_files=False)
            except DatalistError as error:
                raise SystemExit(f"the datalist built from the label files is invalid:\n{error}") from error
    report = count_report(datalist, excluded, notes)
    out.with_suffix(".counts.json").write_text(json.dumps(report, indent=1))
    print(format_report(report))
    print(f"wrote {out} and {out.with_suffix('.counts.json')}")
    return report


# ------------------------------------------------------------------------------------------------------------------
# VinDr-CXR
# ------------------------------------------------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``(N, 4)`` with every box in ``b`` ``(M, 4)``: ``(N, M)``."""
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a, area_b = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def fuse_reader_boxes(
    boxes: Sequence[Sequence[float]], readers: Sequence[str], iou_threshold: float = 0.1, min_readers: int = 1
) -> tuple[list[list[float]], int]:
    """Fuse the boxes of one class drawn by several readers on one image (see the module docstring).

    Args:
        boxes: ``(M, 4)`` rows ``(x1, y1, x2, y2)`` in pixels.
        readers: ``(M,)`` reader id of each box.
        iou_threshold: boxes overlapping at least this much are the same fracture.
        min_readers: distinct readers a fused box needs.

    Returns:
        ``(fused, rejected)``: the fused boxes (mean of each group, sorted by x1 then y1) and the number of groups
        that had fewer than ``min_readers`` readers.
    """
    array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    linked = _iou(array, array) >= iou_threshold
    group = list(range(len(array)))  # union-find over the overlap graph: groups do not depend on the row order

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(linked, k=1)), strict=True):
        group[root(int(i))] = root(int(j))
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(array)):
        members[root(i)].append(i)
    fused, rejected = [], 0
    for rows in members.values():
        if len({readers[i] for i in rows}) < min_readers:
            rejected += 1
            continue
        fused.append([round(float(v), 1) for v in array[rows].mean(axis=0)])
    return sorted(fused), rejected


def _vindr_split(
    annotations: Path,
    image_labels: Path | None,
    image_path: str,
    split_name: str,
    negatives: str,
    iou_threshold: float,
    min_readers: int,
    excluded: Counter,
) -> dict[str, dict[str, Any]]:
    """One VinDr-CXR file pair -> ``{image_id: entry}`` (R-style entries with boxes, or negatives)."""
    rows = read_csv(annotations, ["image_id", "class_name", "x_min", "y_min", "x_max", "y_max"])
    reader_key = "rad_id"
    marks: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    reader_findings: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for number, row in enumerate(rows, start=2):
        image_id, name, reader = row["image_id"], row["class_name"], row.get(reader_key, "consensus") or "consensus"
        reader_findings[image_id][reader].add(name)
        if name in VINDR_CLASSES:
            try:
                box = [float(row[k]) for k in ("x_min", "y_min", "x_max", "y_max")]
            except ValueError as error:
                raise LabelFileError(f"{annotations}: line {number}: {name} without valid coordinates.") from error
            if not (0 <= box[0] < box[2] and 0 <= box[1] < box[3]):
                raise LabelFileError(f"{annotations}: line {number}: box {box} needs 0 <= x_min < x_max, y_min < y_max")
            marks[image_id][VINDR_CLASSES[name]].append((box, reader))
    unboxed_labels: dict[str, set] = defaultdict(set)
    if image_labels is not None:
        columns = [*VINDR_CLASSES, VINDR_NO_FINDING]
        for row in read_csv(image_labels, ["image_id", *(c.lower() for c in columns)]):
            for name, cls in VINDR_CLASSES.items():
                if row[name.lower()] in ("1", "1.0"):
                    unboxed_labels[row["image_id"]].add(cls)
    entries = {}
    for image_id, readers in sorted(reader_findings.items()):
        path = image_path.format(split=split_name, image_id=image_id)
        boxes, box_classes, rejected = [], [], 0
        for cls in CLASSES:
            if marks[image_id][cls]:
                drawn = marks[image_id][cls]
                fused, lost = fuse_reader_boxes(
                    [b for b, _ in drawn], [r for _, r in drawn], iou_threshold, min_readers
                )
                boxes += fused
                box_classes += [cls] * len(fused)
                rejected += lost
        if unboxed_labels[image_id] - set(box_classes) and not rejected:
            excluded["vindr: image-level fracture label without a box"] += 1
            continue
        if boxes:
            entries[image_id] = {"image": path, "labels": labels_dict(box_classes), "boxes": boxes}
            entries[image_id].update({"box_classes": box_classes, "source": "vindr", "patient": f"vindr:{image_id}"})
        elif rejected:
            excluded[f"vindr: fracture marks below {min_readers} reader(s)"] += 1
        elif negatives == "no-fracture" or all(found == {VINDR_NO_FINDING} for found in readers.values()):
            entries[image_id] = {"image": path, "labels": labels_dict([]), "boxes": [], "box_classes": [],
                                 "source": "vindr", "patient": f"vindr:{image_id}"}  # fmt: skip
        else:
            excluded["vindr: other findings, no fracture (--negatives no-finding)"] += 1
    return entries


def build_vindr(args: argparse.Namespace) -> tuple[dict[str, Any], Counter, Counter]:
    """VinDr-CXR label files -> datalist (R and N in training, boxed validation and test)."""
    csv_dir, image_dir = Path(args.csv_dir), Path(args.image_dir).resolve()
    pattern = str(image_dir / args.image_pattern)
    excluded: Counter = Counter()
    parts = {}
    for split_name in ("train", "test"):
        labels_file = csv_dir / f"image_labels_{split_name}.csv"
        parts[split_name] = _vindr_split(
            csv_dir / f"annotations_{split_name}.csv", labels_file if labels_file.is_file() else None, pattern,
            split_name, args.negatives, args.fusion_iou, args.min_readers, excluded,
        )  # fmt: skip
    assignment = split_groups(list(parts["train"]), args.val_fraction, 0.0, args.seed)
    datalist: dict[str, Any] = {"classes": list(CLASSES), "training": [], "validation": [], "test": []}
    for image_id, entry in parts["train"].items():
        if assignment[image_id] == "training":
            entry = {**entry, "subset": "R" if entry["boxes"] else "N"}
        datalist[assignment[image_id]].append(entry)
    datalist["test"] = list(parts["test"].values())
    return datalist, excluded, Counter()


# ------------------------------------------------------------------------------------------------------------------
# PadChest
# ------------------------------------------------------------------------------------------------------------------


def parse_padchest_labels(text: str, where: str) -> list[str]:
    """The ``Labels`` cell (a list of strings written as a Python literal) as stripped lower-case labels.

    ``ast.literal_eval`` only parses literals (it never runs code); anything but a list of strings is refused.
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise LabelFileError(f"{where}: Labels {text!r} is not a list of strings.") from error
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise LabelFileError(f"{where}: Labels {text!r} is not a list of strings.")
    return [v.strip().lower() for v in value if v.strip()]


def padchest_classes(labels: Sequence[str], callus: str) -> tuple[list[str], str | None]:
    """Positive classes of one PadChest row and the reason to leave it out (``None`` to keep it)."""
    positive = {PADCHEST_LABELS[label] for label in labels if label in PADCHEST_LABELS}
    if "exclude" in labels:
        return [], "padchest: labelled 'exclude'"
    if PADCHEST_CALLUS in labels:
        if callus == "positive":
            positive.add("rib")
        elif callus == "exclude" and not positive:
            return [], "padchest: callus rib fracture only (--callus exclude)"
    known = (*PADCHEST_LABELS, PADCHEST_CALLUS)
    other = [label for label in labels if "fracture" in label and label not in known]
    if other and not positive:
        return [], "padchest: other fracture labels only"
    return sorted(positive), None


def build_padchest(args: argparse.Namespace) -> tuple[dict[str, Any], Counter, Counter]:
    """PadChest labels CSV -> datalist (P and N in training, image-level validation and test)."""
    csv_path, image_dir = Path(args.csv), Path(args.image_dir).resolve()
    required = ["imageid", "imagedir", "patientid", "projection", "methodlabel", "labels"]
    rows = read_csv(csv_path, required)
    excluded: Counter = Counter()
    kept = []
    for number, row in enumerate(rows, start=2):
        projection = row["projection"].upper()
        if projection not in PADCHEST_FRONTAL:
            excluded[f"padchest: not frontal (projection {row['projection'] or 'empty'})"] += 1
            continue
        if not row["labels"] or row["labels"].lower() == "nan":
            excluded["padchest: no labels"] += 1
            continue
        labels = parse_padchest_labels(row["labels"], f"{csv_path}: line {number}")
        positive, reason = padchest_classes(labels, args.callus)
        if reason:
            excluded[reason] += 1
            continue
        if not row["patientid"]:
            raise LabelFileError(f"{csv_path}: line {number}: empty PatientID (splits are drawn by patient).")
        kept.append((row, positive))
    assignment = split_groups([r["patientid"] for r, _ in kept], args.val_fraction, args.test_fraction, args.seed)
    datalist: dict[str, Any] = {"classes": list(CLASSES), "training": [], "validation": [], "test": []}
    for row, positive in kept:
        split = assignment[row["patientid"]]
        if split != "training" and args.eval_labels == "physician" and row["methodlabel"].lower() != PADCHEST_PHYSICIAN:
            excluded[f"padchest: {split} row not labelled by a physician"] += 1
            continue
        entry = {
            "image": str(image_dir / row["imagedir"] / row["imageid"]),
            "labels": labels_dict(positive),
            "source": "padchest",
            "patient": f"padchest:{row['patientid']}",
            "label_method": row["methodlabel"],
        }
        entry.update({"subset": "P" if positive else "N"} if split == "training" else {"boxed": False})
        datalist[split].append(entry)
    return datalist, excluded, Counter()


# ------------------------------------------------------------------------------------------------------------------
# CANDID-PTX
# ------------------------------------------------------------------------------------------------------------------


def parse_rle(text: str, where: str) -> np.ndarray | None:
    """A ``mask_rle`` cell as ``(K, 2)`` int64 number pairs, or None for ``-1`` (no mask)."""
    text = text.strip()
    if text == "-1":
        return None
    try:
        numbers = np.array([int(value) for value in text.split()], dtype=np.int64)
    except ValueError as error:
        raise LabelFileError(f"{where}: mask_rle {text[:40]!r} is not a list of integers.") from error
    if numbers.size == 0 or numbers.size % 2:
        raise LabelFileError(f"{where}: mask_rle needs (offset, length) pairs, got {numbers.size} numbers.")
    return numbers.reshape(-1, 2)


def rle_runs(pairs: np.ndarray, reading: str, num_pixels: int) -> np.ndarray | None:
    """The runs of an RLE read one way, as 0-based ``(K, 2)`` (start, length), or None when that reading does not fit.

    Args:
        pairs: ``(K, 2)`` integer pairs from :func:`parse_rle`.
        reading: ``"relative"``: each pair is (pixels skipped since the end of the previous run, length), the first
            counted from pixel 0 (SIIM-ACR's ``mask_functions``); ``"absolute"``: (1-based start, length)
            (Kaggle's convention).
        num_pixels: rows x columns of the grid the mask was encoded on.

    A reading fits when every length is positive, the runs are in order with at least one pixel between them
    (encoders merge touching runs) and the last one ends inside the grid.
    """
    offsets, lengths = pairs[:, 0], pairs[:, 1]
    if reading == "relative":
        if offsets[0] < 0 or (offsets[1:] < 1).any():
            return None
        starts = np.cumsum(offsets) + np.concatenate([[0], np.cumsum(lengths)[:-1]])
    elif reading == "absolute":
        starts = offsets - 1
        if starts[0] < 0 or (starts[1:] < starts[:-1] + lengths[:-1] + 1).any():
            return None
    else:
        raise ValueError(f"unknown RLE reading {reading!r}, expected one of {RLE_READINGS}.")
    if (lengths < 1).any() or starts[-1] + lengths[-1] > num_pixels:
        return None
    return np.stack([starts, lengths], axis=1)


def runs_to_boxes(runs: np.ndarray, rows: int) -> list[list[float]]:
    """One box ``[x1, y1, x2, y2]`` (pixels, x2/y2 exclusive) per 8-connected region of a run-length mask.

    Args:
        runs: 0-based ``(K, 2)`` (start, length) runs from :func:`rle_runs`, column-major.
        rows: rows of the grid (pixel index = column * rows + row).

    The regions are found by the bundle's own :func:`scripts.data.labelled_images.label_map_boxes` on the crop that
    holds the mask (exact at full resolution for crops up to 512 pixels a side, which fracture masks are).
    """
    import torch

    from scripts.data.labelled_images import label_map_boxes

    pixels = np.concatenate([np.arange(start, start + length) for start, length in runs])
    cols, rows_of = np.divmod(pixels, rows)
    x0, y0 = int(cols.min()), int(rows_of.min())
    crop = torch.zeros((int(cols.max()) - x0 + 1, int(rows_of.max()) - y0 + 1), dtype=torch.int64)
    crop[torch.as_tensor(cols - x0), torch.as_tensor(rows_of - y0)] = 1
    boxes, _ = label_map_boxes(crop, 1)
    return [[float(v) for v in box] for box in boxes + np.array([x0, y0, x0, y0], dtype=np.float32)]


def dicom_size(path: Path) -> tuple[int, int]:
    """``(columns, rows)`` of a DICOM file from its header (pixel data not read)."""
    import pydicom

    if not path.is_file():
        raise LabelFileError(f"{path}: image file not found (its size is needed to read its fracture masks).")
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        return int(header.Columns), int(header.Rows)
    except Exception as error:  # pydicom raises several types for a non-DICOM or damaged file
        raise LabelFileError(f"{path}: cannot read Rows/Columns from the DICOM header ({error}).") from error


def choose_rle_reading(rows: Sequence[tuple[str, np.ndarray, int]], forced: str, csv_path: Path) -> str:
    """The RLE reading of a whole file: ``forced`` if given, else the one every discriminating row fits.

    Args:
        rows: ``(where, pairs, num_pixels)`` per mask.
        forced: ``"auto"``, ``"relative"`` or ``"absolute"``.
        csv_path: the file, for messages.

    Raises:
        LabelFileError: a row fits neither reading (or not the forced one), rows disagree, or none discriminates.
    """
    only: dict[str, list[str]] = {reading: [] for reading in RLE_READINGS}
    for where, pairs, num_pixels in rows:
        fits = [reading for reading in RLE_READINGS if rle_runs(pairs, reading, num_pixels) is not None]
        if not fits or (forced != "auto" and forced not in fits):
            wanted = "fits neither RLE reading" if forced == "auto" else f"does not fit the {forced} RLE reading"
            raise LabelFileError(
                f"{where}: mask_rle {wanted} on an image of {num_pixels} pixels (runs out of order, touching or past "
                "the end): check the image file and its size, or --mask-grid."
            )
        if len(fits) == 1:
            only[fits[0]].append(where)
    if forced != "auto":
        return forced
    if only["relative"] and only["absolute"]:
        raise LabelFileError(
            f"{csv_path}: some masks fit only the relative RLE reading ({only['relative'][0]}, "
            f"{len(only['relative'])} in all), others only the absolute one ({only['absolute'][0]}, "
            f"{len(only['absolute'])} in all): mixed encodings or wrong image sizes; pass --rle to force one."
        )
    for reading in RLE_READINGS:
        if only[reading]:
            return reading
    raise LabelFileError(
        f"{csv_path}: every mask fits both RLE readings, so the file does not tell which it uses: pass --rle "
        "relative (SIIM-ACR) or --rle absolute (Kaggle)."
    )


def _parse_grid(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise LabelFileError(f"--mask-grid {text!r}: expected COLSxROWS, e.g. 1024x1024.") from error
    return cols, rows


def build_candid(args: argparse.Namespace) -> tuple[dict[str, Any], Counter, Counter]:
    """CANDID-PTX label files -> datalist (R and N in training, boxed validation and test, split by patient)."""
    fracture_csv, reports_csv = Path(args.fracture_csv), Path(args.reports_csv)
    image_dir = Path(args.image_dir).resolve()
    grid = _parse_grid(args.mask_grid)
    excluded: Counter = Counter()
    notes: Counter = Counter()
    patient: dict[str, str] = {}
    pneumothorax: dict[str, str] = {}  # uid -> "yes" / "no" / "blank"
    for number, row in enumerate(read_csv(reports_csv, ["sopinstanceuid", "filename", "encodedpixels"]), start=2):
        uid, name, encoded = row["sopinstanceuid"], row["filename"], row["encodedpixels"]
        if not uid or not name:
            raise LabelFileError(f"{reports_csv}: line {number}: empty SOPInstanceUID or filename.")
        patient[uid] = name.split("_", 1)[0]
        state = "blank" if not encoded else "no" if encoded == "-1" else "yes"
        if pneumothorax.get(uid) != "yes":  # one row per region: any region makes the image positive
            pneumothorax[uid] = state
    masks: dict[str, list[tuple[str, np.ndarray]]] = defaultdict(list)
    fracture_images: set[str] = set()
    for number, row in enumerate(read_csv(fracture_csv, ["anon_sopuid", "mask_rle"]), start=2):
        uid, where = row["anon_sopuid"], f"{fracture_csv}: line {number}"
        if not uid:
            raise LabelFileError(f"{where}: empty anon_SOPUID.")
        fracture_images.add(uid)
        pairs = parse_rle(row["mask_rle"], where)
        if pairs is not None:
            masks[uid].append((where, pairs))
    path_of = {uid: image_dir / args.image_pattern.format(uid=uid) for uid in set(patient) | fracture_images}
    sizes = {uid: dicom_size(path_of[uid]) for uid in sorted(masks) if uid in patient}
    grids = {uid: grid or size for uid, size in sizes.items()}
    checked = [(where, pairs, grids[uid][0] * grids[uid][1]) for uid in sizes for where, pairs in masks[uid]]
    reading = choose_rle_reading(checked, args.rle, fracture_csv) if checked else args.rle
    if checked:
        notes[f"candid-ptx: masks read as {reading} RLE"] = len(checked)
    kept: dict[str, dict[str, Any]] = {}
    for uid in sorted(fracture_images):
        if uid not in patient:
            excluded["candid-ptx: fracture image not in the reports file (patient unknown)"] += 1
            continue
        if not masks[uid]:
            excluded["candid-ptx: fracture rows without a mask (-1)"] += 1
            continue
        (cols, rows), (grid_cols, grid_rows) = sizes[uid], grids[uid]
        boxes = []
        for _, pairs in masks[uid]:
            found = runs_to_boxes(rle_runs(pairs, reading, grid_cols * grid_rows), grid_rows)
            notes["candid-ptx: fracture masks of one region" if len(found) == 1 else
                  "candid-ptx: fracture masks of several regions (one box each)"] += 1  # fmt: skip
            scale = np.array([cols / grid_cols, rows / grid_rows] * 2)
            boxes += [[round(float(v), 1) for v in np.asarray(box) * scale] for box in found]
        kept[uid] = {"image": str(path_of[uid]), "labels": labels_dict(["rib"]), "boxes": sorted(boxes),
                     "box_classes": ["rib"] * len(boxes)}  # fmt: skip
    for uid, state in sorted(pneumothorax.items()):
        if uid in fracture_images:
            continue
        if state == "no" or (state == "yes" and args.negatives == "no-fracture"):
            kept[uid] = {"image": str(path_of[uid]), "labels": labels_dict([]), "boxes": [], "box_classes": []}
        elif state == "yes":
            excluded["candid-ptx: pneumothorax, no fracture row (--negatives no-pneumothorax)"] += 1
        else:
            excluded["candid-ptx: EncodedPixels blank (pneumothorax unknown)"] += 1
    assignment = split_groups([patient[uid] for uid in kept], args.val_fraction, args.test_fraction, args.seed)
    datalist: dict[str, Any] = {"classes": list(CLASSES), "training": [], "validation": [], "test": []}
    for uid, entry in kept.items():
        split = assignment[patient[uid]]
        entry.update({"source": "candid-ptx", "patient": f"candid-ptx:{patient[uid]}"})
        if split == "training":
            entry["subset"] = "R" if entry["boxes"] else "N"
        datalist[split].append(entry)
    return datalist, excluded, notes


# ------------------------------------------------------------------------------------------------------------------
# CheXpert and MIMIC-CXR-JPG (image-level Fracture label without a class)
# ------------------------------------------------------------------------------------------------------------------


def fracture_state(value: str, where: str) -> str:
    """A CheXpert-style label cell as ``"positive"`` (1), ``"negative"`` (0), ``"uncertain"`` (-1) or ``"blank"``."""
    if not value.strip():
        return "blank"
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    states = {1.0: "positive", 0.0: "negative", -1.0: "uncertain"}
    if number not in states:
        raise LabelFileError(f"{where}: Fracture {value!r} is not 1, 0, -1 or blank.")
    return states[number]


def image_level_subset(state: str, args: argparse.Namespace) -> tuple[str | None, str]:
    """Training subset (``"A"``, ``"N"`` or None to leave out) of a Fracture state under the command's flags."""
    if state == "uncertain":
        state = {"exclude": "uncertain", "negative": "negative", "positive": "positive"}[args.uncertain]
    elif state == "blank":
        state = {"exclude": "blank", "negative": "negative"}[args.blank]
    if state == "negative":
        return "N", state
    if state == "positive":
        return ("A" if args.agnostic == "include" else None), "class-agnostic positive (--agnostic exclude)"
    return None, {"uncertain": "Fracture -1 (--uncertain exclude)", "blank": "Fracture blank (--blank exclude)"}[state]


def image_level_datalist(
    records: Sequence[tuple[str, str, str, str]], source: str, args: argparse.Namespace, excluded: Counter
) -> dict[str, Any]:
    """Datalist from ``(image path, patient, Fracture state, split)`` records of CheXpert or MIMIC-CXR.

    Training gets ``N`` and (with ``--agnostic include``) ``A`` entries; validation/test get image-level negatives
    only, since a class-agnostic positive has no per-class label to score.
    """
    datalist: dict[str, Any] = {"classes": list(CLASSES), "training": [], "validation": [], "test": []}
    every_class = labels_dict(CLASSES)
    for image, patient_id, state, split in records:
        subset, reason = image_level_subset(state, args)
        if subset is None:
            excluded[f"{source}: {reason}"] += 1
            continue
        if subset == "A" and split != "training":
            excluded[f"{source}: class-agnostic positive in {split} (cannot be scored per class)"] += 1
            continue
        entry = {"image": image, "labels": every_class if subset == "A" else labels_dict([]), "source": source,
                 "patient": f"{source}:{patient_id}"}  # fmt: skip
        entry.update({"subset": subset} if split == "training" else {"boxed": False})
        datalist[split].append(entry)
    return datalist


def build_chexpert(args: argparse.Namespace) -> tuple[dict[str, Any], Counter, Counter]:
    """CheXpert CSVs -> datalist (N and opt-in A in training; held-out patients give image-level negatives)."""
    image_root = Path(args.image_root).resolve()
    excluded: Counter = Counter()
    rows = []
    for csv_path in map(Path, args.csv):
        for number, row in enumerate(read_csv(csv_path, ["path", "frontal/lateral", "fracture"]), start=2):
            where = f"{csv_path}: line {number}"
            if row["frontal/lateral"].lower() != "frontal":
                excluded[f"chexpert: not frontal ({row['frontal/lateral'] or 'empty'})"] += 1
                continue
            found = CHEXPERT_PATIENT.search(row["path"])
            if not found:
                raise LabelFileError(f"{where}: no patient id (patientNNNNN) in Path {row['path']!r}.")
            rows.append((str(image_root / row["path"]), found.group(1), fracture_state(row["fracture"], where)))
    assignment = split_groups([patient for _, patient, _ in rows], args.val_fraction, args.test_fraction, args.seed)
    records = [(image, patient, state, assignment[patient]) for image, patient, state in rows]
    return image_level_datalist(records, "chexpert", args, excluded), excluded, Counter()


def _csv_or_gz(path: Path) -> Path:
    """``path``, or ``path.gz`` where only the compressed file exists (PhysioNet ships MIMIC-CXR-JPG's as .csv.gz)."""
    compressed = path.with_name(path.name + ".gz")
    return compressed if not path.is_file() and compressed.is_file() else path


def build_mimic(args: argparse.Namespace) -> tuple[dict[str, Any], Counter, Counter]:
    """MIMIC-CXR-JPG CSVs -> datalist (N and opt-in A in training; official or training-only split)."""
    csv_dir = Path(args.csv_dir)
    image_dir = Path(args.image_dir).resolve() if args.image_dir else csv_dir.resolve()
    excluded: Counter = Counter()
    labels_csv = _csv_or_gz(csv_dir / "mimic-cxr-2.0.0-chexpert.csv")
    studies = {}
    for number, row in enumerate(read_csv(labels_csv, ["subject_id", "study_id", "fracture"]), start=2):
        studies[(row["subject_id"], row["study_id"])] = fracture_state(row["fracture"], f"{labels_csv}: line {number}")
    split_csv = _csv_or_gz(csv_dir / "mimic-cxr-2.0.0-split.csv")
    official = {row["dicom_id"]: row["split"] for row in read_csv(split_csv, ["dicom_id", "subject_id", "split"])}
    metadata_csv = _csv_or_gz(csv_dir / "mimic-cxr-2.0.0-metadata.csv")
    records, subject_splits = [], defaultdict(set)
    for number, row in enumerate(read_csv(metadata_csv, ["dicom_id", "subject_id", "study_id", "viewposition"]), 2):
        dicom_id, subject, study = row["dicom_id"], row["subject_id"], row["study_id"]
        if row["viewposition"].upper() not in MIMIC_FRONTAL:
            excluded[f"mimic-cxr: not frontal (ViewPosition {row['viewposition'] or 'empty'})"] += 1
            continue
        if (subject, study) not in studies:
            excluded["mimic-cxr: study without a row in the chexpert labels"] += 1
            continue
        if args.split == "official" and official.get(dicom_id) not in MIMIC_SPLITS:
            raise LabelFileError(
                f"{metadata_csv}: line {number}: dicom_id {dicom_id} has no train/validate/test row in {split_csv}."
            )
        split = MIMIC_SPLITS[official[dicom_id]] if args.split == "official" else "training"
        subject_splits[subject].add(split)
        path = image_dir / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom_id}.jpg"
        records.append((str(path), subject, studies[(subject, study)], split))
    mixed = sorted(subject for subject, splits in subject_splits.items() if len(splits) > 1)
    if mixed:
        raise LabelFileError(
            f"{split_csv}: patients in more than one split ({mixed[:5]}, {len(mixed)} in all): use --split training."
        )
    return image_level_datalist(records, "mimic-cxr", args, excluded), excluded, Counter()


# ------------------------------------------------------------------------------------------------------------------
# combine
# ------------------------------------------------------------------------------------------------------------------


def combine(args: argparse.Namespace) -> tuple[dict[str, Any], Counter, Counter]:
    """Merge datalists: training is the union; validation/test keep boxed entries (``--eval boxed``) or all.

    Entries are copied as they are (every subset, ``A`` included), with image paths made absolute.
    """
    datalist: dict[str, Any] = {"classes": list(CLASSES), "training": [], "validation": [], "test": []}
    excluded: Counter = Counter()
    patients: dict[str, set] = defaultdict(set)
    for path in args.inputs:
        content = json.loads(Path(path).read_text())
        if list(content.get("classes", CLASSES)) != list(CLASSES):
            raise SystemExit(f"{path}: classes {content.get('classes')} differ from {list(CLASSES)}.")
        base = Path(path).resolve().parent
        for split in SPLITS:
            for entry in content.get(split, []):
                entry = {**entry, "image": str(base / entry["image"])}  # absolute stays absolute
                if split != "training" and args.eval == "boxed" and not entry.get("boxed", True):
                    excluded[f"{Path(path).name}: image-level {split} entry (--eval boxed)"] += 1
                    continue
                patients[split].add(entry.get("patient", entry["image"]))
                datalist[split].append(entry)
    for a, b in (("training", "validation"), ("training", "test"), ("validation", "test")):
        shared = patients[a] & patients[b]
        if shared:
            raise SystemExit(f"patients in both {a} and {b}: {sorted(shared)[:5]} ({len(shared)} in all).")
    return datalist, excluded, Counter()


# ------------------------------------------------------------------------------------------------------------------
# command line
# ------------------------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    commands = main.add_subparsers(dest="source", required=True)
    vindr = commands.add_parser("vindr", help="VinDr-CXR annotations -> R, N, boxed validation/test")
    vindr.add_argument("--csv-dir", required=True, help="folder of annotations_{train,test}.csv (+ image_labels_*)")
    vindr.add_argument("--image-dir", required=True, help="folder holding train/ and test/ with <image_id>.dicom")
    vindr.add_argument("--image-pattern", default="{split}/{image_id}.dicom", help="image path under --image-dir")
    vindr.add_argument("--negatives", choices=("no-finding", "no-fracture"), default="no-finding")
    vindr.add_argument("--fusion-iou", type=float, default=0.1, help="IoU that links two readers' boxes")
    vindr.add_argument("--min-readers", type=int, default=1, help="readers a fused box needs")
    vindr.add_argument("--val-fraction", type=float, default=0.1, help="share of training images for validation")
    padchest = commands.add_parser("padchest", help="PadChest labels -> P, N, image-level validation/test")
    padchest.add_argument("--csv", required=True, help="PadChest labels CSV")
    padchest.add_argument("--image-dir", required=True, help="folder holding the numbered ImageDir folders")
    padchest.add_argument("--callus", choices=("exclude", "positive", "negative"), default="exclude")
    padchest.add_argument("--eval-labels", choices=("physician", "all"), default="physician")
    padchest.add_argument("--val-fraction", type=float, default=0.1, help="share of patients for validation")
    padchest.add_argument("--test-fraction", type=float, default=0.1, help="share of patients for test")
    candid = commands.add_parser(
        "candid-ptx", help="CANDID-PTX rib-fracture masks -> R (one box per region), N, boxed validation/test",
        formatter_class=argparse.RawTextHelpFormatter,
        description="CANDID-PTX: rib-fracture RLE masks become rib boxes; negatives are images without a fracture\n"
        "row and without a pneumothorax. Pneumothorax images without a fracture row are NOT negatives by default:\n"
        "a traumatic pneumothorax usually comes with rib fractures, so a missing fracture mask there is weak\n"
        "evidence, and as N it would teach the network that a fracture is background.",
    )  # fmt: skip
    candid.add_argument("--fracture-csv", required=True, help="acute_rib_fracture.csv (anon_SOPUID, mask_rle)")
    candid.add_argument("--reports-csv", required=True, help="Pneumothorax_reports.csv (SOPInstanceUID, filename, "
                        "EncodedPixels): every image, its patient and its pneumothorax mask")  # fmt: skip
    candid.add_argument("--image-dir", required=True, help="folder of the DICOM files")
    candid.add_argument("--image-pattern", default="{uid}", help="image path under --image-dir ({uid} = SOP UID)")
    candid.add_argument("--rle", choices=("auto", *RLE_READINGS), default="auto",
                        help="RLE reading: relative (SIIM-ACR gap, run) or absolute (Kaggle 1-based start, run);\n"
                        "auto: the one the file's masks fit (refused if they disagree or cannot tell)")  # fmt: skip
    candid.add_argument("--mask-grid", default=None, help="COLSxROWS grid the masks were encoded on, if not the "
                        "DICOM's own (boxes are scaled to the DICOM)")  # fmt: skip
    candid.add_argument("--negatives", choices=("no-pneumothorax", "no-fracture"), default="no-pneumothorax",
                        help="no-pneumothorax (default): N = no fracture row and no pneumothorax;\n"
                        "no-fracture: pneumothorax images without a fracture row are N too")  # fmt: skip
    candid.add_argument("--val-fraction", type=float, default=0.1, help="share of patients for validation")
    candid.add_argument("--test-fraction", type=float, default=0.1, help="share of patients for test")
    chexpert = commands.add_parser("chexpert", help="CheXpert Fracture labels -> N (and opt-in A), frontal only")
    chexpert.add_argument("--csv", nargs="+", required=True, help="train.csv (and valid.csv)")
    chexpert.add_argument("--image-root", required=True, help="folder that the CSV's Path column starts from "
                          "(the one holding CheXpert-v1.0/)")  # fmt: skip
    chexpert.add_argument("--val-fraction", type=float, default=0.0, help="share of patients held out for "
                          "validation (image-level negatives only; default 0: all patients train)")  # fmt: skip
    chexpert.add_argument("--test-fraction", type=float, default=0.0, help="as --val-fraction, for test")
    mimic = commands.add_parser("mimic-cxr", help="MIMIC-CXR-JPG Fracture labels -> N (and opt-in A), frontal only")
    mimic.add_argument("--csv-dir", required=True, help="folder of mimic-cxr-2.0.0-{chexpert,metadata,split}.csv")
    mimic.add_argument("--image-dir", default=None, help="folder holding files/ (default: --csv-dir)")
    mimic.add_argument(
        "--split",
        choices=("official", "training"),
        default="official",
        help="official: the split CSV's train/validate/test; training: every image in training",
    )
    for command in (chexpert, mimic):
        command.add_argument(
            "--agnostic",
            choices=("exclude", "include"),
            default="exclude",
            help="Fracture = 1 (no rib/clavicle class): left out (default) or training subset A",
        )
        command.add_argument(
            "--uncertain",
            choices=("exclude", "negative", "positive"),
            default="exclude",
            help="Fracture = -1 (uncertain): left out (default), N, or as Fracture = 1",
        )
        command.add_argument(
            "--blank",
            choices=("exclude", "negative"),
            default="exclude",
            help="Fracture blank (not mentioned in the report): left out (default) or N",
        )
    merged = commands.add_parser("combine", help="merge datalists (training union, boxed evaluation splits)")
    merged.add_argument("--inputs", nargs="+", required=True)
    merged.add_argument("--eval", choices=("boxed", "all"), default="boxed")
    for command in (vindr, padchest, candid, chexpert, mimic, merged):
        command.add_argument("--out", required=True, help="datalist JSON to write")
        command.add_argument("--seed", type=int, default=0)
    return main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    build = {"vindr": build_vindr, "padchest": build_padchest, "candid-ptx": build_candid, "chexpert": build_chexpert,
             "mimic-cxr": build_mimic, "combine": combine}[args.source]  # fmt: skip
    try:
        datalist, excluded, notes = build(args)
    except LabelFileError as error:
        raise SystemExit(str(error)) from error
    return write_datalist(datalist, Path(args.out), excluded, notes)


if __name__ == "__main__":
    main()
