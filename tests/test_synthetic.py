"""Tests of the synthetic CXR fracture phantom (``cxr_phantom``) and its command-line tool."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from cxr_phantom import (
    CLASSES,
    FRACTURE_TYPES,
    MAX_PIXEL_VALUE,
    fracture_magnitudes,
    generate_dataset,
    plan_dataset,
    render_phantom,
    render_spec,
    sample_phantom,
    write_dicom,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET_ARGS = {"num_images": 14, "size": 64, "prevalence": 0.5, "r_fraction": 0.2, "difficulty": 0.3}


def _tree(folder: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Stored pixels of an image file and the same pixels in MONOCHROME2 sense."""
    if path.suffix == ".png":
        stored = np.asarray(Image.open(path))
        return stored, stored
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array
    return stored, (MAX_PIXEL_VALUE - stored) if ds.PhotometricInterpretation == "MONOCHROME1" else stored


def _mean_change_in_boxes(seed: int, size: int, difficulty: float) -> float:
    """Mean |with - without fractures| inside the fracture boxes of one image with three fractures."""
    spec = sample_phantom(np.random.default_rng([seed, 0]), size, difficulty, 3)
    with_fx, without = render_spec(spec), render_spec(spec, draw_fractures=False)
    diff = np.abs(with_fx.pixels.astype(float) - without.pixels)
    return float(
        np.mean(
            [diff[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))].mean() for x1, y1, x2, y2 in with_fx.boxes]
        )
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same small dataset twice (1 and 2 workers) and once with another seed."""
    root = tmp_path_factory.mktemp("phantom")
    return {
        "a": generate_dataset(root / "a", seed=0, workers=1, progress=False, **DATASET_ARGS),
        "b": generate_dataset(root / "b", seed=0, workers=2, progress=False, **DATASET_ARGS),
        "c": generate_dataset(root / "c", seed=1, workers=1, progress=False, **DATASET_ARGS),
    }


def test_render_shape_range_and_annotations() -> None:
    image = render_phantom(np.random.default_rng(0), size=96, difficulty=0.5, num_fractures=3)
    rows, cols = image.pixels.shape
    assert image.pixels.dtype == np.uint16 and rows == 96 and 0.85 * 96 - 1 <= cols <= 96
    assert image.pixels.max() <= MAX_PIXEL_VALUE and image.pixels.std() > 100
    assert image.boxes.shape == (3, 4)
    assert len(image.box_classes) == len(image.fracture_types) == 3
    assert set(image.box_classes) <= set(CLASSES) and set(image.fracture_types) <= set(FRACTURE_TYPES)


def test_zoom_magnifies_the_anatomy_and_leaves_the_default_unchanged() -> None:
    rng = np.random.default_rng
    whole, zoomed = sample_phantom(rng(7), 128, 0.3, 2), sample_phantom(rng(7), 128, 0.3, 2, zoom=2.0)
    assert zoomed.frame.scale == pytest.approx(2.0 * whole.frame.scale)
    assert zoomed.anatomy == whole.anatomy and zoomed.frame.cols == whole.frame.cols  # only the view changes
    assert np.array_equal(render_phantom(rng(7), 128, 0.3, 2).pixels, render_phantom(rng(7), 128, 0.3, 2, 1.0).pixels)
    big = render_phantom(rng(7), 128, 0.3, 2, zoom=2.0)
    small = render_phantom(rng(7), 128, 0.3, 2)
    box_area = lambda image: np.prod(image.boxes[:, 2:] - image.boxes[:, :2], axis=1).mean()  # noqa: E731
    assert box_area(big) > 2.0 * box_area(small)  # fracture boxes grow with the magnification


def test_render_deterministic() -> None:
    first = render_phantom(np.random.default_rng([5, 1]), 80, 0.5, 2)
    again = render_phantom(np.random.default_rng([5, 1]), 80, 0.5, 2)
    other = render_phantom(np.random.default_rng([5, 2]), 80, 0.5, 2)
    np.testing.assert_array_equal(first.pixels, again.pixels)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    assert first.pixels.shape != other.pixels.shape or not np.array_equal(first.pixels, other.pixels)


def test_dataset_byte_identical_for_same_seed(datasets: dict[str, Path]) -> None:
    first, second = _tree(datasets["a"].parent), _tree(datasets["b"].parent)
    assert first.keys() == second.keys()
    assert all(first[name] == second[name] for name in first), "same seed must give byte-identical files"


#: SHA-256 over the files of ``datasets["a"]`` (relative path and content digest of each, README.txt left out: it
#: names the generator's location). Recorded with bundle/scripts/synthetic.py before it became the cxr_phantom
#: package, so the package writes the same bytes. A deliberate change of the output updates it and
#: GENERATOR_VERSION together.
GOLDEN_DIGEST = "1d9810479b3a465f65ba81cbb8c1b7551cdd0e8cb44166d8cb32a870aeb789c0"


def test_dataset_bytes_unchanged_since_recorded(datasets: dict[str, Path]) -> None:
    digest = hashlib.sha256()
    for name, content in _tree(datasets["a"].parent).items():
        if name != "README.txt":
            digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    assert digest.hexdigest() == GOLDEN_DIGEST, "the generator's output changed: same seed, different files"


def test_dataset_differs_for_other_seed(datasets: dict[str, Path]) -> None:
    first, other = _tree(datasets["a"].parent), _tree(datasets["c"].parent)
    assert first["datalist.json"] != other["datalist.json"]
    shared = [name for name in first.keys() & other.keys() if name.startswith("images/")]
    assert shared and all(first[name] != other[name] for name in shared)


def test_datalist_well_formed(datasets: dict[str, Path]) -> None:
    path = datasets["a"]
    datalist = json.loads(path.read_text())
    assert datalist["classes"] == list(CLASSES)
    assert datalist["generator"]["seed"] == 0 and datalist["generator"]["size"] == 64
    items = {split: datalist[split] for split in ("training", "validation", "test")}
    assert sum(len(v) for v in items.values()) == DATASET_ARGS["num_images"]
    assert len(items["validation"]) == len(items["test"]) == 2
    subsets = [item["subset"] for item in items["training"]]
    assert set(subsets) <= {"R", "P", "N"} and subsets.count("R") >= 1 and subsets.count("N") >= 1
    for split, entries in items.items():
        for item in entries:
            assert ("subset" in item) == (split == "training")
            positive = any(item["labels"].values())
            assert set(item["labels"]) == set(CLASSES)
            if item.get("subset") in ("R", "P"):
                assert positive
            if item.get("subset") == "N":
                assert not positive
            if item.get("subset") == "P":
                assert "boxes" not in item and "box_classes" not in item
                continue
            rows, cols = _decode(path.parent / item["image"])[0].shape
            assert len(item["boxes"]) == len(item["box_classes"]) == len(item["fracture_types"])
            assert bool(item["boxes"]) == positive
            for x1, y1, x2, y2 in item["boxes"]:
                assert 0 <= x1 < x2 <= cols and 0 <= y1 < y2 <= rows
            assert set(item["box_classes"]) <= set(CLASSES)
            assert item["labels"] == {name: int(name in item["box_classes"]) for name in CLASSES}


def test_files_match_rerender_and_monochrome1_is_inverted(datasets: dict[str, Path]) -> None:
    path = datasets["a"]
    plans = plan_dataset(DATASET_ARGS["num_images"], 0, **{k: DATASET_ARGS[k] for k in ("prevalence", "r_fraction")})
    assert any(p.image_format == "png" for p in plans)
    assert any(p.image_format == "dicom" and p.photometric == "MONOCHROME1" for p in plans)
    for plan in plans:
        expected = render_phantom(
            np.random.default_rng([0, plan.index]), DATASET_ARGS["size"], DATASET_ARGS["difficulty"], plan.num_fractures
        ).pixels
        suffix = ".png" if plan.image_format == "png" else ".dcm"
        stored, displayed = _decode(path.parent / f"images/cxr_{plan.index:05d}{suffix}")
        np.testing.assert_array_equal(displayed, expected)
        if plan.image_format == "dicom" and plan.photometric == "MONOCHROME1":
            np.testing.assert_array_equal(stored, MAX_PIXEL_VALUE - expected)


def test_dicom_header(tmp_path: Path) -> None:
    pixels = render_phantom(np.random.default_rng(3), 64).pixels
    write_dicom(tmp_path / "x.dcm", pixels, "key", 7, "MONOCHROME1", rescale_intercept=-1024, pixel_spacing_mm=4.48)
    ds = pydicom.dcmread(tmp_path / "x.dcm")
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1" and ds.Modality == "DX" and ds.ViewPosition == "PA"
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
    assert str(ds.PatientName) == "PHANTOM^7" and float(ds.RescaleIntercept) == -1024
    assert (ds.Rows, ds.Columns) == pixels.shape and [float(v) for v in ds.PixelSpacing] == [4.48, 4.48]


def test_fracture_changes_pixels_inside_its_box() -> None:
    spec = sample_phantom(np.random.default_rng(11), 128, difficulty=0.0, num_fractures=3)
    with_fx, without = render_spec(spec), render_spec(spec, draw_fractures=False)
    assert without.boxes.shape == (0, 4) and without.box_classes == []
    diff = np.abs(with_fx.pixels.astype(float) - without.pixels)
    inside = np.zeros(diff.shape, dtype=bool)
    for x1, y1, x2, y2 in with_fx.boxes:
        box = (slice(int(y1), int(np.ceil(y2))), slice(int(x1), int(np.ceil(x2))))
        assert diff[box].mean() > 20, "a fracture at difficulty 0 must visibly change its box"
        inside[box] = True
    assert diff[inside].sum() > 0.5 * diff.sum(), "most of the change must lie inside the boxes"


def test_difficulty_is_monotone() -> None:
    changes = [np.mean([_mean_change_in_boxes(seed, 96, d) for seed in range(3)]) for d in (0.0, 0.5, 1.0)]
    assert changes[0] > changes[1] > changes[2] > 0
    gaps = [fracture_magnitudes(d)["gap"] for d in (0.0, 0.5, 1.0)]
    assert gaps[0] > gaps[1] > gaps[2]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 32},
        {"prevalence": 1.5},
        {"r_fraction": -0.1},
        {"val_fraction": 0.6, "test_fraction": 0.5},
        {"difficulty": 2.0},
        {"image_format": "jpeg"},
        {"num_images": 0},
        {"workers": 0},
        {"zoom": 0.5},
    ],
)
def test_invalid_parameters(tmp_path: Path, kwargs: dict) -> None:
    args = {"num_images": 2, "size": 64, "progress": False} | kwargs
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, **args)


def test_plan_counts() -> None:
    plans = plan_dataset(100, seed=4, prevalence=0.3, r_fraction=0.1)
    splits = [p.split for p in plans]
    assert (splits.count("validation"), splits.count("test"), splits.count("training")) == (15, 15, 70)
    subsets = [p.subset for p in plans if p.split == "training"]
    assert (subsets.count("R"), subsets.count("P"), subsets.count("N")) == (2, 19, 49)
    assert all((p.num_fractures > 0) == (p.subset in ("R", "P")) for p in plans if p.split == "training")
    assert [p.subset for p in plan_dataset(20, r_fraction=0.01)].count("R") == 1
    assert {p.image_format for p in plan_dataset(10, image_format="png")} == {"png"}


def test_command_line_tool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("generate_phantoms", REPO_ROOT / "scripts" / "generate_phantoms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--out", str(tmp_path), "--num-images", "4", "--size", "64", "--format", "png", "--prevalence", "0.5"]
    assert module.main(argv) == 0
    out = capsys.readouterr().out
    assert "datalist:" in out and "training/R: 1" in out and "4/4 images" in out
    assert len(list((tmp_path / "images").glob("*.png"))) == 4
    assert module.main(["--out", str(tmp_path), "--num-images", "2", "--size", "16"]) == 2
