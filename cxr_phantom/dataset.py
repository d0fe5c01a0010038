"""A whole phantom data set: the per-image plan (split, subset, fracture count, file format), rendering in worker
processes, and the files (images, ``datalist.json``, ``README.txt``)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cxr_phantom.rendering import render_phantom
from cxr_phantom.spec import (
    CLASSES,
    DATASET_NAME,
    GENERATOR_VERSION,
    IMAGE_FORMATS,
    MAX_FRACTURES,
    MAX_PIXEL_VALUE,
    ImagePlan,
    PhantomImage,
    check_size,
    check_unit,
    check_zoom,
)
from cxr_phantom.writers import write_dicom, write_png

_PNG_SHARE = 1.0 / 3.0  # share of PNG files when image_format="mixed"
_MONOCHROME1_SHARE = 0.3
_PLAN_STREAM = 0x504C414E  # extra seed word that separates the dataset plan from the per-image streams
_DETECTOR_HEIGHT_MM = 0.14 * 2048  # pixel spacing = this / (size * zoom)


def _round_half_up(value: float) -> int:
    """Round to the nearest integer, halves upwards (Python's round() rounds halves to even)."""
    return int(np.floor(value + 0.5))


def plan_dataset(
    num_images: int,
    seed: int = 0,
    prevalence: float = 0.3,
    r_fraction: float = 0.1,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    image_format: str = "mixed",
) -> list[ImagePlan]:
    """Decide split, subset, fracture count and file format of every image, deterministically from ``seed``.

    Counts are exact rather than drawn: ``round(num_images * val_fraction)`` validation and
    ``round(num_images * test_fraction)`` test images (chosen at random); in each split ``round(n * prevalence)``
    images are positive (1 to MAX_FRACTURES fractures); of the training positives ``round(n * r_fraction)``, but at
    least one when ``r_fraction > 0``, form subset "R" (boxes kept), the others "P" (image labels only); training
    negatives are "N". With ``image_format="mixed"`` about a third of the images are PNG, the rest DICOM; about
    30 % of the DICOM files are MONOCHROME1 and half use a rescale intercept of -1024.

    Returns:
        one :class:`ImagePlan` per image, in index order.
    """
    _check_dataset_args(num_images, prevalence, r_fraction, val_fraction, test_fraction, image_format)
    rng = np.random.default_rng([seed, num_images, _PLAN_STREAM])
    order = rng.permutation(num_images)
    num_val = min(_round_half_up(num_images * val_fraction), num_images)
    num_test = min(_round_half_up(num_images * test_fraction), num_images - num_val)
    split = np.full(num_images, "training", dtype=object)
    split[order[:num_val]] = "validation"
    split[order[num_val : num_val + num_test]] = "test"
    positive = np.zeros(num_images, dtype=bool)
    for name in ("training", "validation", "test"):
        members = np.flatnonzero(split == name)
        positive[rng.permutation(members)[: _round_half_up(len(members) * prevalence)]] = True
    train_pos = np.flatnonzero((split == "training") & positive)
    num_r = max(1, _round_half_up(len(train_pos) * r_fraction)) if len(train_pos) and r_fraction > 0 else 0
    in_r = np.isin(np.arange(num_images), rng.permutation(train_pos)[:num_r])
    fractures = rng.integers(1, MAX_FRACTURES + 1, size=num_images) * positive
    png = rng.random(num_images) < {"dicom": 0.0, "png": 1.0, "mixed": _PNG_SHARE}[image_format]
    mono1 = rng.random(num_images) < _MONOCHROME1_SHARE
    shifted = rng.random(num_images) < 0.5
    plans = []
    for i in range(num_images):
        subset = None
        if split[i] == "training":
            subset = ("R" if in_r[i] else "P") if positive[i] else "N"
        plans.append(
            ImagePlan(
                index=i,
                split=str(split[i]),
                subset=subset,
                num_fractures=int(fractures[i]),
                image_format="png" if png[i] else "dicom",
                photometric="MONOCHROME1" if mono1[i] else "MONOCHROME2",
                rescale_intercept=-1024 if shifted[i] else 0,
            )
        )
    return plans


def _datalist_entry(plan: ImagePlan, relative_path: str, image: PhantomImage) -> dict:
    """Datalist item of one image: image-level labels always, boxes except for training subset "P"."""
    entry: dict = {"image": relative_path}
    if plan.subset is not None:
        entry["subset"] = plan.subset
    entry["labels"] = {name: int(name in image.box_classes) for name in CLASSES}
    if plan.subset != "P":
        entry["boxes"] = [[round(float(c), 1) for c in box] for box in image.boxes]
        entry["box_classes"] = list(image.box_classes)
        entry["fracture_types"] = list(image.fracture_types)
    return entry


def _make_image(task: tuple[ImagePlan, Path, int, int, float, float, str]) -> dict:
    """Render and write one image of a dataset; returns its datalist item (runs in worker processes)."""
    plan, out_dir, seed, size, difficulty, zoom, uid_key = task
    image = render_phantom(np.random.default_rng([seed, plan.index]), size, difficulty, plan.num_fractures, zoom)
    stem = f"images/cxr_{plan.index:05d}"
    if plan.image_format == "dicom":
        relative_path = stem + ".dcm"
        write_dicom(
            out_dir / relative_path,
            image.pixels,
            uid_key=f"{uid_key}:{plan.index}",
            patient_index=plan.index,
            photometric=plan.photometric,
            rescale_intercept=plan.rescale_intercept,
            pixel_spacing_mm=_DETECTOR_HEIGHT_MM / (size * zoom),
        )
    else:
        relative_path = stem + ".png"
        write_png(out_dir / relative_path, image.pixels)
    return _datalist_entry(plan, relative_path, image)


def _collect(results: Iterable[dict], num_images: int, progress: bool) -> list[dict]:
    """Gather datalist items in order, printing progress (count and images/s) about every 10 % if asked."""
    entries: list[dict] = []
    start, every = time.perf_counter(), max(1, num_images // 10)
    for entry in results:
        entries.append(entry)
        if progress and (len(entries) % every == 0 or len(entries) == num_images):
            rate = len(entries) / max(time.perf_counter() - start, 1e-9)
            print(f"[phantom] {len(entries)}/{num_images} images ({rate:.1f} images/s)", flush=True)
    return entries


def _readme(generator: dict) -> str:
    """Text of the README.txt written next to the datalist."""
    params = "\n".join(f"  {key}: {value}" for key, value in generator.items())
    return f"""Synthetic CXR fracture phantom ({DATASET_NAME}, generator version {GENERATOR_VERSION})

These images are SYNTHETIC. They were rendered procedurally by the cxr_phantom package and contain no patient
data: every image is a computer-generated posterior-anterior chest radiograph with ribs, clavicles, lungs, heart,
spine, support devices and, in positive images, rib and clavicle fractures (displaced, non-displaced, healing).
The data is dedicated to the public domain (CC0 1.0): free to use, share and modify for any purpose.

Files
  datalist.json  MONAI-style datalist: "training" (subsets R = fractures with boxes, P = positive with image-level
                 labels only, N = negative), "validation" and "test" (with boxes). Paths are relative to this folder.
  images/*.dcm   DICOM DX (for presentation), 12 bits stored; MONOCHROME1 files store {MAX_PIXEL_VALUE} - value;
                 rescaled value = RescaleSlope * stored + RescaleIntercept.
  images/*.png   16-bit greyscale PNG holding the 12-bit values 0..{MAX_PIXEL_VALUE} unscaled (MONOCHROME2 sense).

Boxes are [x1, y1, x2, y2] in pixels of the stored image, x = column, y = row; pixel column k spans [k, k + 1),
so x2 and y2 are exclusive edges. Classes: {", ".join(CLASSES)}.

Generator parameters
{params}
"""


def generate_dataset(
    out_dir: str | Path,
    num_images: int,
    size: int = 512,
    seed: int = 0,
    prevalence: float = 0.3,
    r_fraction: float = 0.1,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    difficulty: float = 0.5,
    image_format: str = "mixed",
    workers: int = 1,
    progress: bool = True,
    zoom: float = 1.0,
) -> Path:
    """Render a synthetic CXR fracture dataset: image files, ``datalist.json`` and ``README.txt`` in ``out_dir``.

    Image ``i`` is rendered from ``np.random.default_rng([seed, i])`` and the dataset plan (see
    :func:`plan_dataset`) from ``seed``, so the same arguments give byte-identical files whatever ``workers`` is.

    Args:
        out_dir: output folder; images go to ``out_dir/images``.
        num_images: number of images (>= 1).
        size: image height in pixels (>= MIN_SIZE); widths vary in ``[0.85, 1] * size``.
        seed: dataset seed.
        prevalence: fraction of images with at least one fracture, in every split.
        r_fraction: fraction of training positives that keep their boxes (subset "R").
        val_fraction: fraction of images in the validation split.
        test_fraction: fraction of images in the test split.
        difficulty: fracture difficulty in [0, 1] (0 = obvious, 1 = nearly invisible).
        image_format: ``"dicom"``, ``"png"`` or ``"mixed"`` (about 2/3 DICOM, 1/3 PNG).
        workers: number of processes (1 = render in this process).
        progress: print progress about every 10 % of the images.
        zoom: magnification (>= 1), see :func:`cxr_phantom.sampling.sample_phantom`; 1 is the whole chest.

    Returns:
        path of the datalist JSON.
    """
    check_size(size)
    check_unit("difficulty", difficulty)
    check_zoom(zoom)
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers}.")
    plans = plan_dataset(num_images, seed, prevalence, r_fraction, val_fraction, test_fraction, image_format)
    generator = {
        "seed": seed,
        "num_images": num_images,
        "size": size,
        "difficulty": difficulty,
        "prevalence": prevalence,
        "r_fraction": r_fraction,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "image_format": image_format,
        **({"zoom": zoom} if zoom != 1.0 else {}),  # absent at 1, so files made before the option stay identical
        "pixel_range": [0, MAX_PIXEL_VALUE],
        "version": GENERATOR_VERSION,
    }
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    uid_key = json.dumps(generator, sort_keys=True)
    tasks = [(plan, out_dir, seed, size, difficulty, zoom, uid_key) for plan in plans]
    if workers > 1:
        with ProcessPoolExecutor(workers) as executor:
            entries = _collect(executor.map(_make_image, tasks, chunksize=4), num_images, progress)
    else:
        entries = _collect(map(_make_image, tasks), num_images, progress)
    datalist: dict = {"name": DATASET_NAME, "classes": list(CLASSES), "generator": generator}
    for split in ("training", "validation", "test"):
        datalist[split] = [entry for plan, entry in zip(plans, entries, strict=True) if plan.split == split]
    path = out_dir / "datalist.json"
    path.write_text(json.dumps(datalist, indent=2) + "\n")
    (out_dir / "README.txt").write_text(_readme(generator))
    return path


def _check_dataset_args(
    num_images: int,
    prevalence: float,
    r_fraction: float,
    val_fraction: float,
    test_fraction: float,
    image_format: str,
) -> None:
    """Raise ValueError for an invalid dataset plan."""
    if int(num_images) != num_images or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images}.")
    for name, value in (
        ("prevalence", prevalence),
        ("r_fraction", r_fraction),
        ("val_fraction", val_fraction),
        ("test_fraction", test_fraction),
    ):
        check_unit(name, value)
    if val_fraction + test_fraction > 1.0:
        raise ValueError(f"val_fraction + test_fraction must be <= 1, got {val_fraction} + {test_fraction}.")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}.")
