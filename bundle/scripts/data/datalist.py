"""Reading and validating the datalist JSON that describes a CXR fracture dataset.

Format (paths relative to the datalist's folder; boxes in pixels of the stored image, x = column, y = row)::

    {
      "classes": ["rib", "clavicle"],
      "training": [
        {"image": "images/a.dcm", "subset": "R", "labels": {"rib": 1, "clavicle": 0},
         "boxes": [[x1, y1, x2, y2]], "box_classes": ["rib"]},
        {"image": "images/b.png", "subset": "P", "labels": {"rib": 1, "clavicle": 1}},
        {"image": "images/c.dcm", "subset": "N", "labels": {"rib": 0, "clavicle": 0}}
      ],
      "validation": [{"image": "...", "labels": {...}, "boxes": [...], "box_classes": [...]}],
      "test": [...]
    }

Subsets (Wang et al., IPMI 2021): ``R`` positives with expert boxes, ``P`` positives with an image-level label
only, ``N`` negatives. A fourth, opt-in subset ``A`` holds *class-agnostic* positives (CheXpert's or MIMIC-CXR's
``Fracture`` = 1): the image holds a fracture of at least one of the classes its ``labels`` mark 1 (the candidate
classes), but which one is unknown; it has no boxes. Stage 1 never reads ``A``; stage 2 reads it only when
``train#datalist#subsets`` names it, and then forms its target by the rule in :mod:`scripts.distill.aals`.

Validation and test entries carry boxes (an empty list for a negative image), unless the entry
says ``"boxed": false``: then it has image-level labels only (e.g. PadChest), and evaluation scores it for AUROC but
leaves it out of FROC.

:func:`load_datalist` turns one split into the item dictionaries the bundle's transforms expect, and reports
*every* problem it finds in one :class:`DatalistError` rather than stopping at the first.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_CLASSES", "SUBSETS", "DatalistError", "load_datalist", "read_datalist"]

DEFAULT_CLASSES = ("rib", "clavicle")
#: Training subsets (``A``: class-agnostic positives, opt-in); evaluation splits use ``"eval"``.
SUBSETS = ("R", "P", "N", "A")
_SPLITS = ("training", "validation", "test")

logger = logging.getLogger(__name__)


class DatalistError(ValueError):
    """The datalist is malformed; the message lists every offending entry with its file and problem."""


def read_datalist(path: str | Path) -> dict[str, Any]:
    """Parse the datalist JSON at ``path`` (no validation beyond being a JSON object)."""
    path = Path(path)
    if not path.is_file():
        raise DatalistError(f"{path}: datalist file not found.")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatalistError(f"{path}: not valid JSON ({error}).") from error
    if not isinstance(content, dict):
        raise DatalistError(f"{path}: the top level must be a JSON object with 'training'/'validation'/'test' lists.")
    return content


def _parse_labels(labels: Any, classes: Sequence[str], problems: list[str]) -> np.ndarray:
    vector = np.zeros(len(classes), dtype=np.float32)
    if isinstance(labels, dict):
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            problems.append(f"labels name unknown classes {unknown} (classes are {list(classes)})")
        for index, name in enumerate(classes):
            value = labels.get(name, 0)
            if value not in (0, 1, True, False):
                problems.append(f"label of {name!r} must be 0 or 1, got {value!r}")
            vector[index] = float(bool(value))
    elif isinstance(labels, list) and len(labels) == len(classes):
        vector[:] = np.asarray(labels, dtype=np.float32) > 0
    else:
        problems.append(f"'labels' must be an object {{class: 0 or 1}}, got {labels!r}")
    return vector


def _parse_boxes(entry: dict, classes: Sequence[str], problems: list[str]) -> tuple[np.ndarray, np.ndarray]:
    raw_boxes = entry.get("boxes") or []
    raw_classes = entry.get("box_classes") or []
    try:
        boxes = np.asarray(raw_boxes, dtype=np.float32).reshape(-1, 4)
    except (TypeError, ValueError):
        problems.append(f"'boxes' must be a list of [x1, y1, x2, y2], got {raw_boxes!r}")
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    if len(raw_classes) != len(boxes):
        problems.append(f"{len(boxes)} boxes but {len(raw_classes)} box_classes")
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    indices = []
    for name in raw_classes:
        if isinstance(name, str) and name in classes:
            indices.append(classes.index(name))
        elif isinstance(name, int) and not isinstance(name, bool) and 0 <= name < len(classes):
            indices.append(name)
        else:
            problems.append(f"box class {name!r} is not one of {list(classes)}")
            indices.append(-1)
    if not np.isfinite(boxes).all():
        problems.append("box coordinates must be finite numbers")
    elif ((boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])).any():
        problems.append("every box needs x1 < x2 and y1 < y2")
    elif (boxes < 0).any():
        problems.append("box coordinates must not be negative")
    return boxes, np.asarray(indices, dtype=np.int64)


def _parse_entry(
    entry: Any,
    split: str,
    base_dir: Path,
    classes: Sequence[str],
    check_files: bool,
    problems: list[str],
    p_boxes: bool = False,
) -> dict[str, Any] | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
        problems.append("entry must be an object with an 'image' path")
        return None
    image = Path(entry["image"])
    image = image if image.is_absolute() else base_dir / image
    if check_files and not image.is_file():
        problems.append("image file not found")
    subset = entry.get("subset", "eval") if split == "training" else "eval"
    if split != "training" and entry.get("subset") == "A":
        problems.append("subset A (class-agnostic positive) cannot be scored per class: training only")
    if split == "training" and subset not in SUBSETS:
        problems.append(f"subset must be one of {list(SUBSETS)}, got {subset!r}")
    image_label = _parse_labels(entry.get("labels", {}), classes, problems)
    boxes, box_classes = _parse_boxes(entry, classes, problems)
    boxed = entry.get("boxed", True)
    if not isinstance(boxed, bool):
        problems.append(f"'boxed' must be true or false, got {boxed!r}")
    elif not boxed and split == "training":
        problems.append("'boxed': false is for validation/test entries; a training image without boxes is subset P")
    elif not boxed and len(boxes):
        problems.append("'boxed': false but boxes are given")
    if subset == "P" and not p_boxes:  # image-level only, by definition: any boxes given are not used
        boxes, box_classes = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    if subset == "N" and image_label.any():
        problems.append("subset N (negative) but labels mark a fracture")
    if subset == "P" and not image_label.any():
        problems.append("subset P (image-level positive) but no class is labelled 1")
    if subset == "A" and not image_label.any():
        problems.append("subset A (class-agnostic positive) but no class is marked 1 as a candidate")
    if subset == "A" and len(boxes):
        problems.append("subset A (class-agnostic positive) cannot have boxes: a box names its class (use R)")
    boxed_classes = {int(c) for c in box_classes if c >= 0}
    unlabelled = sorted(classes[c] for c in boxed_classes if image_label[c] == 0)
    if unlabelled:
        problems.append(f"boxes of {unlabelled} but labels mark that class 0")
    if subset == "R" or (subset == "eval" and boxed is not False) or (subset == "P" and p_boxes):
        missing = sorted(classes[c] for c in np.flatnonzero(image_label) if c not in boxed_classes)
        if missing:
            problems.append(f"labels mark {missing} positive but no box of that class is given")
    item = {"image": str(image), "subset": subset, "image_label": image_label}
    item.update({"boxes": boxes, "box_classes": box_classes})
    if split != "training":
        item["boxed"] = boxed is not False
    return item


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def real_path(path: str | os.PathLike) -> str:
    """``os.path.realpath(path)``, with the folder's real path computed once per folder: a datalist of 65,845
    images in a few hundred folders needs one ``lstat`` per image instead of one per path component."""
    path = os.fspath(path)
    if ".." in path.split(os.sep) or os.path.islink(path):  # ".." after a link must follow the link: no shortcut
        return os.path.realpath(path)
    path = os.path.abspath(path)
    return os.path.join(_real_folder(os.path.dirname(path)), os.path.basename(path))


def _split_overlaps(content: dict[str, Any], base_dir: Path) -> list[str]:
    """Entries of different splits that name the same image file (leakage), each pair named.

    The same file is the same real path (``os.path.realpath``: relative spellings and symbolic links resolved).
    """
    first_seen: dict[str, tuple[str, int, str]] = {}
    problems: list[str] = []
    for split in _SPLITS:
        entries = content.get(split)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
                continue  # reported by the entry check
            key = real_path(os.path.join(base_dir, entry["image"]))
            seen = first_seen.setdefault(key, (split, index, entry["image"]))
            if seen[0] != split:
                problems.append(
                    f"{seen[0]}[{seen[1]}] {seen[2]} and {split}[{index}] {entry['image']} are the same image "
                    f"({key}): an image must be in one split only"
                )
    return problems


def load_datalist(
    path: str | Path,
    split: str,
    subsets: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    check_files: bool = True,
    p_boxes: bool = False,
) -> list[dict[str, Any]]:
    """Load and validate one split of a datalist.

    Args:
        path: datalist JSON file; relative image paths are resolved against its folder.
        split: ``"training"``, ``"validation"`` or ``"test"``.
        subsets: keep only these training subsets (e.g. ``("R", "N")`` for stage 1); ignored for other splits.
            The training entries of other subsets are counted in one log line (INFO).
        classes: expected class names; default: the datalist's ``"classes"`` or ``("rib", "clavicle")``.
        check_files: also check that every image file exists.
        p_boxes: keep the boxes of P images (then required, as for R). Only the ablation's oracle arm does this:
            the same images, sampled as P, but trained on their boxes, the upper bound of what P can add.

    Returns:
        One dictionary per image with ``image`` (absolute path, str), ``subset`` (``"R"``/``"P"``/``"N"``/``"A"``,
        or ``"eval"`` outside training), ``image_label`` (float32 ``(C,)``, 1 = fracture of that class; for ``A``,
        1 = candidate class),
        ``boxes`` (float32 ``(M, 4)``, x1, y1, x2, y2 pixels) and ``box_classes`` (int64 ``(M,)``); outside
        training also ``boxed`` (bool, False for an image-level-only entry).

    Raises:
        DatalistError: listing every bad entry as ``<split>[<index>] <file>: <problem>``, and every image listed
            in more than one split (leakage between training and evaluation), naming both entries.
    """
    if split not in _SPLITS:
        raise DatalistError(f"{path}: unknown split {split!r}, expected one of {list(_SPLITS)}.")
    path = Path(path)
    content = read_datalist(path)
    file_classes = content.get("classes", list(DEFAULT_CLASSES))
    classes = list(classes) if classes is not None else list(file_classes)
    if list(file_classes) != classes:
        raise DatalistError(f"{path}: datalist classes {file_classes} differ from the bundle's classes {classes}.")
    entries = content.get(split)
    if not isinstance(entries, list):
        raise DatalistError(f"{path}: no list named {split!r} in the datalist.")
    items: list[dict[str, Any]] = []
    base_dir = path.resolve().parent
    errors = _split_overlaps(content, base_dir)
    unused: dict[str, int] = {}
    for index, entry in enumerate(entries):
        problems: list[str] = []
        item = _parse_entry(entry, split, base_dir, classes, check_files, problems, p_boxes)
        if problems:
            name = entry.get("image", "?") if isinstance(entry, dict) else "?"
            errors.extend(f"{split}[{index}] {name}: {problem}" for problem in problems)
        elif item is not None and (subsets is None or split != "training" or item["subset"] in subsets):
            items.append(item)
        elif item is not None:
            unused[item["subset"]] = unused.get(item["subset"], 0) + 1
    if unused and not errors:
        logger.info(
            "%s: %s training entries not used by this stage (it reads subsets %s)",
            path,
            ", ".join(f"{count} {name}" for name, count in sorted(unused.items())),
            list(subsets or []),
        )
    if errors:
        shown = "\n  ".join(errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        raise DatalistError(f"{path}: {len(errors)} problem(s) in {split!r}:\n  {shown}{more}")
    if not items:
        within = f" in subsets {list(subsets)}" if subsets and split == "training" else ""
        raise DatalistError(f"{path}: split {split!r} has no entries{within}.")
    return items
