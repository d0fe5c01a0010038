"""Operating point: per-class score thresholds chosen on the validation split and shipped next to the checkpoint.

A detection at or above its class's threshold is a **finding**; below it, a **candidate**. The threshold of a class is
the lowest detection score whose false-positive rate on the validation split is at most ``fp_rate`` false positives
per image (default 0.2), i.e. the most sensitive point within that budget on the validation FROC curve
(:func:`scripts.evaluate.froc.froc_curve_from_scores`; MONAI's ``compute_froc_curve_data`` drops the lowest score, see
:mod:`scripts.evaluate.froc`). The validation sensitivity there is stored with it. The test split never chooses it:
:class:`OperatingPointSaver` runs in training only (``configs/train.json``, ``configs/distill.json``), and
evaluation only measures the shipped threshold (:func:`evaluate_at_operating_point`).

File ``<checkpoint stem>_operating_point.json`` beside the checkpoint (``models/model_operating_point.json`` for
``models/model.pt``)::

    {"fp_rate": 0.2, "split": "validation", "checkpoint": "model.pt", "epoch": 7, "num_images": 150,
     "classes": {"rib": {"threshold": 0.41, "fp_per_image": 0.18, "validation_sensitivity": 0.62, "num_boxes": 60},
                 "clavicle": {...}}}

``threshold`` is ``null`` when even the highest-scoring false positive exceeds the budget: nothing is a finding.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import numpy as np
import torch

from scripts.evaluate.class_metrics import class_froc
from scripts.evaluate.froc import match_detections, threshold_index
from scripts.utils.checkpoints import write_json_atomic

if TYPE_CHECKING:
    from ignite.engine import Engine

    from scripts.evaluate.metrics import FROCMetric
    from scripts.evaluate.report_metrics import ImageRecord

__all__ = [
    "DEFAULT_FP_RATE",
    "OperatingPointSaver",
    "choose_threshold",
    "class_threshold",
    "evaluate_at_operating_point",
    "finding_flags",
    "load_operating_point",
    "operating_point_path",
]

logger = logging.getLogger(__name__)

#: False positives per image on the validation split at which the thresholds are chosen.
DEFAULT_FP_RATE = 0.2


def operating_point_path(checkpoint: str | os.PathLike) -> str:
    """The operating-point file of a checkpoint: ``models/model.pt`` -> ``models/model_operating_point.json``."""
    return os.path.splitext(str(checkpoint))[0] + "_operating_point.json"


def _json_number(value: float, decimals: int = 6) -> float | None:
    return round(float(value), decimals) if math.isfinite(value) else None


def choose_threshold(fp_scores: np.ndarray, tp_scores: np.ndarray, num_images: int, fp_rate: float) -> dict:
    """Operating point of one class from validation matches.

    Args:
        fp_scores: ``(F,)`` scores of the false-positive detections; tp_scores: ``(B,)`` per box its hit score or
            ``-inf`` (:func:`scripts.evaluate.froc.match_detections`); num_images: images with boxes drawn (FP
            denominator).
        fp_rate: FP budget per image.

    Returns:
        ``{"threshold", "fp_per_image", "validation_sensitivity", "num_boxes"}``; ``threshold`` is None (no finding
        ever) when the budget admits no detection, ``validation_sensitivity`` None without boxes.
    """
    curve = class_froc(fp_scores, tp_scores, num_images)  # no boxes: NaN sensitivity, reported as None
    fps, sensitivity, thresholds = curve.fps_per_image, curve.sensitivity, curve.thresholds
    index = threshold_index(fps, thresholds, fp_rate)
    return {
        "threshold": _json_number(thresholds[index]),
        "fp_per_image": _json_number(fps[index], 4),
        "validation_sensitivity": _json_number(sensitivity[index], 4),
        "num_boxes": int(np.asarray(tp_scores).size),
    }


class OperatingPointSaver:
    """Write the operating point of the validation run each time the checkpoint saver writes ``checkpoint``.

    Attach it to the validation evaluator *after* the ``CheckpointSaver`` that writes ``checkpoint`` (both run on
    ``EPOCH_COMPLETED``, in attachment order). Every validation computes the thresholds from the FROC metric's
    gathered matches (a collective call under ``torch.distributed``: every rank runs it); rank 0 writes the file
    when the checkpoint file changed during this epoch, so the thresholds always belong to the saved weights.

    Args:
        froc_metric: the evaluator's :class:`scripts.evaluate.metrics.FROCMetric`.
        checkpoint: path of the key-metric checkpoint (e.g. ``<ckpt_dir>/model.pt``).
        class_names: class names in channel order.
        fp_rate: FP budget per image on the validation split.
    """

    def __init__(
        self, froc_metric: FROCMetric, checkpoint: str, class_names: Sequence[str], fp_rate: float = DEFAULT_FP_RATE
    ) -> None:
        self.froc_metric, self.checkpoint = froc_metric, Path(checkpoint)
        self.class_names, self.fp_rate = list(class_names), float(fp_rate)
        self.output = Path(operating_point_path(self.checkpoint))
        self._stamp = self._checkpoint_stamp()
        self.latest: dict[str, Any] | None = None

    def _checkpoint_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.checkpoint.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_ino

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        matches, num_images = self.froc_metric.class_matches()
        classes = {
            name: choose_threshold(fp, tp, num_images, self.fp_rate)
            for name, (fp, tp) in zip(self.class_names, matches, strict=True)
        }
        self.latest = {"fp_rate": self.fp_rate, "split": "validation", "checkpoint": self.checkpoint.name,
                       "num_images": num_images, "classes": classes}  # fmt: skip
        stamp = self._checkpoint_stamp()
        if idist.get_rank() != 0 or stamp is None or stamp == self._stamp:
            return
        self._stamp = stamp
        trainer_epoch = getattr(getattr(engine, "state", None), "epoch", None)
        self.latest["epoch"] = int(trainer_epoch) if trainer_epoch is not None else None
        write_json_atomic(self.latest, self.output, indent=2, allow_nan=False)  # a kill leaves no half file
        summary = ", ".join(
            f"{name} {c['threshold']} (sensitivity {c['validation_sensitivity']} at {c['fp_per_image']} FP/image)"
            for name, c in classes.items()
        )
        logger.info("operating point at %s FP/image on validation -> %s: %s", self.fp_rate, self.output, summary)


def load_operating_point(
    path: str | os.PathLike, class_names: Sequence[str], fallback_threshold: float = 0.5
) -> dict[str, dict[str, float | None]]:
    """Read the shipped operating point as ``{class: {"threshold", "fp_per_image", "validation_sensitivity"}}``.

    A missing file gives ``fallback_threshold`` for every class, with None FP rate and sensitivity (the threshold
    was not chosen on validation) and a warning; a file for other classes is refused, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        logger.warning(
            "%s not found: findings use the fallback threshold %s, not one chosen on validation.",
            path,
            fallback_threshold,
        )
        return {name: {"threshold": float(fallback_threshold), "fp_per_image": None, "validation_sensitivity": None}
                for name in class_names}  # fmt: skip
    try:
        content = json.loads(path.read_text())
        classes = content["classes"]
        missing = [name for name in class_names if name not in classes]
        if missing:
            raise ValueError(f"no threshold for class(es) {missing}")
        return {
            name: {key: classes[name].get(key) for key in ("threshold", "fp_per_image", "validation_sensitivity")}
            for name in class_names
        }
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a valid operating-point file ({error}).") from error


