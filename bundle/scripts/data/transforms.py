"""Dictionary transforms for boxes, target maps and image scores that MONAI does not provide in this form.

Geometry convention used everywhere in the bundle: tensors are ``(C, W, H)`` (axis 1 = x = column), box rows are
``(x1, y1, x2, y2)`` in continuous pixel coordinates where pixel ``k`` spans ``[k, k + 1)``.

Pipeline (see ``configs/train.json``)::

    LoadCXRImaged -> PackBoxesd (original-pixel box table, for FROC)
      -> PercentileScaleIntensityd -> LetterboxResized (image + boxes to the network grid)
      -> BoxesToMaskd (per-class box masks), cached
      -> per batch: scripts.data.batch_augmentation (random affine, flip, intensity; max-pool to stride-4 targets)

:class:`DownsampleMaskd` does that max-pooling for one item, where no batch augmentation runs.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, Resize, ScaleIntensityRange, SpatialPad

from scripts.data.loading import CXRInputError

__all__ = [
    "BoxesToMaskd",
    "DownsampleMaskd",
    "HeatmapScored",
    "LetterboxResized",
    "NOT_BOXED",
    "PackBoxesd",
    "PercentileScaleIntensityd",
    "ScaleBoxesd",
    "is_boxed",
    "percentiles",
    "letterbox_content_size",
    "unpack_boxes",
]

#: Class column of every row of a box table whose image has image-level labels only (no boxes were drawn).
NOT_BOXED = -2.0

# Boxes may touch the far image edge (x2 = W); allow half a pixel of rounding beyond it.
_EDGE_TOLERANCE = 0.5


def _filename(d: Mapping, key: Hashable) -> str:
    value = d.get(key)
    meta = getattr(value, "meta", None) or {}
    return str(meta.get("filename_or_obj", "<unknown file>"))


class LetterboxResized(MapTransform):
    """Resize so that the longer side is ``spatial_size``, keeping the aspect ratio, then zero-pad at the end.

    Padding only after the image (right and bottom) keeps the mapping between network pixels and file pixels a
    pure per-axis scale, stored as ``scale`` = ``[sx, sy]`` (float32): ``x_network = x_file * sx``. The boxes
    under ``box_key`` (if present) are scaled the same way and checked against the original image size.

    Args:
        keys: image keys, ``(C, W, H)``.
        spatial_size: side of the square network input, pixels.
        box_key: key of the ``(M, 4)`` boxes to rescale; missing keys are skipped.
        mode: interpolation for the down-sampling (``"area"`` avoids aliasing of thin cortical lines).
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: int,
        box_key: str = "boxes",
        mode: str = "area",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_size = int(spatial_size)
        self.box_key = box_key
        self.resize = Resize(spatial_size=self.spatial_size, size_mode="longest", mode=mode)
        self.pad = SpatialPad(spatial_size=(self.spatial_size, self.spatial_size), method="end", mode="constant")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            original = torch.tensor(d[key].shape[1:], dtype=torch.float32)
            resized = self.resize(d[key])
            scale = torch.tensor(resized.shape[1:], dtype=torch.float32) / original
            d[key] = self.pad(resized)
            d["scale"] = scale
            if self.box_key in d:
                d[self.box_key] = self._scale_boxes(d[self.box_key], original, scale, _filename(data, key))
        return d

    @staticmethod
    def _scale_boxes(boxes: Any, original: torch.Tensor, scale: torch.Tensor, filename: str) -> torch.Tensor:
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
        limit = torch.cat([original, original]) + _EDGE_TOLERANCE
        outside = (boxes > limit).any(dim=1) | (boxes < 0).any(dim=1)
        if outside.any():
            bad = boxes[outside][0].tolist()
            raise CXRInputError(
                f"{filename}: box {bad} lies outside the image of {int(original[0])} x {int(original[1])} pixels "
                "(boxes are x1, y1, x2, y2 with x = column)."
            )
        return boxes * torch.cat([scale, scale])


