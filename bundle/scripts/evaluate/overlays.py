"""How a heatmap and its detections are drawn over the image: one colour per class, shared by every picture.

Two pictures, one drawing (rings, scores, a legend in a band below the image, so that it never covers anatomy):

* :func:`render_file_overlay`: the overlay PNG of inference (:class:`scripts.deliver.writers.DetectionWriter`), at the
  file's own resolution up to :data:`OVERLAY_MAX_SIDE` pixels on the long side, over the copy of the image that
  :class:`OverlayImaged` keeps before the network's resize;
* :func:`render_overlay`: on the network's grid, for the validation images in TensorBoard
  (:mod:`scripts.evaluate.tb_overlays`), which have no file-resolution copy.

The evaluation report's crops and curves use the same :data:`CLASS_COLOURS`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform
from PIL import Image, ImageDraw, ImageFont

from scripts.data.transforms import letterbox_content_size

__all__ = ["CLASS_COLOURS", "OVERLAY_KEY", "OVERLAY_MAX_SIDE", "OverlayImaged", "render_file_overlay", "render_overlay"]

#: RGB colour of each class in overlays (rib red, clavicle cyan, then others).
CLASS_COLOURS = ((255, 60, 40), (40, 220, 255), (255, 220, 0), (160, 80, 255))
#: Longest side of an inference overlay, in pixels: the file's own resolution up to this size.
OVERLAY_MAX_SIDE = 2048
#: Item key of :class:`OverlayImaged`'s copy of the image.
OVERLAY_KEY = "overlay_image"
_LEGEND_BACKGROUND = (24, 24, 24)
_LEGEND_TEXT = (235, 235, 235)


class OverlayImaged(MapTransform):
    """Keep a copy of the intensity-scaled image at the file's resolution for the overlay, before the resize.

    Stores ``output_key``: ``uint8`` ``(1, w, h)``, the image's ``[0, 1]`` intensities as 0 to 255, area-averaged
    down so that its long side is at most ``max_side`` pixels (a smaller image is kept at its size).

    Args:
        keys: the image key (``(1, W, H)``, intensities in ``[0, 1]``).
        output_key: where the copy goes.
        max_side: longest side of the copy, pixels.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        output_key: str = OVERLAY_KEY,
        max_side: int = OVERLAY_MAX_SIDE,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key, self.max_side = output_key, int(max_side)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            image = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
            width, height = (int(v) for v in image.shape[1:])
            grey = (image[0].float().clamp(0, 1) * 255.0).round_().to(torch.uint8)  # (W, H)
            factor = min(1.0, self.max_side / max(width, height))
            if factor < 1.0:  # Pillow's box filter on 8-bit pixels (an area average; a quarter of torch's CPU time)
                size = (max(1, round(width * factor)), max(1, round(height * factor)))
                rows = Image.fromarray(np.ascontiguousarray(grey.T.numpy())).resize(size, Image.Resampling.BOX)
                grey = torch.from_numpy(np.array(rows)).T  # (w, h), a view of the rows-first pixels
            d[self.output_key] = grey[None]
        return d


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


#: A legend entry: text, colour, and whether a filled square of the colour comes first (a class).
_Entry = tuple[str, tuple[int, int, int], bool]


