"""The per-image JSON record of a result: detections, image scores and, with an operating point, findings.

:func:`detection_record` builds the per-image JSON of inference (:class:`scripts.deliver.writers.DetectionWriter`)
and MONAI Label's ``result`` (:class:`scripts.deliver.labelmap.DetectionsToResultd`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from scripts.evaluate.operating_point import class_threshold
from scripts.model.detection import detections_by_class

__all__ = ["detection_record"]


def detection_record(
    detections: torch.Tensor,
    image_score: torch.Tensor,
    original_size: Any,
    class_names: Sequence[str],
    decimals: int = 4,
    operating_point: Mapping[str, Mapping[str, float | None]] | None = None,
) -> dict[str, Any]:
    """JSON-serialisable summary of one image: the per-image JSON of inference and MONAI Label's ``result``.

    Returns ``{"image_size": [W, H], "classes": [...], "image_score": {class: p}, "detections": [{"class",
    "x", "y", "score"}, ...]}``; ``x``/``y`` are continuous file pixels (x = column) rounded to one decimal,
    scores to ``decimals``. With an ``operating_point`` (:func:`scripts.evaluate.operating_point.load_operating_point`)
    each detection also gets ``"finding"`` (score at or above its class's threshold), and the record gets
    ``"image_call"`` ``{class: bool}`` (a finding of that class in the image) and ``"operating_point"`` ``{class:
    {"threshold", "fp_per_image", "validation_sensitivity"}}``.

    Args:
        detections: ``(K, 4)`` rows ``(x, y, score, class_index)``.
        image_score: ``(C,)`` image-level probabilities; original_size: file size ``[W, H]``.
        class_names: one name per class.
        operating_point: per-class thresholds chosen on validation, or None.
    """
    class_names = list(class_names)
    per_class = detections_by_class(torch.as_tensor(detections).detach().cpu(), len(class_names))
    scores = torch.as_tensor(image_score).detach().cpu().reshape(-1).tolist()
    record = {
        "image_size": [int(v) for v in torch.as_tensor(original_size).reshape(-1).tolist()],
        "classes": class_names,
        "image_score": {name: round(float(score), decimals) for name, score in zip(class_names, scores, strict=True)},
        "detections": [
            {"class": class_names[cls], "x": round(x, 1), "y": round(y, 1), "score": round(score, decimals)}
            for cls, rows in enumerate(per_class)
            for x, y, score in rows.tolist()
        ],
    }
    if operating_point is not None:
        thresholds = [class_threshold(operating_point, name) for name in class_names]
        flags = [score >= thresholds[cls] for cls, rows in enumerate(per_class) for score in rows[:, 2].tolist()]
        for entry, finding in zip(record["detections"], flags, strict=True):
            entry["finding"] = bool(finding)
        record["image_call"] = {name: any(d["finding"] for d in record["detections"] if d["class"] == name)
                                for name in class_names}  # fmt: skip
        record["operating_point"] = {name: dict(operating_point[name]) for name in class_names}
    return record