def class_threshold(operating_point: Mapping[str, Mapping], name: str) -> float:
    """Threshold of class ``name`` as a float; a ``None`` threshold (no finding within the budget) is ``inf``."""
    value = operating_point[name]["threshold"]
    return math.inf if value is None else float(value)


def finding_flags(
    detections: torch.Tensor | np.ndarray, operating_point: Mapping[str, Mapping], class_names: Sequence[str]
) -> tuple[np.ndarray, dict[str, bool]]:
    """Per detection ``(K, 4)`` rows ``(x, y, score, class)``: is it a finding; per class: the image-level call.

    Returns ``(findings (K,) bool, {class: True when the image holds a finding of that class})``.
    """
    rows = np.asarray(torch.as_tensor(detections).detach().cpu(), dtype=np.float64).reshape(-1, 4)
    thresholds = np.array([class_threshold(operating_point, name) for name in class_names])
    findings = rows[:, 2] >= thresholds[rows[:, 3].astype(int)] if len(rows) else np.zeros(0, bool)
    calls = {name: bool(findings[rows[:, 3] == c].any()) for c, name in enumerate(class_names)}
    return findings, calls


def evaluate_at_operating_point(
    records: Sequence[ImageRecord], class_names: Sequence[str], operating_point: Mapping[str, Mapping]
) -> dict[str, Any]:
    """Lesion- and image-level results of the shipped thresholds on an evaluated split.

    Per class: ``sensitivity`` (boxes with a finding inside / boxes) and ``fp_per_image`` (findings inside no box /
    images with boxes drawn), over the boxed images; ``image_sensitivity`` / ``image_specificity`` of the image
    call (a finding of the class anywhere) over all images. Undefined values are None.
    """
    result = {}
    for c, name in enumerate(class_names):
        threshold = class_threshold(operating_point, name)
        hits = boxes = false_positives = boxed_images = 0
        calls, labels = [], []
        for record in records:
            points = record.class_detections(c)
            calls.append(bool((points[:, 2] >= threshold).any()))
            labels.append(bool(record.image_label[c]))
            if not record.boxed:
                continue
            fp, tp = match_detections(points, record.class_boxes(c))
            hits, boxes = hits + int((tp >= threshold).sum()), boxes + tp.size
            false_positives += int((fp >= threshold).sum())
            boxed_images += 1
        calls_arr, labels_arr = np.array(calls, bool), np.array(labels, bool)
        positives, negatives = int(labels_arr.sum()), int((~labels_arr).sum())
        result[name] = {
            "threshold": operating_point[name]["threshold"],
            "validation_fp_per_image": operating_point[name].get("fp_per_image"),
            "validation_sensitivity": operating_point[name].get("validation_sensitivity"),
            "sensitivity": round(hits / boxes, 4) if boxes else None,
            "fp_per_image": round(false_positives / boxed_images, 4) if boxed_images else None,
            "image_sensitivity": round(int((calls_arr & labels_arr).sum()) / positives, 4) if positives else None,
            "image_specificity": round(int((~calls_arr & ~labels_arr).sum()) / negatives, 4) if negatives else None,
            "num_boxes": boxes,
            "num_boxed_images": boxed_images,
        }
    return result
