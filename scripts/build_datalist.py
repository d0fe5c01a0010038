"""Build this bundle's datalist from the label files of public chest X-ray datasets (no code to write).

    python scripts/build_datalist.py vindr --csv-dir VINDR/annotations --image-dir VINDR --out vindr.json
    python scripts/build_datalist.py padchest --csv PADCHEST_labels.csv --image-dir PADCHEST/images --out pc.json
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

``combine`` merges datalists: training is the union; validation/test keep the boxed entries only
(``--eval boxed``, default; VinDr-CXR's) or every entry (``--eval all``).

Every command prints a count per split, subset and class, writes it next to the datalist as
``<out>.counts.json``, and validates the result with the bundle's own datalist loader. Image paths are written
absolute. Label files are parsed as data only (CSV and Python-literal lists of strings), never executed.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
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


class LabelFileError(ValueError):
    """A label file is missing, lacks a column or holds a bad value; the message names the file and the row."""


# ------------------------------------------------------------------------------------------------------------------
# shared helpers
# ------------------------------------------------------------------------------------------------------------------


def read_csv(path: Path, required: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV file as dicts keyed by the lower-cased header; checks the ``required`` columns (lower case)."""
    if not path.is_file():
        raise LabelFileError(f"{path}: label file not found.")
    with path.open(newline="", encoding="utf-8-sig") as handle:
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


def count_report(datalist: dict[str, Any], excluded: Counter) -> dict[str, Any]:
    """Images per split and subset, positive images and boxes per class, and the reasons images were left out."""
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
    return report


def format_report(report: dict[str, Any]) -> str:
    """The count report as a text table."""
    columns = "".join(f"{c + ' +':>12}{c + ' boxes':>14}" for c in CLASSES)
    lines = [f"{'split':<11}{'subset':<12}{'images':>8}{columns}"]
    for split in SPLITS:
        for subset, row in sorted(report[split]["subsets"].items()):
            cells = "".join(f"{row[f'{c}_positive']:>12}{row.get(f'{c}_boxes', 0):>14}" for c in CLASSES)
            lines.append(f"{split:<11}{subset:<12}{row['images']:>8}{cells}")
    for reason, count in report["excluded"].items():
        lines.append(f"left out: {count} ({reason})")
    return "\n".join(lines)


def write_datalist(datalist: dict[str, Any], out: Path, excluded: Counter) -> dict[str, Any]:
    """Validate ``datalist`` with the bundle's loader, write it and its count report; return the report."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(datalist, indent=1))
    for split in SPLITS:
        if datalist.get(split):
            try:
                load_datalist(out, split, classes=CLASSES, check_files=False)
            except DatalistError as error:
                raise SystemExit(f"the datalist built from the label files is invalid:\n{error}") from error
    report = count_report(datalist, excluded)
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


def build_vindr(args: argparse.Namespace) -> tuple[dict[str, Any], Counter]:
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
    return datalist, excluded


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


def build_padchest(args: argparse.Namespace) -> tuple[dict[str, Any], Counter]:
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
    return datalist, excluded


# ------------------------------------------------------------------------------------------------------------------
# combine
# ------------------------------------------------------------------------------------------------------------------


def combine(args: argparse.Namespace) -> tuple[dict[str, Any], Counter]:
    """Merge datalists: training is the union; validation/test keep boxed entries (``--eval boxed``) or all."""
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
    return datalist, excluded


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
    merged = commands.add_parser("combine", help="merge datalists (training union, boxed evaluation splits)")
    merged.add_argument("--inputs", nargs="+", required=True)
    merged.add_argument("--eval", choices=("boxed", "all"), default="boxed")
    for command in (vindr, padchest, merged):
        command.add_argument("--out", required=True, help="datalist JSON to write")
        command.add_argument("--seed", type=int, default=0)
    return main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    build = {"vindr": build_vindr, "padchest": build_padchest, "combine": combine}[args.source]
    try:
        datalist, excluded = build(args)
    except LabelFileError as error:
        raise SystemExit(str(error)) from error
    return write_datalist(datalist, Path(args.out), excluded)


if __name__ == "__main__":
    main()
