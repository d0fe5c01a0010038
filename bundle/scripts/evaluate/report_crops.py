"""Overlay crops of the test report: the highest-scoring false positives and the missed boxes, each drawn on a
windowed crop of its image with the ground-truth boxes and the class's detections."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scripts.data.loading import load_cxr
from scripts.evaluate.overlays import CLASS_COLOURS
from scripts.evaluate.report_metrics import FP, ImageOutcomes, ImageRecord

logger = logging.getLogger(__name__)

_BOX_COLOUR = (0, 230, 60)  # ground truth boxes in overlays (green)
_CROP_OUTPUT_PX = 256  # side of an overlay crop, pixels
_CROP_MIN_PX = 96  # smallest crop side in file pixels
_CROP_BOX_FACTOR = 3.0  # crop side = this x the longer box side
_CROP_POINT_FRACTION = 0.1  # crop side around a point = this x the image's shorter side


@dataclass
class OverlayItem:
    """One gallery entry: a false positive (``point``) or a missed box (``box``) of one image and class."""

    kind: str  # "fp" | "missed"
    record_index: int
    class_index: int
    score: float  # FP score, or the max score inside the missed box (-inf: none)
    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    file: str | None = None  # path relative to the report folder once written
    error: str | None = None  # why no crop could be made


def top_false_positives(
    records: Sequence[ImageRecord], outcomes: Sequence[ImageOutcomes], limit: int
) -> list[OverlayItem]:
    """The ``limit`` highest-scoring FP detections over all images and classes (ties: image then row order)."""
    candidates = [
        (-score, i, k, OverlayItem("fp", i, int(cls), score, point=(x, y)))
        for i, (record, outcome) in enumerate(zip(records, outcomes, strict=True))
        for k, ((x, y, score, cls), result) in enumerate(zip(record.detections.tolist(), outcome.outcomes, strict=True))
        if result == FP and record.boxed  # an image without boxes has no known false positives
    ]
    return [item for *_, item in sorted(candidates, key=lambda c: c[:3])[:limit]]


def missed_boxes(
    records: Sequence[ImageRecord], outcomes: Sequence[ImageOutcomes], thresholds: Sequence[float], limit: int
) -> list[OverlayItem]:
    """Up to ``limit`` boxes whose max score inside is below their class's operating threshold, lowest first."""
    candidates = [
        (score, i, m, OverlayItem("missed", i, int(box[4]), score, box=tuple(box[:4])))
        for i, (record, outcome) in enumerate(zip(records, outcomes, strict=True))
        for m, (box, score) in enumerate(zip(record.boxes.tolist(), outcome.box_scores.tolist(), strict=True))
        if score < thresholds[int(box[4])]
    ]
    return [item for *_, item in sorted(candidates, key=lambda c: c[:3])[:limit]]