def _entry_width(draw: ImageDraw.ImageDraw, entry: _Entry, font: Any, square: int, gap: int) -> float:
    text, _, swatch = entry
    return draw.textlength(text, font=font) + (square + gap // 2 if swatch else 0)


def _wrap(draw: ImageDraw.ImageDraw, entries: Sequence[_Entry], width: int, font: Any, square: int,
          gap: int) -> list[list[_Entry]]:  # fmt: skip
    """Legend entries in lines no wider than ``width`` (an entry wider than that alone gets its own line)."""
    lines: list[list[_Entry]] = [[]]
    used = 0.0
    for entry in entries:
        size = _entry_width(draw, entry, font, square, gap)
        if lines[-1] and used + gap + size > width:
            lines.append([])
            used = 0.0
        used += (gap if lines[-1] else 0) + size
        lines[-1].append(entry)
    return lines


def _compose(
    image: Image.Image,
    points: Sequence[tuple[float, float, float, int]],
    class_names: Sequence[str],
    findings: Sequence[bool] | None,
    image_score: Sequence[float] | None,
) -> Image.Image:
    """Rings and scores over ``image`` (RGB), and the legend in a band below it."""
    width, height = image.size
    long_side = max(width, height)
    radius = max(4, round(long_side / 70))
    font_size = max(11, round(long_side / 64))
    font = _font(font_size)
    stroke = max(1, font_size // 12)
    draw = ImageDraw.Draw(image)
    flags = [None] * len(points) if findings is None else [bool(f) for f in findings]
    for (px, py, score, cls), finding in zip(points, flags, strict=True):
        colour = CLASS_COLOURS[int(cls) % len(CLASS_COLOURS)]
        if finding is False:  # candidate: thin and small, no score
            small = max(2, radius * 2 // 3)
            draw.ellipse([px - small, py - small, px + small, py + small], outline=colour, width=max(1, radius // 6))
            continue
        ring = radius + 2 if finding else radius
        thickness = max(2, radius // 3) if finding else max(1, radius // 5)
        draw.ellipse([px - ring, py - ring, px + ring, py + ring], outline=colour, width=thickness)
        # the score in white with a dark outline: legible over the heatmap and over bone (the ring gives the class)
        draw.text((px + ring + 3, py - ring), f"{score:.2f}", fill=(255, 255, 255), font=font, stroke_width=stroke,
                  stroke_fill=(0, 0, 0))  # fmt: skip
    # the legend: below the image, never over it
    entries: list[_Entry] = []
    for cls, name in enumerate(class_names):
        text = name + (f" {float(image_score[cls]):.2f}" if image_score is not None else "")
        entries.append((text, CLASS_COLOURS[cls % len(CLASS_COLOURS)], True))
    if findings is not None:
        entries += [("thick ring + score: finding", _LEGEND_TEXT, False), ("thin ring: candidate", _LEGEND_TEXT, False)]
    else:
        entries.append(("ring + score: detection", _LEGEND_TEXT, False))
    gap = max(8, round(long_side / 60))
    square = int(font.getbbox("A")[3]) if hasattr(font, "getbbox") else 10
    lines = _wrap(draw, entries, width - 2 * gap, font, square, gap)
    line_height = square + gap // 2 + max(2, square // 4)
    canvas = Image.new("RGB", (width, height + len(lines) * line_height + gap), _LEGEND_BACKGROUND)
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        x, y = float(gap), height + gap // 2 + row * line_height
        for text, colour, swatch in line:
            if swatch:
                draw.rectangle([x, y + square // 5, x + square, y + square + square // 5], fill=colour)
                x += square + gap // 2
            draw.text((x, y), text, fill=colour, font=font)
            x += draw.textlength(text, font=font) + gap
    return canvas


def _blend(grey: torch.Tensor, probs: torch.Tensor, alpha: float) -> Image.Image:
    """The grey image (``uint8``, or float in ``[0, 1]``; rows = y) as RGB with each class's heatmap (``(C, rows,
    columns)``) laid over it in its colour, one class after the other, opacity ``alpha`` at probability 1.

    Pillow's ``Image.composite`` does the arithmetic on 8-bit pixels (measured: a small fraction of the CPU time of
    float arithmetic over a 2,048-pixel image in torch, whose 12 M values dominate).
    """
    if grey.dtype != torch.uint8:
        grey = (grey.float().clamp(0, 1) * 255.0).round_().to(torch.uint8)
    canvas = Image.fromarray(np.ascontiguousarray(grey.numpy())).convert("RGB")
    for cls in range(probs.shape[0]):
        mask = (probs[cls].float().clamp(0, 1) * (alpha * 255.0)).round_().to(torch.uint8)
        layer = Image.new("RGB", canvas.size, CLASS_COLOURS[cls % len(CLASS_COLOURS)])
        canvas = Image.composite(layer, canvas, Image.fromarray(np.ascontiguousarray(mask.numpy())))
    return canvas


def _network_grid_probs(heatmap: torch.Tensor, image_side: int, content: tuple[int, int]) -> torch.Tensor:
    """The heatmap ``(C, S / stride, S / stride)`` upsampled to the network grid, cut to the content and turned to
    rows first: ``(C, content rows, content columns)``."""
    stride = image_side / heatmap.shape[-1]
    upsampled = F.interpolate(torch.as_tensor(heatmap)[None].float(), scale_factor=stride, mode="bilinear")[0]
    return upsampled[:, : content[0], : content[1]].transpose(1, 2)


def _points(detections: torch.Tensor, sx: float, sy: float) -> list[tuple[float, float, float, int]]:
    rows = torch.as_tensor(detections).reshape(-1, 4).tolist()
    return [(x * sx, y * sy, score, int(cls)) for x, y, score, cls in rows]


def render_overlay(
    image: torch.Tensor,
    heatmap: torch.Tensor,
    detections: torch.Tensor,
    scale: torch.Tensor,
    original_size: torch.Tensor,
    class_names: Sequence[str],
    alpha: float = 0.6,
    findings: Sequence[bool] | None = None,
    image_score: Sequence[float] | None = None,
) -> Image.Image:
    """Draw the heatmap and detections over the network-resolution image, the legend in a band below.

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
        image_score: ``(C,)`` image score per class, shown in the legend, or None.

    Returns:
        RGB image: the un-padded network grid (rows = y), then the legend band below it.
    """
    content = letterbox_content_size(original_size, scale)
    grey = torch.as_tensor(image)[0, : content[0], : content[1]].T
    probs = _network_grid_probs(heatmap, image.shape[-1], content)
    sx, sy = (float(v) for v in np.asarray(scale, float))
    return _compose(_blend(grey, probs, alpha), _points(detections, sx, sy), class_names, findings, image_score)


def render_file_overlay(
    overlay_image: torch.Tensor,
    network_side: int,
    heatmap: torch.Tensor,
    detections: torch.Tensor,
    scale: torch.Tensor,
    original_size: torch.Tensor,
    class_names: Sequence[str],
    alpha: float = 0.6,
    findings: Sequence[bool] | None = None,
    image_score: Sequence[float] | None = None,
) -> Image.Image:
    """Draw the heatmap and detections over the file-resolution copy of :class:`OverlayImaged`, legend below.

    Args:
        overlay_image: ``uint8`` ``(1, w, h)``: the image at the file's resolution, or scaled down to
            :data:`OVERLAY_MAX_SIDE` on its long side.
        network_side: the network input's side ``S`` (``image_size``).
        heatmap, detections, scale, original_size, class_names, alpha, findings, image_score: as
            :func:`render_overlay`.

    Returns:
        RGB image of ``h`` rows and ``w`` columns, then the legend band below it.
    """
    width, height = (int(v) for v in overlay_image.shape[1:])
    content = letterbox_content_size(original_size, scale)
    probs = _network_grid_probs(heatmap, network_side, content)
    probs = F.interpolate(probs[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    grey = torch.as_tensor(overlay_image)[0].T  # rows first: a view for OverlayImaged's copy
    file_width, file_height = (float(v) for v in np.asarray(original_size, float))
    points = _points(detections, width / file_width, height / file_height)
    return _compose(_blend(grey, probs, alpha), points, class_names, findings, image_score)
