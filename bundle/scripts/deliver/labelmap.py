"""Heatmaps as a 2D label map at the file's own size, and detections as plain JSON: what MONAI Label serves.

MONAI Label (0.8.5) runs ``configs/inference.json`` itself and writes ``d["pred"]`` as the label file it sends to
the viewer, after its own ``Restored`` step. That step only resizes when the shape differs from the input's, and
a float multi-channel stride-4 heatmap on the letterboxed grid is not a label a viewer can show. So the last
post-processing steps turn the heatmap into what a viewer expects, and keep the heatmap under another key for
the bundle's own writer:

    heatmap (C, S / stride, S / stride), probabilities on the letterboxed network grid
      -> label map (W, H) uint8 at the original file size: 0 background, k + 1 for class k
      -> d["result"]: detections and image scores as JSON-serialisable values (MONAI Label returns it as-is)

Layout: the label map has the loader's ``(W, H)`` axes (axis 0 = x = column), the same as the input tensor
``(1, W, H)`` of :class:`scripts.data.loading.LoadCXRImaged`; MONAI Label's ITK writer transposes it to the row-major
array ITK expects, so the written file has the input's width and height.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform

from scripts.data.loading import WARNINGS_KEY
from scripts.data.transforms import letterbox_content_size
from scripts.deliver.records import detection_record
from scripts.model.network import OUTPUT_STRIDE

__all__ = ["DetectionsToResultd", "HeatmapToLabelMapd", "heatmap_to_label_map", "upsample_to_original"]


def upsample_to_original(
    heatmap: torch.Tensor,
    scale: torch.Tensor,
    original_size: Sequence[int],
    stride: int = OUTPUT_STRIDE,
    pixels: tuple[slice, slice] | None = None,
) -> torch.Tensor:
    """Sample a letterboxed stride-``stride`` heatmap at the centre of every pixel of the original file.

    File pixel ``k`` (centre ``k + 0.5``) lies at network coordinate ``(k + 0.5) * s`` (``s`` = letterbox scale of
    that axis), i.e. at ``(k + 0.5) * s / stride`` heatmap cells, where cell ``i`` spans ``[i, i + 1)``. Sampling
    there bilinearly undoes the resize in one step, without a round trip through the padded network grid. The
    heatmap is first cropped to the cells that hold image content, and sampling clamps at the border of that crop,
    so the padding cells (the network's answer to zeros) never blend into the last rows or columns.

    Args:
        heatmap: ``(C, w, h)`` values on the heatmap grid (axis 1 = x).
        scale: letterbox scale ``[sx, sy]`` (network pixels per file pixel).
        original_size: file size ``[W, H]`` in pixels.
        stride: network pixels per heatmap cell.
        pixels: ``(x slice, y slice)`` of file pixels to sample (steps of 1); None: all.

    Returns:
        float32 ``(C, W, H)``, or ``(C, len(x slice), len(y slice))`` for ``pixels``.
    """
    heatmap = torch.as_tensor(heatmap).detach().float().cpu()
    if heatmap.ndim != 3:
        raise ValueError(f"heatmap must be (C, w, h), got shape {tuple(heatmap.shape)}.")
    scale = torch.as_tensor(scale, dtype=torch.float64).reshape(2).cpu()
    width, height = (int(v) for v in torch.as_tensor(original_size).reshape(2).tolist())
    content = letterbox_content_size((width, height), scale, stride)
    heatmap = heatmap[:, : max(content[0], 1), : max(content[1], 1)]
    cells = torch.tensor(heatmap.shape[1:], dtype=torch.float64)
    # normalised grid_sample coordinates (align_corners=False): -1 is the left edge of cell 0, +1 the right edge
    # of the last cell, so a position p (in cells) maps to 2 p / cells - 1
    columns, rows = pixels if pixels is not None else (slice(0, width), slice(0, height))
    x = (torch.arange(width, dtype=torch.float64)[columns] + 0.5) * scale[0] / stride
    y = (torch.arange(height, dtype=torch.float64)[rows] + 0.5) * scale[1] / stride
    x, y = 2.0 * x / cells[0] - 1.0, 2.0 * y / cells[1] - 1.0
    # grid_sample reads (N, C, H_in, W_in) with grid[..., 0] indexing the last axis: here W_in is our y axis
    grid = torch.stack(torch.meshgrid(y, x, indexing="xy"), dim=-1).float()  # (W, H, 2) = (y, x) per pixel
    sampled = F.grid_sample(heatmap[None], grid[None], mode="bilinear", padding_mode="border", align_corners=False)
    return sampled[0]


def heatmap_to_label_map(probabilities: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Turn per-class probabilities ``(C, W, H)`` into a uint8 label map ``(W, H)``.

    A pixel gets ``k + 1`` when class ``k`` is the most probable class there and its probability is at least
    ``threshold``; otherwise 0 (background). Classes are not exclusive in the network (one sigmoid each), so where
    two are above the threshold the more probable one wins: a label map holds one value per pixel.
    """
    probabilities = torch.as_tensor(probabilities)
    if probabilities.ndim != 3 or probabilities.shape[0] > 254:
        raise ValueError(f"probabilities must be (C, W, H) with C < 255, got shape {tuple(probabilities.shape)}.")
    best, index = probabilities.max(dim=0)
    return torch.where(best >= threshold, index + 1, 0).to(torch.uint8)


class HeatmapToLabelMapd(MapTransform):
    """Replace the heatmap under ``keys`` by a ``(W, H)`` label map at the file's size; keep the heatmap elsewhere.

    Args:
        keys: heatmap key, probabilities ``(C, w, h)`` on the letterboxed stride-``stride`` grid.
        heatmap_key: where the heatmap is kept (for overlays); ``None`` drops it.
        threshold: minimum probability of a labelled pixel.
        scale_key: letterbox scale ``[sx, sy]`` from :class:`scripts.data.transforms.LetterboxResized`.
        original_size_key: file size ``[W, H]`` from :class:`scripts.data.loading.LoadCXRImaged`.
        stride: network pixels per heatmap cell.

    Items without the scale or size (the placeholders of unreadable files, see
    :class:`scripts.deliver.inference.FailSafeDataset`) are left as they are.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        heatmap_key: str | None = "heatmap",
        threshold: float = 0.5,
        scale_key: str = "scale",
        original_size_key: str = "original_size",
        stride: int = OUTPUT_STRIDE,
    ) -> None:
        super().__init__(keys)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}.")
        self.heatmap_key, self.threshold = heatmap_key, float(threshold)
        self.scale_key, self.original_size_key, self.stride = scale_key, original_size_key, int(stride)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.scale_key not in d or self.original_size_key not in d:
            return d
        for key in self.key_iterator(d):
            heatmap = d[key]
            if self.heatmap_key is not None:
                d[self.heatmap_key] = heatmap
            # a plain tensor, not a MetaTensor: the heatmap's meta describes the letterboxed grid, not this map
            d[key] = self._label_map(torch.as_tensor(heatmap).detach().float().cpu(), d[self.scale_key],
                                     d[self.original_size_key])  # fmt: skip
        return d

    def _label_map(self, heatmap: torch.Tensor, scale: Any, original_size: Any) -> torch.Tensor:
        """:func:`heatmap_to_label_map` of :func:`upsample_to_original`, computed only where it can be non-zero.

        Bilinear sampling gives weighted means of neighbouring cells, never more than the largest of them: a file
        pixel can reach ``threshold`` only between cells where some class does. Only the file pixels around those
        cells are sampled (on a 2,500-pixel radiograph the full map costs about 0.13 s; most images have no
        such cell, and then none is sampled). The result is identical to sampling every pixel.
        """
        width, height = (int(v) for v in torch.as_tensor(original_size).reshape(2).tolist())
        label_map = torch.zeros((width, height), dtype=torch.uint8)
        content = letterbox_content_size((width, height), scale, self.stride)
        hot = heatmap[:, : max(content[0], 1), : max(content[1], 1)].amax(0) >= self.threshold
        if not hot.any():
            return label_map
        cells = hot.nonzero()
        scale = torch.as_tensor(scale, dtype=torch.float64).reshape(2).cpu()
        ranges = []
        for axis, size in enumerate((width, height)):
            # file pixel k samples cell position p = (k + 0.5) * s / stride - 0.5 (cell centres): it blends cells
            # floor(p) and floor(p) + 1, so it can be hot only if p lies within one cell of a hot one
            first, last = int(cells[:, axis].min()) - 1, int(cells[:, axis].max()) + 1
            per_cell = self.stride / float(scale[axis])  # file pixels per cell
            start = max(int(np.floor((first + 0.5) * per_cell - 0.5)), 0)
            stop = min(int(np.ceil((last + 0.5) * per_cell - 0.5)) + 1, size)
            ranges.append(slice(start, max(stop, start)))
        probabilities = upsample_to_original(heatmap, scale, (width, height), self.stride, pixels=tuple(ranges))
        label_map[ranges[0], ranges[1]] = heatmap_to_label_map(probabilities, self.threshold)
        return label_map


class DetectionsToResultd(MapTransform):
    """Collect detections and image scores into a JSON-serialisable dictionary (MONAI Label's ``result``).

    Output::

        {"classes": ["rib", "clavicle"], "label_values": {"rib": 1, "clavicle": 2},
         "image_size": [W, H], "image_score": {"rib": 0.91, "clavicle": 0.03},
         "detections": [{"class": "rib", "x": 812.5, "y": 1033.0, "score": 0.93}, ...],
         "warnings": ["DICOM ViewPosition is not set: ..."]}

    ``x``/``y`` are continuous pixel coordinates of the original file (x = column, y = row), as in the bundle's
    own per-image JSON (:class:`scripts.deliver.writers.DetectionWriter`); ``warnings`` are those of the loader
    (:class:`scripts.data.loading.LoadCXRImaged`, e.g. DICOM tags that are not set).

    Args:
        keys: key of the ``(K, 4)`` detections ``(x, y, score, class_index)``.
        class_names: one name per heatmap channel; label value of class ``k`` is ``k + 1``.
        output_key: key of the dictionary (MONAI Label returns ``d["result"]`` to the client).
        score_key: ``(C,)`` image scores; original_size_key: file size ``[W, H]``.
        decimals: rounding of scores (coordinates get one decimal).
        operating_point: per-class thresholds chosen on validation (``finding``, ``image_call`` and
            ``operating_point`` are added, as in the bundle's per-image JSON), or None.

    Items without the file size (placeholders of unreadable files) are left as they are.
    """

    def __init__(
        self,
        keys: KeysCollection = "detections",
        class_names: Sequence[str] = ("rib", "clavicle"),
        output_key: str = "result",
        score_key: str = "image_score",
        original_size_key: str = "original_size",
        decimals: int = 4,
        operating_point: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> None:
        super().__init__(keys)
        self.class_names, self.operating_point = list(class_names), operating_point
        self.output_key, self.score_key, self.original_size_key = output_key, score_key, original_size_key
        self.decimals = int(decimals)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.original_size_key not in d:
            return d
        for key in self.key_iterator(d):
            record = detection_record(
                d[key], d[self.score_key], d[self.original_size_key], self.class_names, self.decimals,
                self.operating_point,
            )  # fmt: skip
            d[self.output_key] = {
                **record,
                "label_values": {name: index + 1 for index, name in enumerate(self.class_names)},
                "warnings": [w for w in str(d.get(WARNINGS_KEY) or "").split("\n") if w],
            }
        return d
