"""Heatmap peaks as fracture detections, in the pixel coordinates of the original file.

The paper reads fracture locations as local maxima of the probability map. MONAI's ``ProbNMS`` does this
greedily, one peak at a time, on a single channel; a max-pool local-maximum test finds all peaks of all
classes in one vectorised pass, which matters when validation runs every epoch.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform

from scripts.data.transforms import letterbox_content_size
from scripts.model.network import OUTPUT_STRIDE

__all__ = ["HeatmapToDetectionsd", "detections_by_class", "heatmap_peaks"]

# Detections keep this far (file pixels) inside the far edge: the JSON rounds coordinates to one decimal.
_EDGE_MARGIN = 0.1


def heatmap_peaks(
    heatmap: torch.Tensor,
    min_distance: int = 2,
    score_floor: float = 0.01,
    max_per_class: int = 20,
    valid_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Find local maxima of each class's heatmap.

    Args:
        heatmap: probabilities ``(C, w, h)`` (axis 1 = x).
        min_distance: a peak is the maximum of the ``(2 * min_distance + 1)`` square around it, in cells.
        score_floor: peaks below this probability are dropped. Keep it low so the FROC curve is traced fully.
        max_per_class: keep at most this many peaks per class, highest first.
        valid_size: ``(w, h)`` cells holding image content; peaks in the padding beyond are ignored.

    Returns:
        float32 ``(K, 4)`` rows ``(i, j, score, class_index)``, ``i``/``j`` cell indices along x/y, sorted by
        class then descending score.
    """
    heatmap = torch.as_tensor(heatmap).detach().float()
    if heatmap.ndim != 3:
        raise ValueError(f"heatmap must be (C, w, h), got shape {tuple(heatmap.shape)}.")
    if valid_size is not None:
        heatmap = heatmap[:, : int(valid_size[0]), : int(valid_size[1])]
    kernel = 2 * int(min_distance) + 1
    pooled = F.max_pool2d(heatmap[None], kernel_size=kernel, stride=1, padding=int(min_distance))[0]
    is_peak = (heatmap == pooled) & (heatmap >= score_floor)
    rows = []
    for cls in range(heatmap.shape[0]):
        i, j = torch.nonzero(is_peak[cls], as_tuple=True)
        scores = heatmap[cls, i, j]
        order = torch.argsort(scores, descending=True)[:max_per_class]
        cls_column = torch.full_like(scores[order], float(cls))
        rows.append(torch.stack([i[order].float(), j[order].float(), scores[order], cls_column], dim=1))
    return torch.cat(rows) if rows else torch.zeros((0, 4))


class HeatmapToDetectionsd(MapTransform):
    """Turn a probability heatmap into detections ``(x, y, score, class_index)`` in the file's pixels.

    A cell ``i`` covers network pixels ``[stride * i, stride * (i + 1))``; the centre of the part of it that holds
    image content is mapped back through :class:`scripts.data.transforms.LetterboxResized`'s ``scale``:
    ``x = (stride * i + min(stride * (i + 1), w)) / 2 / sx``, with ``w`` the resized content width. For a cell
    wholly inside the content this is its centre; for the last, partly padded cell it is the centre of its content,
    so a detection never lies in the padding, i.e. outside the file. Coordinates are continuous (pixel ``k`` spans
    ``[k, k + 1)``), like the boxes, and are kept inside ``[0, W - 0.1]`` so that the JSON's one decimal never
    rounds a detection onto the far edge ``W``.

    Args:
        keys: heatmap key, probabilities ``(C, w, h)``.
        output_key: where to store the float32 ``(K, 4)`` detections.
        scale_key: key of the ``[sx, sy]`` letterbox scale; without it coordinates stay in network pixels.
        original_size_key: key of the file's ``[W, H]``, used to ignore peaks in the padding.
        stride: heatmap stride in network pixels.
        min_distance, score_floor, max_per_class: see :func:`heatmap_peaks`.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        output_key: str = "detections",
        scale_key: str = "scale",
        original_size_key: str = "original_size",
        stride: int = OUTPUT_STRIDE,
        min_distance: int = 2,
        score_floor: float = 0.01,
        max_per_class: int = 20,
    ) -> None:
        super().__init__(keys)
        self.output_key, self.scale_key, self.original_size_key = output_key, scale_key, original_size_key
        self.stride, self.min_distance = stride, min_distance
        self.score_floor, self.max_per_class = score_floor, max_per_class

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            scale = torch.as_tensor(d.get(self.scale_key, torch.ones(2)), dtype=torch.float32).reshape(2).cpu()
            if self.original_size_key not in d:
                peaks = heatmap_peaks(d[key], self.min_distance, self.score_floor, self.max_per_class)
                peaks[:, :2] = self.stride * (peaks[:, :2] + 0.5) / scale
                d[self.output_key] = peaks
                continue
            size = torch.as_tensor(d[self.original_size_key], dtype=torch.float32).reshape(2).cpu()
            valid = letterbox_content_size(size, scale, self.stride)
            peaks = heatmap_peaks(d[key], self.min_distance, self.score_floor, self.max_per_class, valid)
            content = torch.tensor(letterbox_content_size(size, scale), dtype=torch.float32)  # network pixels
            start = self.stride * peaks[:, :2]
            end = torch.minimum(start + self.stride, content)
            peaks[:, :2] = torch.minimum((start + end) / 2 / scale, size - _EDGE_MARGIN).clamp(min=0.0)
            d[self.output_key] = peaks
        return d


def detections_by_class(detections: torch.Tensor, num_classes: int) -> list[torch.Tensor]:
    """Split ``(K, 4)`` detections into one ``(N_c, 3)`` array ``(x, y, score)`` per class."""
    detections = torch.as_tensor(detections).reshape(-1, 4)
    return [detections[detections[:, 3] == c, :3] for c in range(num_classes)]
