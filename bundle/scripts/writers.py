"""Ignite handler writing per-image detection JSON files and heatmap overlays, and a run summary.

MONAI's ``SaveImage`` writes images and ``ClassificationSaver`` writes CSV rows; neither writes the per-image
JSON a PACS integration or a reader study needs (detections with class, position and score), nor accounts for
every input path of a run, so this handler does. Each result JSON is written last and atomically (a temporary
file renamed into place), so a result file that exists is complete: ``skip_existing`` relies on it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from scripts.checkpoints import atomic_open
from scripts.detection import detection_record
from scripts.inference import strip_image_suffix
from scripts.loading import WARNINGS_KEY
from scripts.operating_point import finding_flags
from scripts.transforms import letterbox_content_size

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["DetectionWriter", "render_overlay", "write_text_atomic", "CLASS_COLOURS"]

logger = logging.getLogger(__name__)

#: RGB colour of each class in overlays (rib red, clavicle cyan, then others).
CLASS_COLOURS = ((255, 60, 40), (40, 220, 255), (255, 220, 0), (160, 80, 255))


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through :func:`scripts.checkpoints.atomic_open`: never half a file. No fsync: one
    result per image of a large archive, where a per-file disk flush would cost more than a lost result."""
    with atomic_open(path, durable=False) as stream:
        stream.write(text)


