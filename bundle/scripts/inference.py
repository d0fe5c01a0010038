"""Inference over a folder of radiographs that keeps going past files it cannot read.

A hospital export holds the odd truncated DICOM, a secondary capture without pixels or a stray report. MONAI's
``Dataset`` would stop the whole run at the first one; :class:`FailSafeDataset` instead returns a small
placeholder marked with the error, and :class:`scripts.writers.DetectionWriter` lists it among the failures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import Dataset

from scripts.datalist import load_datalist
from scripts.loading import SUPPORTED_SUFFIXES, CXRInputError

__all__ = ["FailSafeDataset", "find_images"]

logger = logging.getLogger(__name__)


def find_images(
    folder: str | Path, datalist: str | Path | None = None, split: str = "test", recursive: bool = True
) -> list[dict[str, str]]:
    """List the radiographs to run on, as ``[{"image": path}, ...]``.

    Args:
        folder: every DICOM, PNG/JPEG/TIFF and NIfTI file under it is listed (sorted), unless ``datalist`` is set.
        datalist: optional datalist JSON; if given, the images of its ``split`` are listed instead of ``folder``.
        split: datalist split to use with ``datalist``.
        recursive: also search sub-folders of ``folder``.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no supported file.
    """
    if datalist:
        return [{"image": item["image"]} for item in load_datalist(datalist, split, check_files=False)]
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: input folder not found.")
    suffixes = tuple(s for group in SUPPORTED_SUFFIXES.values() for s in group)
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(p for p in candidates if p.is_file() and p.name.lower().endswith(suffixes))
    if not files:
        raise FileNotFoundError(f"{folder}: no image files ({', '.join(suffixes)}) found.")
    return [{"image": str(path)} for path in files]


def _root_message(error: BaseException) -> str:
    """Peel MONAI's ``RuntimeError("applying transform ...")`` wrappers off ``error`` and describe the cause."""
    while isinstance(error, RuntimeError) and str(error).startswith("applying transform") and error.__cause__:
        error = error.__cause__
    return str(error) if isinstance(error, CXRInputError) else f"{type(error).__name__}: {error}"


class FailSafeDataset(Dataset):
    """``monai.data.Dataset`` that turns a failing item into a placeholder instead of raising.

    A failed item is ``{"image": zeros(1, 32, 32), "image_path": <path>, "error": <message>}``; good items get
    ``"error": ""``. Use it with ``batch_size=1`` so that placeholders never meet real images in one batch.

    Args:
        data: items with an ``"image"`` path.
        transform: preprocessing applied to each item.
    """

    def __init__(self, data: Sequence[dict[str, Any]], transform: Callable | None = None) -> None:
        super().__init__(data=data, transform=transform)

    def _transform(self, index: int) -> dict[str, Any]:
        source = self.data[index]
        try:
            item = dict(super()._transform(index))
        except Exception as error:  # any failure of one file must not stop the others
            message = _root_message(error)
            logger.warning("skipping %s: %s", source["image"], message)
            return {"image": torch.zeros(1, 32, 32), "image_path": str(source["image"]), "error": message}
        item.setdefault("image_path", str(source["image"]))
        item["error"] = ""
        return item
