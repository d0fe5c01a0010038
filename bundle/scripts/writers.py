"""Ignite handler writing per-image detection JSON files and heatmap overlays, and a run summary.

MONAI's ``SaveImage`` writes images and ``ClassificationSaver`` writes CSV rows; neither writes the per-image
JSON a PACS integration or a reader study needs (detections with class, position and score), so this handler
does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from scripts.detection import detection_record
from scripts.loading import SUPPORTED_SUFFIXES
from scripts.transforms import letterbox_content_size

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["DetectionWriter", "render_overlay", "CLASS_COLOURS"]

logger = logging.getLogger(__name__)

#: RGB colour of each class in overlays (rib red, clavicle cyan, then others).
CLASS_COLOURS = ((255, 60, 40), (40, 220, 255), (255, 220, 0), (160, 80, 255))


def render_overlay(
    image: torch.Tensor,
    heatmap: torch.Tensor,
    detections: torch.Tensor,
    scale: torch.Tensor,
    original_size: torch.Tensor,
    class_names: Sequence[str],
    alpha: float = 0.6,
) -> Image.Image:
    """Draw the heatmap and detections over the network-resolution image.

    Args:
        image: network input ``(1, S, S)`` in ``[0, 1]``.
        heatmap: probabilities ``(C, S / stride, S / stride)``.
        detections: ``(K, 4)`` rows ``(x, y, score, class)`` in file pixels.
        scale: letterbox scale ``[sx, sy]``; original_size: file size ``[W, H]``.
        class_names: one name per heatmap channel (for the legend).
        alpha: opacity of a heatmap pixel of probability 1.

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
    for x, y, score, cls in torch.as_tensor(detections).tolist():
        px, py = x * scale[0], y * scale[1]
        colour = CLASS_COLOURS[int(cls) % len(CLASS_COLOURS)]
        draw.ellipse([px - radius, py - radius, px + radius, py + radius], outline=colour, width=2)
        draw.text((px + radius + 2, py - radius), f"{score:.2f}", fill=colour)
    for cls, name in enumerate(class_names):
        draw.text((4, 4 + 12 * cls), name, fill=CLASS_COLOURS[cls % len(CLASS_COLOURS)])
    return canvas


class DetectionWriter:
    """Write ``<stem>.json`` (and ``<stem>_overlay.png``) per image and ``summary.json`` at the end.

    Per-image JSON::

        {"image": path, "image_size": [W, H], "classes": [...],
         "image_score": {class: probability},
         "detections": [{"class": "rib", "x": 812.5, "y": 1033.0, "score": 0.93}, ...]}

    ``x``/``y`` are continuous pixel coordinates of the original file (x = column, y = row). Files that could not
    be read (``error`` set by :class:`scripts.inference.FailSafeDataset`) are listed in ``summary.json`` with
    the reason, and the run goes on.

    Args:
        output_dir: folder for the results (created).
        class_names: heatmap channel names.
        overlay: also write an overlay PNG per image.
        score_decimals: rounding of scores and coordinates in the JSON.
        heatmap_key: key of the probability heatmap ``(C, w, h)`` drawn in the overlay. ``pred`` holds the label
            map at the file's size by then (:class:`scripts.labelmap.HeatmapToLabelMapd`, for MONAI Label).
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        overlay: bool = True,
        score_decimals: int = 4,
        heatmap_key: str = "heatmap",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.heatmap_key = heatmap_key
        self.class_names = list(class_names)
        self.overlay = overlay
        self.decimals = score_decimals
        self.written: list[str] = []
        self.failures: list[dict[str, str]] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._write_batch)
        engine.add_event_handler(Events.COMPLETED, self._write_summary)

    def _reset(self, engine: Engine) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.written, self.failures = [], []

    def _stem(self, path: str) -> str:
        name = Path(path).name
        suffixes = sorted((s for group in SUPPORTED_SUFFIXES.values() for s in group), key=len, reverse=True)
        for suffix in suffixes:  # longest first, so ".nii.gz" wins over ".gz"-less ".nii"
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return Path(path).stem

    def _write_batch(self, engine: Engine) -> None:
        for item, batch_item in zip(engine.state.output, engine.state.batch, strict=True):
            data = {**batch_item, **item}
            path = str(data["image_path"])
            if data.get("error"):
                self.failures.append({"image": path, "error": str(data["error"])})
                continue
            try:
                self._write_item(data, path)
            except OSError as error:  # a full disk or a read-only folder: report the image, keep going
                self.failures.append({"image": path, "error": f"cannot write results: {error}"})

    def _write_item(self, data: dict[str, Any], path: str) -> None:
        stem = self._stem(path)
        detections = torch.as_tensor(data["detections"]).cpu()
        summary = detection_record(
            detections, data["image_score"], data["original_size"], self.class_names, self.decimals
        )
        record = {"image": path, **summary}
        (self.output_dir / f"{stem}.json").write_text(json.dumps(record, indent=2))
        if self.overlay:
            overlay = render_overlay(
                torch.as_tensor(data["image"]).cpu(),
                torch.as_tensor(data[self.heatmap_key]).cpu(),
                detections,
                torch.as_tensor(data["scale"]).cpu(),
                torch.as_tensor(data["original_size"]).cpu(),
                self.class_names,
            )
            overlay.save(self.output_dir / f"{stem}_overlay.png")
        self.written.append(path)

    def _write_summary(self, engine: Engine) -> None:
        summary = {"processed": len(self.written), "failed": len(self.failures), "failures": self.failures}
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        logger.info("inference: wrote results for %d image(s) to %s", len(self.written), self.output_dir)
        if self.failures:
            listing = "\n".join(f"  {f['image']}: {f['error']}" for f in self.failures)
            logger.warning("inference: %d image(s) failed:\n%s", len(self.failures), listing)