def render_overlay(
    image: torch.Tensor,
    heatmap: torch.Tensor,
    detections: torch.Tensor,
    scale: torch.Tensor,
    original_size: torch.Tensor,
    class_names: Sequence[str],
    alpha: float = 0.6,
    findings: Sequence[bool] | None = None,
) -> Image.Image:
    """Draw the heatmap and detections over the network-resolution image.

    With ``findings`` (one flag per detection, :func:`scripts.operating_point.finding_flags`), a finding is drawn
    as a thick ring with its score and a candidate (below the operating point) as a thin, smaller ring without
    text; without it every detection is drawn as a ring with its score.

    Args:
        image: network input ``(1, S, S)`` in ``[0, 1]``.
        heatmap: probabilities ``(C, S / stride, S / stride)``.
        detections: ``(K, 4)`` rows ``(x, y, score, class)`` in file pixels.
        scale: letterbox scale ``[sx, sy]``; original_size: file size ``[W, H]``.
        class_names: one name per heatmap channel (for the legend).
        alpha: opacity of a heatmap pixel of probability 1.
        findings: ``(K,)`` finding (True) or candidate (False) per detection, or None.

    Returns:
        RGB image of the un-padded network grid, rows = y.
    """
    width, height = letterbox_content_size(original_size, scale)
    scale = np.asarray(scale, float)
    grey = np.asarray(image, np.float32)[0, :width, :height]
    stride = image.shape[-1] / heatmap.shape[-1]
    upsampled = F.interpolate(torch.as_tensor(heatmap)[None].float(), scale_factor=stride, mode="bilinear")[0]
    probs = upsampled.numpy()[:, :width, :height]
    rgb = np.repeat(np.clip(grey, 0, 1)[..., None] * 255.0, 3, axis=-1)
    for cls in range(probs.shape[0]):
        weight = (alpha * np.clip(probs[cls], 0, 1))[..., None]
        rgb = rgb * (1 - weight) + np.asarray(CLASS_COLOURS[cls % len(CLASS_COLOURS)], float) * weight
    canvas = Image.fromarray(np.transpose(rgb, (1, 0, 2)).astype(np.uint8))  # (w, h, 3) -> rows = y
    draw = ImageDraw.Draw(canvas)
    radius = max(3, canvas.width // 100)
    rows = torch.as_tensor(detections).reshape(-1, 4).tolist()
    flags = [None] * len(rows) if findings is None else [bool(f) for f in findings]
    for (x, y, score, cls), finding in zip(rows, flags, strict=True):
        px, py = x * scale[0], y * scale[1]
        colour = CLASS_COLOURS[int(cls) % len(CLASS_COLOURS)]
        if finding is False:  # candidate: thin and small, no score
            small = max(2, radius * 2 // 3)
            draw.ellipse([px - small, py - small, px + small, py + small], outline=colour, width=1)
            continue
        ring = radius + 2 if finding else radius
        draw.ellipse([px - ring, py - ring, px + ring, py + ring], outline=colour, width=4 if finding else 2)
        draw.text((px + ring + 2, py - ring), f"{score:.2f}", fill=colour)
    for cls, name in enumerate(class_names):
        draw.text((4, 4 + 12 * cls), name, fill=CLASS_COLOURS[cls % len(CLASS_COLOURS)])
    if findings is not None:
        draw.text((4, 4 + 12 * len(class_names)), "thick ring: finding, thin ring: candidate", fill=(255, 255, 255))
    return canvas


class DetectionWriter:
    """Write ``<name>.json`` (and ``<name>_overlay.png``) per image and ``summary.json`` at the end.

    ``<name>`` is the item's ``output_name`` (see :func:`scripts.inference.output_names`: the path relative to the
    input folder without its ending, unique for every input), else the file name without its ending. Per-image
    JSON::

        {"image": path, "image_size": [W, H], "classes": [...],
         "image_score": {class: probability},
         "detections": [{"class": "rib", "x": 812.5, "y": 1033.0, "score": 0.93}, ...],
         "warnings": ["DICOM ViewPosition is not set: ..."]}

    ``x``/``y`` are continuous pixel coordinates of the original file (x = column, y = row). ``summary.json``
    accounts for every path: ``{"processed": n, "refused": n, "skipped": n, "existing": n, "with_warnings": n,
    "images": [{"image": path, "status": ..., "result": name.json | "reason": text, "warnings": [...]}]}`` with
    status ``processed`` (result written), ``refused`` (an image file that cannot be scored, e.g. unreadable or
    blank: ``error`` set by :class:`scripts.inference.FailSafeDataset`), ``skipped`` (not an image file) or
    ``existing`` (result already there, ``skip_existing``). The run goes on past every refused file.

    With an ``operating_point`` every detection also has ``"finding"`` and the record ``"image_call"`` and
    ``"operating_point"`` (:func:`scripts.detection.detection_record`).

    Args:
        output_dir: folder for the results (created).
        class_names: heatmap channel names.
        overlay: also write an overlay PNG per image.
        score_decimals: rounding of scores and coordinates in the JSON.
        heatmap_key: key of the probability heatmap ``(C, w, h)`` drawn in the overlay. ``pred`` holds the label
            map at the file's size by then (:class:`scripts.labelmap.HeatmapToLabelMapd`, for MONAI Label).
        skipped: paths not run on, ``{"image", "status", "reason"}`` (:attr:`scripts.inference.InputListing.skipped`).
        operating_point: per-class thresholds chosen on validation
            (:func:`scripts.operating_point.load_operating_point`): each detection is marked ``"finding"`` or not,
            ``image_call`` and ``operating_point`` are added to the JSON, and the overlay draws the two kinds apart.
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        overlay: bool = True,
        score_decimals: int = 4,
        heatmap_key: str = "heatmap",
        skipped: Sequence[dict[str, str]] = (),
        operating_point: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.operating_point = operating_point
        self.heatmap_key = heatmap_key
        self.class_names = list(class_names)
        self.overlay = overlay
        self.decimals = score_decimals
        self.skipped = [dict(entry) for entry in skipped]
        self.entries: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._write_batch)
        engine.add_event_handler(Events.COMPLETED, self.write_summary)

    def _reset(self, engine: Engine | None = None) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.entries = []

    def _result_path(self, data: dict[str, Any], path: str) -> Path:
        name = str(data.get("output_name") or "") or strip_image_suffix(Path(path).name)
        target = (self.output_dir / f"{name}.json").resolve()
        if not target.is_relative_to(self.output_dir.resolve()):
            raise ValueError(f"output name {name!r} would leave the output folder {self.output_dir}")
        return target

    def _write_batch(self, engine: Engine) -> None:
        for item, batch_item in zip(engine.state.output, engine.state.batch, strict=True):
            data = {**batch_item, **item}
            path = str(data["image_path"])
            if data.get("error"):
                self.entries.append({"image": path, "status": "refused", "reason": str(data["error"])})
                continue
            warnings = [w for w in str(data.get(WARNINGS_KEY) or "").split("\n") if w]
            try:
                result = self._write_item(data, path, warnings)
            except (OSError, ValueError) as error:  # a full disk, a read-only folder: report the image, keep going
                self.entries.append({"image": path, "status": "refused", "reason": f"cannot write results: {error}"})
                continue
            name = result.relative_to(self.output_dir.resolve()).as_posix()
            self.entries.append({"image": path, "status": "processed", "result": name, "warnings": warnings})
            for warning in warnings:
                logger.warning("%s: %s", path, warning)

    def _write_item(self, data: dict[str, Any], path: str, warnings: list[str]) -> Path:
        target = self._result_path(data, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        detections = torch.as_tensor(data["detections"]).cpu()
        summary = detection_record(
            detections, data["image_score"], data["original_size"], self.class_names, self.decimals,
            self.operating_point,
        )  # fmt: skip
        record = {"image": path, **summary, "warnings": warnings}
        findings = None
        if self.operating_point is not None:
            findings = finding_flags(detections, self.operating_point, self.class_names)[0]
        if self.overlay:
            overlay = render_overlay(
                torch.as_tensor(data["image"]).cpu(),
                torch.as_tensor(data[self.heatmap_key]).cpu(),
                detections,
                torch.as_tensor(data["scale"]).cpu(),
                torch.as_tensor(data["original_size"]).cpu(),
                self.class_names,
                findings=findings,
            )
            overlay.save(target.with_name(target.name[: -len(".json")] + "_overlay.png"))
        write_text_atomic(target, json.dumps(record, indent=2))  # last: an existing JSON means a complete result
        return target

    def write_summary(self, engine: Engine | None = None) -> dict[str, Any]:
        """Write ``summary.json`` (also callable without an engine, when every input was skipped)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        entries = sorted(self.entries + self.skipped, key=lambda entry: entry["image"])
        counts = {status: sum(e["status"] == status for e in entries) for status in STATUSES}
        summary = {**counts, "with_warnings": sum(bool(e.get("warnings")) for e in entries), "images": entries}
        write_text_atomic(self.output_dir / "summary.json", json.dumps(summary, indent=2))
        logger.info(
            "inference: %d processed, %d refused, %d skipped, %d existing; results in %s",
            *(counts[status] for status in STATUSES),
            self.output_dir,
        )
        skipped = [e for e in entries if e["status"] == "skipped"]
        if skipped:
            listing = "\n".join(f"  {e['image']}: {e['reason']}" for e in skipped)
            logger.info("inference: %d path(s) skipped, not image files:\n%s", len(skipped), listing)
        refused = [e for e in entries if e["status"] == "refused"]
        if refused:
            listing = "\n".join(f"  {e['image']}: {e['reason']}" for e in refused)
            logger.warning("inference: %d file(s) refused:\n%s", len(refused), listing)
        return summary


#: Statuses of ``summary.json`` entries, in the order they are counted.
STATUSES = ("processed", "refused", "skipped", "existing")