def _window_uint8(image: np.ndarray) -> np.ndarray:
    """Scale a ``(W, H)`` image to ``uint8`` between its 0.5 and 99.5 percentiles."""
    low, high = np.percentile(image, (0.5, 99.5))
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    return np.round(np.clip((image - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def _crop_window(item: OverlayItem, width: int, height: int) -> tuple[int, int, int]:
    """Square crop ``(x0, y0, side)`` in file pixels around the item, shifted (not cut) to stay in the image."""
    if item.box is not None:
        x1, y1, x2, y2 = item.box
        centre = ((x1 + x2) / 2, (y1 + y2) / 2)
        side = max(_CROP_MIN_PX, _CROP_BOX_FACTOR * max(x2 - x1, y2 - y1))
    else:
        centre = item.point
        side = max(_CROP_MIN_PX, _CROP_POINT_FRACTION * min(width, height))
    side = int(min(round(side), width, height))
    x0 = int(np.clip(round(centre[0] - side / 2), 0, width - side))
    y0 = int(np.clip(round(centre[1] - side / 2), 0, height - side))
    return x0, y0, side


def _draw_circle(draw: ImageDraw.ImageDraw, x: float, y: float, radius: float, colour: tuple, width: int) -> None:
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=colour, width=width)


def _render_crop(
    grey: np.ndarray, record: ImageRecord, item: OverlayItem, class_names: Sequence[str], size: int = _CROP_OUTPUT_PX
) -> Image.Image:
    """Overlay crop of one gallery item.

    Args:
        grey: the windowed image, ``uint8`` of shape ``(W, H)`` (axis 0 = x, as :func:`scripts.data.loading.load_cxr`).
        record: the item's image record (all its boxes and the item class's detections are drawn).
        item: the false positive or missed box to centre on.
        class_names: names for the caption strip.
        size: side of the output, pixels.

    Returns:
        RGB image ``size x size`` (rows = y): ground-truth boxes green, detections of the item's class as circles
        in the class colour (the item's own point larger), and a caption strip.
    """
    x0, y0, side = _crop_window(item, grey.shape[0], grey.shape[1])
    crop = np.ascontiguousarray(grey[x0 : x0 + side, y0 : y0 + side].T)  # (W, H) -> rows = y for PIL
    canvas = Image.fromarray(crop, mode="L").resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    scale = size / side

    def to_canvas(x: float, y: float) -> tuple[float, float]:  # continuous file pixels -> canvas pixels
        return (x - x0) * scale, (y - y0) * scale

    for x1, y1, x2, y2, _ in record.boxes.tolist():
        width = 3 if item.box == (x1, y1, x2, y2) else 1  # the missed box stands out
        draw.rectangle([*to_canvas(x1, y1), *to_canvas(x2, y2)], outline=_BOX_COLOUR, width=width)
    colour = CLASS_COLOURS[item.class_index % len(CLASS_COLOURS)]
    for x, y, _ in record.class_detections(item.class_index).tolist():
        _draw_circle(draw, *to_canvas(x, y), 4, colour, 1)
    if item.point is not None:
        _draw_circle(draw, *to_canvas(*item.point), 9, colour, 3)
    score = f"{item.score:.2f}" if math.isfinite(item.score) else "none"
    caption = f"{'FP' if item.kind == 'fp' else 'missed'} {class_names[item.class_index]} {score}"
    font = ImageFont.load_default(size=13)
    draw.rectangle(draw.textbbox((3, 3), caption, font=font), fill=(0, 0, 0))
    draw.text((3, 3), caption, fill=colour, font=font)
    return canvas


def safe_name(text: str, max_len: int = 60) -> str:
    """File-name-safe version of ``text`` (letters, digits, ``._-``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:max_len] or "x"


def _image_stem(path: str) -> str:
    """File name of ``path`` without its image suffix (``.nii.gz`` included)."""
    name = Path(path).name
    return re.sub(r"(\.nii\.gz|\.[A-Za-z0-9]+)$", "", name) or name


def write_overlays(
    overlay_dir: Path, records: Sequence[ImageRecord], items: Sequence[OverlayItem], class_names: Sequence[str]
) -> None:
    """Render the items' crops into ``overlay_dir``, loading each image once; a failed load sets ``item.error``."""
    overlay_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*overlay_dir.glob("fp_*.png"), *overlay_dir.glob("missed_*.png")]:
        stale.unlink()  # crops of an earlier run would otherwise sit beside this run's gallery
    numbers = {"fp": 0, "missed": 0}
    names = {}  # gallery order: fp_00, fp_01, ..., missed_00, ...
    for item in items:
        names[id(item)] = f"{item.kind}_{numbers[item.kind]:02d}"
        numbers[item.kind] += 1
    for index in sorted({item.record_index for item in items}):
        record = records[index]
        group = [item for item in items if item.record_index == index]
        try:
            grey = _window_uint8(load_cxr(record.image)[0].numpy())
        except Exception as error:  # any unreadable file: the report goes on without this image's crops
            logger.warning("report: no overlay for %s: %s", record.image, error)
            for item in group:
                item.error = str(error)
            continue
        for item in group:
            file_name = f"{names[id(item)]}_{safe_name(_image_stem(record.image))}.png"
            _render_crop(grey, record, item, class_names).save(overlay_dir / file_name)
            item.file = f"{overlay_dir.name}/{file_name}"
