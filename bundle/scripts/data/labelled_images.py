"""Image / label-map pairs (MONAI Label's training data) as the bundle's boxed datalist items.

MONAI Label trains a bundle with ``configs/train.json`` and overrides ``train#dataset#data`` and
``validate#dataset#data`` with ``[{"image": path, "label": path}, ...]`` from its datastore, where the label is a
label map drawn in the viewer (here: 0 background, 1 rib fracture, 2 clavicle fracture, the values of
``outputs.pred.channel_def`` in ``configs/metadata.json``). The bundle's pipeline works on boxes (the paper's
annotation), so :class:`LabelMapToBoxesd` turns each painted region into its bounding box, with the same keys
that :func:`scripts.data.datalist.load_datalist` gives: ``boxes``, ``box_classes``, ``image_label`` and ``subset``.

Those items carry no ``subset`` (R/P/N) before their label map is read, so the training sampler
(:func:`scripts.data.sampling.sampling_weights`, :func:`scripts.data.sampling.samples_per_epoch`) draws them uniformly,
one draw per labelled image per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import ITKReader, NibabelReader, PILReader
from monai.transforms import MapTransform

from scripts.data.loading import CXRInputError

__all__ = [
    "LABEL_SUFFIXES",
    "LabelMapToBoxesd",
    "connected_components",
    "label_map_boxes",
    "read_label_map",
]

#: Label map file endings and the MONAI reader for each (MONAI Label stores what the viewer uploads).
LABEL_SUFFIXES: dict[str, type] = {
    ".png": PILReader,
    ".tif": PILReader,
    ".tiff": PILReader,
    ".nii": NibabelReader,
    ".nii.gz": NibabelReader,
    ".nrrd": ITKReader,
    ".mha": ITKReader,
}

# Regions are found on a grid whose longer side is at most this many cells: fast on a 3000 x 3000 map, and two
# regions closer than one cell (a few pixels) are one fracture anyway.
_COMPONENT_GRID = 512


def read_label_map(path: str | Path) -> torch.Tensor:
    """Read a 2D label map as int64 ``(W, H)`` (axis 0 = x, the loader's layout), refusing non-integer values."""
    name = str(path).lower()
    suffix = next((s for s in sorted(LABEL_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)
    if suffix is None:
        raise CXRInputError(f"{path}: unsupported label map type (expected one of {', '.join(LABEL_SUFFIXES)}).")
    if not Path(path).is_file():
        raise CXRInputError(f"{path}: label map file not found.")
    try:
        reader = LABEL_SUFFIXES[suffix]()
        array, _ = reader.get_data(reader.read(str(path)))
    except Exception as error:  # readers raise many types; name the file
        raise CXRInputError(f"{path}: cannot read the label map: {error}") from error
    array = np.asarray(array)
    while array.ndim > 2 and array.shape[-1] == 1:  # NIfTI and ITK 2D maps may come as (W, H, 1)
        array = array[..., 0]
    if array.ndim != 2:
        raise CXRInputError(f"{path}: a label map must be one 2D channel, got array shape {array.shape}.")
    if not np.array_equal(array, np.round(array)):
        raise CXRInputError(f"{path}: label map values must be integers (0 background, k + 1 for class k).")
    return torch.as_tensor(array.astype(np.int64))


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """Label the 8-connected regions of a boolean ``(w, h)`` mask as 1, 2, ... (0 outside).

    Written here because MONAI's connected-component utilities (``KeepLargestConnectedComponent`` and
    ``get_largest_connected_component_mask``) need scikit-image or cuCIM, and neither they nor SciPy are
    dependencies of this bundle.

    Every pixel starts with its own id and takes the largest id around it until nothing changes, so the number
    of passes is the longest path inside a region: short for the compact regions of fracture annotations.
    """
    mask = torch.as_tensor(mask, dtype=torch.bool)
    # float64 holds every id exactly up to 2**53; max_pool2d has no integer kernel on the CPU
    ids = torch.arange(1, mask.numel() + 1, dtype=torch.float64).reshape(mask.shape) * mask
    while True:
        grown = F.max_pool2d(ids[None, None], kernel_size=3, stride=1, padding=1)[0, 0] * mask
        if torch.equal(grown, ids):
            break
        ids = grown
    _, compact = torch.unique(ids, return_inverse=True)  # 0 stays first, so background stays 0
    return compact.reshape(mask.shape) if mask.any() and not mask.all() else mask.long()


def label_map_boxes(label_map: torch.Tensor, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One box ``(x1, y1, x2, y2)`` per connected region of each class value ``k + 1`` of a ``(W, H)`` label map.

    Returns:
        float32 ``(M, 4)`` boxes in pixels (``x2``/``y2`` exclusive, like the datalist's) and int64 ``(M,)``
        class indices.
    """
    label_map = torch.as_tensor(label_map)
    width, height = label_map.shape
    factor = max(1, math.ceil(max(width, height) / _COMPONENT_GRID))
    xs = torch.arange(width).repeat_interleave(height)
    ys = torch.arange(height).repeat(width)
    boxes, classes = [], []
    for cls in range(num_classes):
        mask = label_map == cls + 1
        if not mask.any():
            continue
        coarse = F.max_pool2d(mask[None, None].float(), factor, factor, ceil_mode=True)[0, 0] > 0
        regions = connected_components(coarse)
        fine = regions.repeat_interleave(factor, 0).repeat_interleave(factor, 1)[:width, :height]
        fine = (fine * mask).reshape(-1)
        count = int(fine.max())
        inside = fine > 0
        index = fine[inside] - 1
        box = torch.stack(
            [
                torch.full((count,), width).scatter_reduce(0, index, xs[inside], "amin"),
                torch.full((count,), height).scatter_reduce(0, index, ys[inside], "amin"),
                torch.zeros(count, dtype=torch.long).scatter_reduce(0, index, xs[inside] + 1, "amax"),
                torch.zeros(count, dtype=torch.long).scatter_reduce(0, index, ys[inside] + 1, "amax"),
            ],
            dim=1,
        )
        boxes.append(box)
        classes.append(torch.full((count,), cls))
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    return torch.cat(boxes).numpy().astype(np.float32), torch.cat(classes).numpy().astype(np.int64)


class LabelMapToBoxesd(MapTransform):
    """Replace a label map (file path or ``(W, H)`` array) by the boxes of its regions and image-level labels.

    Must run after :class:`scripts.data.loading.LoadCXRImaged` (it checks the map against ``original_size``). Items
    without the key (the bundle's own datalists, which give boxes) pass unchanged.

    Sets ``boxes`` (float32 ``(M, 4)``), ``box_classes`` (int64 ``(M,)``), ``image_label`` (float32 ``(C,)``) and
    ``subset`` (``"R"`` with a fracture, ``"N"`` without) and removes the label map.

    Args:
        keys: label map key.
        classes: class names; value ``k + 1`` in the map is class ``k``.
        original_size_key: file size ``[W, H]`` of the image.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        classes: Sequence[str] = ("rib", "clavicle"),
        original_size_key: str = "original_size",
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.classes = list(classes)
        self.original_size_key = original_size_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            source = d.pop(key)
            name = str(source) if isinstance(source, str | Path) else f"label map of {d.get('image_path', '?')}"
            label_map = read_label_map(source) if isinstance(source, str | Path) else torch.as_tensor(source)
            label_map = label_map.squeeze()
            size = [int(v) for v in torch.as_tensor(d[self.original_size_key]).tolist()]
            if list(label_map.shape) != size:
                raise CXRInputError(
                    f"{name}: label map of {tuple(label_map.shape)} pixels (W, H) does not match its image of "
                    f"{tuple(size)} pixels."
                )
            if int(label_map.min()) < 0 or int(label_map.max()) > len(self.classes):
                values = sorted(torch.unique(label_map).tolist())
                raise CXRInputError(
                    f"{name}: label values {values} outside 0..{len(self.classes)} "
                    f"(0 background, {', '.join(f'{i + 1} {c}' for i, c in enumerate(self.classes))})."
                )
            boxes, box_classes = label_map_boxes(label_map, len(self.classes))
            d["boxes"], d["box_classes"] = boxes, box_classes
            d["image_label"] = np.isin(np.arange(len(self.classes)), box_classes).astype(np.float32)
            d["subset"] = "R" if len(boxes) else "N"
        return d