class ScaleBoxesd(MapTransform):
    """The box half of :class:`LetterboxResized`, for an image letterboxed earlier (read from the preprocessed store).

    Scales the ``(M, 4)`` boxes by the stored letterbox ``scale`` ``[sx, sy]`` after checking them against the file
    size ``original_size`` ``[W, H]``, exactly as :class:`LetterboxResized` does when boxes travel with the image.

    Args:
        keys: key of the ``(M, 4)`` boxes in file pixels.
        scale_key, size_key: keys of the letterbox scale and the file size.
        path_key: key of the image's path, named in the error for a box outside its image.
    """

    def __init__(
        self,
        keys: KeysCollection = "boxes",
        scale_key: str = "scale",
        size_key: str = "original_size",
        path_key: str = "image_path",
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scale_key, self.size_key, self.path_key = scale_key, size_key, path_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        original = torch.as_tensor(d[self.size_key], dtype=torch.float32)
        scale = torch.as_tensor(d[self.scale_key], dtype=torch.float32)
        for key in self.key_iterator(d):
            name = str(d.get(self.path_key, "<unknown file>"))
            d[key] = LetterboxResized._scale_boxes(d[key], original, scale, name)
        return d


def letterbox_content_size(original_size: Any, scale: Any, stride: float = 1) -> tuple[int, int]:
    """Cells ``(w, h)`` of a stride-``stride`` network grid that hold image content; the rest is padding.

    :class:`LetterboxResized` resizes the file to ``round(W * sx) x round(H * sy)`` pixels and stores ``scale`` in
    float32, so the product is only close to that integer: it is rounded before the division by the stride, so
    that a float error never turns a padding cell into content.

    Args:
        original_size: file size ``[W, H]`` in pixels.
        scale: letterbox scale ``[sx, sy]`` (network pixels per file pixel).
        stride: network pixels per grid cell (1 for the network input, the output stride for heatmaps).
    """
    size = torch.as_tensor(original_size, dtype=torch.float64).reshape(2).cpu()
    resized = torch.round(size * torch.as_tensor(scale, dtype=torch.float64).reshape(2).cpu())
    width, height = (int(v) for v in torch.ceil(resized / stride))
    return width, height


class BoxesToMaskd(MapTransform):
    """Rasterise boxes into a per-class binary mask on the grid of a reference image.

    MONAI's ``BoxToMaskd`` writes one channel per *box*; the heatmap target needs the union per *class*, so
    boxes are painted directly. A pixel belongs to a box when its footprint overlaps the box, so a box thinner
    than a pixel still marks one.

    Args:
        keys: key of the ``(M, 4)`` boxes in the reference image's pixels.
        output_key: key for the float32 mask ``(num_classes, W, H)``.
        class_key: ``(M,)`` class index of each box.
        ref_key: image whose spatial shape the mask takes.
        num_classes: mask channels.
    """

    def __init__(
        self,
        keys: KeysCollection = "boxes",
        output_key: str = "label",
        class_key: str = "box_classes",
        ref_key: str = "image",
        num_classes: int = 2,
    ) -> None:
        super().__init__(keys)
        self.output_key, self.class_key, self.ref_key, self.num_classes = output_key, class_key, ref_key, num_classes

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        width, height = d[self.ref_key].shape[1:]
        for key in self.key_iterator(d):
            boxes = torch.as_tensor(np.asarray(d[key], dtype=np.float32)).reshape(-1, 4)
            classes = torch.as_tensor(np.asarray(d[self.class_key], dtype=np.int64)).reshape(-1)
            mask = torch.zeros((self.num_classes, width, height), dtype=torch.float32)
            for (x1, y1, x2, y2), cls in zip(boxes.tolist(), classes.tolist(), strict=True):
                if not 0 <= cls < self.num_classes:
                    raise CXRInputError(f"{_filename(d, self.ref_key)}: box class index {cls} is not a known class.")
                i1, j1 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
                i2, j2 = min(max(int(np.ceil(x2)), i1 + 1), width), min(max(int(np.ceil(y2)), j1 + 1), height)
                mask[cls, i1:i2, j1:j2] = 1.0
            d[self.output_key] = mask
        return d


class DownsampleMaskd(MapTransform):
    """Down-sample binary masks by max-pooling, so a cell is positive when any pixel under it is.

    Turns a full-resolution box mask ``(C, W, H)`` into the heatmap target ``(C, W / stride, H / stride)``.
    Max-pooling keeps boxes smaller than a cell, which ``Resized(mode="area")`` followed by a threshold also
    would, in one step.
    """

    def __init__(self, keys: KeysCollection, stride: int = 4, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.stride = int(stride)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = torch.as_tensor(d[key], dtype=torch.float32)
            d[key] = F.max_pool2d(mask[None], kernel_size=self.stride, stride=self.stride)[0]
        return d


class PackBoxesd(MapTransform):
    """Pack variable-length boxes into a fixed ``(max_boxes, 5)`` table so that images can be batched.

    Rows are ``(x1, y1, x2, y2, class_index)`` in the *original* file's pixels; unused rows are -1. The table
    travels with the batch to the FROC metric, which needs the boxes in file coordinates. An image whose
    ``boxed_key`` is False (image-level labels only) gets a table whose class column is :data:`NOT_BOXED`
    throughout, so that FROC leaves it out (:func:`is_boxed`) instead of counting its detections as false positives.

    Args:
        keys: key of the ``(M, 4)`` boxes.
        output_key: key for the table.
        class_key: ``(M,)`` class indices.
        max_boxes: table length; an image with more boxes is refused (its name is given).
        boxed_key: key of the item's "boxes were drawn" flag (absent: True).
    """

    def __init__(
        self,
        keys: KeysCollection = "boxes",
        output_key: str = "box_table",
        class_key: str = "box_classes",
        max_boxes: int = 32,
        boxed_key: str = "boxed",
    ) -> None:
        super().__init__(keys)
        self.output_key, self.class_key, self.max_boxes = output_key, class_key, int(max_boxes)
        self.boxed_key = boxed_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            boxes = np.asarray(d[key], dtype=np.float32).reshape(-1, 4)
            classes = np.asarray(d[self.class_key], dtype=np.float32).reshape(-1, 1)
            if len(boxes) > self.max_boxes:
                raise CXRInputError(
                    f"{_filename(d, 'image')}: {len(boxes)} boxes, more than max_boxes={self.max_boxes}."
                )
            table = torch.full((self.max_boxes, 5), -1.0)
            table[: len(boxes)] = torch.as_tensor(np.concatenate([boxes, classes], axis=1))
            if not bool(d.get(self.boxed_key, True)):
                table[:, 4] = NOT_BOXED
            d[self.output_key] = table
        return d


def is_boxed(table: torch.Tensor | np.ndarray) -> bool:
    """False for the :class:`PackBoxesd` table of an image with image-level labels only (no boxes drawn)."""
    column = np.asarray(torch.as_tensor(table).detach().cpu(), dtype=np.float64).reshape(-1, 5)[:, 4]
    return not (column.size and (column == NOT_BOXED).all())


def unpack_boxes(table: torch.Tensor | np.ndarray, class_index: int | None = None) -> np.ndarray:
    """Return the ``(M, 4)`` boxes of a :class:`PackBoxesd` table, optionally only those of one class."""
    table = np.asarray(torch.as_tensor(table).detach().cpu(), dtype=np.float64).reshape(-1, 5)
    keep = table[:, 4] >= 0 if class_index is None else table[:, 4] == class_index
    return table[keep, :4]


class HeatmapScored(MapTransform):
    """Image-level score per class = maximum of the class's heatmap (the paper's image classifier).

    Args:
        keys: heatmap key, probabilities ``(C, h, w)``.
        output_key: where to store the ``(C,)`` scores.
    """

    def __init__(self, keys: KeysCollection = "pred", output_key: str = "image_score") -> None:
        super().__init__(keys)
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = torch.as_tensor(d[key]).flatten(1).amax(dim=1)
        return d


#: Largest value range (max - min + 1) for which :func:`percentiles` counts a histogram instead of sorting.
_HISTOGRAM_MAX_RANGE = 1 << 20


def percentiles(image: Any, q: Sequence[float]) -> list[float]:
    """The ``q`` percentiles (0-100) of all values of ``image``, as ``np.percentile`` (linear) computes them.

    A radiograph holds integers (12 to 16 bits): their order statistics are read off a cumulative histogram, a
    few times faster than the partial sort ``np.percentile`` does on 6 million pixels. Other data (non-integer
    values, or a range over 2**20) go through one ``np.percentile`` call for all ``q``. Results are float32, as
    ``np.percentile`` returns for a float32 image.
    """
    values = np.ravel(np.asarray(torch.as_tensor(image).detach().cpu(), dtype=np.float32), order="K")  # any order
    low, high = float(values.min()), float(values.max())
    if high - low + 1 > _HISTOGRAM_MAX_RANGE or not np.array_equal(values, np.rint(values)):
        return [float(v) for v in np.percentile(values, list(q)).astype(np.float32)]
    cumulative = np.cumsum(np.bincount(values.astype(np.int32) - np.int32(low)))
    out = []
    for quantile in q:
        position = (values.size - 1) * float(quantile) / 100.0
        below = int(np.floor(position))
        above = min(below + 1, values.size - 1)
        # value of the k-th smallest element (0-based): first histogram bin whose cumulative count exceeds k
        v0 = low + float(np.searchsorted(cumulative, below, side="right"))
        v1 = low + float(np.searchsorted(cumulative, above, side="right"))
        out.append(float(np.float32(v0 + (position - below) * (v1 - v0))))
    return out


class PercentileScaleIntensityd(MapTransform):
    """MONAI's ``ScaleIntensityRangePercentilesd`` (``relative=False``) with the percentiles from :func:`percentiles`.

    MONAI's transform calls ``np.percentile`` twice, each sorting a copy of the whole image: on a 2,500-pixel
    radiograph about 75 ms, the largest cost of inference preprocessing with the light network. The result is the
    same: ``[lower, upper]`` percentiles map to ``[b_min, b_max]`` through MONAI's ``ScaleIntensityRange``.

    Args:
        keys: image keys.
        lower, upper: percentiles (0-100).
        b_min, b_max: output range.
        clip: clip the output to ``[b_min, b_max]``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        lower: float,
        upper: float,
        b_min: float = 0.0,
        b_max: float = 1.0,
        clip: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.lower, self.upper, self.b_min, self.b_max, self.clip = lower, upper, b_min, b_max, clip

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            a_min, a_max = percentiles(d[key], (self.lower, self.upper))
            d[key] = ScaleIntensityRange(a_min, a_max, self.b_min, self.b_max, clip=self.clip)(d[key])
        return d
