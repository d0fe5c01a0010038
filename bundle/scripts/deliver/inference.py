"""Inference over a folder of radiographs that keeps going past files it cannot read, and accounts for every path.

A hospital export holds the odd truncated DICOM, a secondary capture without pixels, a stray report, a folder
named like an image or a broken link. :func:`list_inputs` lists every path under the input folder: the files to
run on (each with a unique output name that keeps its relative folder) and the paths skipped with the reason.
MONAI's ``Dataset`` would stop the whole run at the first unreadable file; :class:`FailSafeDataset` instead
returns a small placeholder marked with the error, and :class:`scripts.deliver.writers.DetectionWriter` lists it, and
every skipped path, in ``summary.json``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.data import Dataset

from scripts.data.datalist import load_datalist
from scripts.data.loading import SUPPORTED_SUFFIXES, CXRInputError, image_format

__all__ = ["FailSafeDataset", "InputListing", "find_images", "list_inputs", "output_names", "strip_image_suffix"]

logger = logging.getLogger(__name__)

#: Output names the run writes itself; an input that would map onto one keeps its full file name instead.
RESERVED_NAMES = ("summary",)
_SUFFIXES = sorted((s for group in SUPPORTED_SUFFIXES.values() for s in group), key=len, reverse=True)


@dataclass
class InputListing:
    """What :func:`list_inputs` found.

    Attributes:
        images: items to run on, ``{"image": path, "output_name": relative name without ending}``.
        skipped: every other path, ``{"image": path, "status": "skipped" | "existing", "reason": text}``.
    """

    images: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def strip_image_suffix(name: str) -> str:
    """``name`` without its image file ending (longest first, so ``.nii.gz`` goes whole); unchanged if none."""
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def output_names(paths: Sequence[Path], root: Path) -> list[str]:
    """Unique result names (relative, POSIX, without ending) for ``paths`` under ``root``.

    The relative folder is kept (``a/x.png`` -> ``a/x``, ``b/x.png`` -> ``b/x``), so inputs with the same file
    name in different folders never overwrite each other's results. Inputs in one folder whose names differ only
    in the ending (``x.png``, ``x.dcm``), or that would map onto a name the run writes itself (``summary``), keep
    their full file name (``x.png``, ``x.dcm``), so results are written as ``x.png.json``.
    """
    relative = [Path(os.path.relpath(path, root)) for path in paths]
    for rel in relative:
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"{root / rel}: not under the input folder {root}.")
    stems = [(rel.parent / strip_image_suffix(rel.name)).as_posix() for rel in relative]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1  # case-insensitive: safe on macOS/Windows disks
    return [
        rel.as_posix() if counts[stem.lower()] > 1 or stem.lower() in RESERVED_NAMES else stem
        for rel, stem in zip(relative, stems, strict=True)
    ]


def _classify(path: Path, recursive: bool) -> tuple[bool, str]:
    """Whether ``path`` is an image to run on, or why it is skipped."""
    if path.is_symlink() and not path.exists():
        return False, f"broken symbolic link (its target {os.readlink(path)} does not exist)"
    if path.is_dir():
        if path.is_symlink():
            return False, "symbolic link to a folder: not followed"
        if path.name.lower().endswith(tuple(_SUFFIXES)):
            return False, "a folder with an image file name, not an image file (its contents are listed separately)"
        return False, "a sub-folder, not searched (recursive is off)"
    if not path.is_file():
        return False, "not a regular file (device, socket or pipe)"
    try:
        image_format(path)
    except CXRInputError:
        return False, f"not an image file this bundle reads (expected {', '.join(sorted(_SUFFIXES))} or DICOM)"
    return True, ""


def _walk(folder: Path, recursive: bool, exclude: Path | None = None) -> list[Path]:
    """Every path under ``folder`` except the folders that are only containers (sorted).

    ``exclude`` (the run's output folder, when it lies inside ``folder``) is listed but not searched.
    """
    found: list[Path] = []
    for directory, subdirs, files in os.walk(folder, followlinks=False):
        base = Path(directory)
        for name in list(subdirs):
            sub = base / name
            if exclude is not None and sub.resolve() == exclude:
                subdirs.remove(name)  # os.walk does not descend into names removed here
                found.append(sub)
            elif sub.is_symlink() or not recursive or name.lower().endswith(tuple(_SUFFIXES)):
                found.append(sub)  # reported as skipped; plain sub-folders are only containers
        found.extend(base / name for name in files)
        if not recursive:
            break
    return sorted(found)


def _truthy(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")


def list_inputs(
    folder: str | Path,
    datalist: str | Path | None = None,
    split: str = "test",
    recursive: bool = True,
    output_dir: str | Path | None = None,
    skip_existing: bool | str = False,
) -> InputListing:
    """List every path under ``folder`` (or the images of a datalist split): what to run on and what is skipped.

    Args:
        folder: every path under it is listed: DICOM (by ending or magic number), PNG/JPEG/TIFF and NIfTI files
            are run on; folders named like images, broken links and other files are skipped with a reason.
        datalist: optional datalist JSON; if given, the images of its ``split`` are listed instead of ``folder``.
        split: datalist split to use with ``datalist``.
        recursive: also search sub-folders of ``folder``.
        output_dir: where results go; needed for ``skip_existing``.
        skip_existing: leave out images whose result JSON is already in ``output_dir`` (an interrupted run goes on
            where it stopped); they are listed with status ``"existing"``. ``"true"``/``"false"`` strings work too.

    Raises:
        FileNotFoundError: ``folder`` does not exist or holds no file to run on.
    """
    listing = InputListing()
    if datalist:
        paths = [Path(item["image"]) for item in load_datalist(datalist, split, check_files=False)]
        root = Path(os.path.commonpath([str(p.parent.absolute()) for p in paths]))
        paths = [p.absolute() for p in paths]
    else:
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: input folder not found.")
        paths = []
        results = Path(output_dir).resolve() if output_dir is not None else None
        for path in _walk(root, recursive, exclude=results):
            if results is not None and path.resolve() == results:  # earlier results must not become inputs
                reason = "the output folder of this run: not searched"
                listing.skipped.append({"image": str(path), "status": "skipped", "reason": reason})
                continue
            usable, reason = _classify(path, recursive)
            if usable:
                paths.append(path)
            else:
                listing.skipped.append({"image": str(path), "status": "skipped", "reason": reason})
    if not paths:
        raise FileNotFoundError(f"{root}: no image files ({', '.join(sorted(_SUFFIXES))} or DICOM) found.")
    existing = Path(output_dir) if output_dir is not None and _truthy(skip_existing) else None
    for path, name in zip(paths, output_names(paths, root), strict=True):
        if existing is not None and (existing / f"{name}.json").is_file():
            reason = f"result {name}.json exists (skip_existing)"
            listing.skipped.append({"image": str(path), "status": "existing", "reason": reason})
        else:
            listing.images.append({"image": str(path), "output_name": name})
    return listing


def find_images(
    folder: str | Path, datalist: str | Path | None = None, split: str = "test", recursive: bool = True
) -> list[dict[str, str]]:
    """The images to run on, ``[{"image": path, "output_name": name}, ...]``: :func:`list_inputs` ``.images``."""
    return list_inputs(folder, datalist, split, recursive).images


def _root_message(error: BaseException) -> str:
    """Peel MONAI's ``RuntimeError("applying transform ...")`` wrappers off ``error`` and describe the cause."""
    while isinstance(error, RuntimeError) and str(error).startswith("applying transform") and error.__cause__:
        error = error.__cause__
    return str(error) if isinstance(error, CXRInputError) else f"{type(error).__name__}: {error}"


class FailSafeDataset(Dataset):
    """``monai.data.Dataset`` that turns a failing item into a placeholder instead of raising.

    A failed item is ``{"image": zeros(1, 32, 32), "image_path": <path>, "error": <message>, "output_name": ...}``;
    good items get ``"error": ""``. Use it with ``batch_size=1`` so that placeholders never meet real images in one
    batch.

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
            logger.warning("refused %s: %s", source["image"], message)
            placeholder = {"image": torch.zeros(1, 32, 32), "image_path": str(source["image"]), "error": message}
            return {**placeholder, "output_name": str(source.get("output_name", ""))}
        item.setdefault("image_path", str(source["image"]))
        item["error"] = ""
        return item
