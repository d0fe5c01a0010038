"""How a heatmap and its detections are drawn over the image: one colour per class, shared by every picture.

:func:`render_overlay` draws the overlay PNG of inference (:class:`scripts.deliver.writers.DetectionWriter`) and the
validation images in TensorBoard (:mod:`scripts.evaluate.tb_overlays`); the evaluation report's crops and curves use
the same :data:`CLASS_COLOURS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from scripts.data.transforms import letterbox_content_size

__all__ = ["CLASS_COLOURS", "render_overlay"]

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
    findings: Sequence[bool] | None = None,
) -> Image.Image:
    """Draw the heatmap and detections over the network-resolution image.

    With ``findings`` (one flag per detection, :func:`scripts.evaluate.operating_point.finding_flags`), a finding is
    drawn as a thick ring with its score and a candidate (below the operating point) as a thin, smaller ring without
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
