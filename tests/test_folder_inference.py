"""Folder inference on a folder that mixes good images with every kind of bad input, all built in code.

Every path under the input folder must appear in ``summary.json`` (processed, refused or skipped, with a reason),
every good file gets its own result (unique names, relative folders kept, nothing outside the output folder), no
file without usable content gets a result that could read as a normal negative, and a rerun with
``--skip_existing true`` processes only what is missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_runs import LIGHT, run_bundle
from helpers import write_dicom, write_png
from PIL import Image

from scripts.deliver.inference import list_inputs, output_names
from scripts.deliver.writers import DetectionWriter
from scripts.model.network import FractureHeatmapNet

CHEST = {"Modality": "CR", "BodyPartExamined": "CHEST", "ViewPosition": "PA"}


def _radiograph(rows: int = 120, cols: int = 100, seed: int = 0) -> np.ndarray:
    r, c = np.meshgrid(np.linspace(0, 1, rows), np.linspace(0, 1, cols), indexing="ij")
    noise = np.random.default_rng(seed).integers(0, 200, (rows, cols))
    return (1500 + 1200 * np.sin(5 * r) * np.cos(3 * c) + noise).astype(np.uint16)


def _light_model(path: Path) -> Path:
    values = dict(zip(LIGHT[::2], LIGHT[1::2], strict=True))
    network = FractureHeatmapNet(
        num_classes=2,
        block="basic",
        layers=json.loads(values["--network_def#layers"]),
        widths=json.loads(values["--network_def#widths"]),
        fpn_channels=int(values["--network_def#fpn_channels"]),
    )
    torch.save(network.state_dict(), path)
    return path


def _mixed_folder(root: Path) -> dict[str, str]:
    """Write the mixed folder; return the expected status of each path (relative, POSIX)."""
    grey8 = (_radiograph() // 16).astype(np.uint8)
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    write_png(root / "a" / "x.png", grey8)
    write_png(root / "b" / "x.png", grey8[::-1].copy())
    write_png(root / "same.png", grey8)
    write_dicom(root / "same.dcm", _radiograph(seed=1), **CHEST)
    write_png(root / "summary.png", grey8)
    write_dicom(root / "untagged.dcm", _radiograph(seed=2), Modality="")
    Image.fromarray(grey8, "L").convert("CMYK").save(root / "cmyk.jpg", quality=95)
    write_dicom(root / "IM0001", _radiograph(seed=3), **CHEST)  # DICOM without a file name ending
    expected = {name: "processed" for name in ["a/x.png", "b/x.png", "same.png", "same.dcm", "summary.png"]}
    expected.update({"untagged.dcm": "processed", "cmyk.jpg": "processed", "IM0001": "processed"})
    # refused: image files that cannot be scored
    write_dicom(root / "flat.dcm", np.full((120, 100), 900, np.uint16), **CHEST)
    write_png(root / "black.png", np.zeros((120, 100), np.uint8))
    write_png(root / "strip.png", (np.arange(8 * 400).reshape(8, 400) % 251).astype(np.uint8))
    write_dicom(root / "ct.dcm", _radiograph(seed=4), **{**CHEST, "Modality": "CT"})
    write_dicom(root / "leg.dcm", _radiograph(seed=5), **{**CHEST, "BodyPartExamined": "EXTREMITY"})
    import nibabel as nib

    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((100, 120, 3)).astype(np.float32), np.eye(4)), root / "v.nii.gz"
    )
    (root / "corrupt.dcm").write_bytes(b"\x00" * 300)
    for name in ["flat.dcm", "black.png", "strip.png", "ct.dcm", "leg.dcm", "v.nii.gz", "corrupt.dcm"]:
        expected[name] = "refused"
    # skipped: paths that are not image files
    (root / "dir.png").mkdir()
    os.symlink(root / "gone.png", root / "dangling.png")
    (root / "notes.txt").write_text("report")
    for name in ["dir.png", "dangling.png", "notes.txt"]:
        expected[name] = "skipped"
    return expected


def test_output_names_are_unique_keep_folders_and_avoid_the_summary(tmp_path):
    paths = [tmp_path / p for p in ["a/x.png", "b/x.png", "x.png", "x.dcm", "summary.png", "s.nii.gz", "Y.PNG"]]
    names = output_names(paths, tmp_path)
    assert names == ["a/x", "b/x", "x.png", "x.dcm", "summary.png", "s", "Y"]
    with pytest.raises(ValueError, match="not under the input folder"):
        output_names([tmp_path.parent / "outside.png"], tmp_path)


def test_listing_accounts_for_every_path(tmp_path):
    expected = _mixed_folder(tmp_path / "in")
    listing = list_inputs(tmp_path / "in")
    listed = {os.path.relpath(e["image"], tmp_path / "in") for e in listing.images + listing.skipped}
    assert listed == set(expected)
    # results written inside the input folder are never read back as inputs
    (tmp_path / "in" / "results").mkdir()
    write_png(tmp_path / "in" / "results" / "x_overlay.png", (_radiograph() // 16).astype(np.uint8))
    inside = list_inputs(tmp_path / "in", output_dir=tmp_path / "in" / "results")
    assert len(inside.images) == len(listing.images)
    assert any(e["image"].endswith("results") and "output folder" in e["reason"] for e in inside.skipped)
    reasons = {Path(e["image"]).name: e["reason"] for e in listing.skipped}
    assert "folder with an image file name" in reasons["dir.png"]
    assert "broken symbolic link" in reasons["dangling.png"]
    assert "not an image file" in reasons["notes.txt"]


@pytest.mark.slow
def test_folder_inference_accounts_for_every_path_and_reruns_only_what_is_missing(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    expected = _mixed_folder(inputs)
    model = _light_model(tmp_path / "model.pt")
    common = ["--dataset_dir", str(inputs), "--output_dir", str(out), "--ckpt_path", str(model), "--score_floor", "0.0"]
    output = run_bundle("inference", ["inference.json"], *common, status=2)  # 2: some inputs were refused
    assert "images (100 %)" in output and "\r" not in output  # progress as plain lines: not a terminal
    assert "7 file(s) refused" in output and "3 path(s) skipped" in output and "flat.dcm" in output  # the log
    summary = json.loads((out / "summary.json").read_text())
    statuses = {os.path.relpath(e["image"], inputs): e["status"] for e in summary["images"]}
    assert statuses == expected
    assert len(summary["images"]) == len(expected)  # each path once
    counts = {status: list(expected.values()).count(status) for status in ("processed", "refused", "skipped")}
    assert {k: summary[k] for k in counts} == counts and summary["existing"] == 0
    reasons = {Path(e["image"]).name: e.get("reason", "") for e in summary["images"]}
    assert "no usable dynamic range" in reasons["flat.dcm"] and "no usable dynamic range" in reasons["black.png"]
    assert "too small" in reasons["strip.png"] and "3 slices" in reasons["v.nii.gz"]
    assert "Modality is CT" in reasons["ct.dcm"] and "EXTREMITY" in reasons["leg.dcm"]
    # one result per processed file, never outside the output folder, none for a refused one
    results = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json") if p.name != "summary.json")
    assert results == sorted(e["result"] for e in summary["images"] if e["status"] == "processed")
    assert {"a/x.json", "b/x.json", "same.png.json", "same.dcm.json", "summary.png.json"} <= set(results)
    assert all((out / r).resolve().is_relative_to(out.resolve()) for r in results)
    untagged = json.loads((out / "untagged.json").read_text())
    assert len(untagged["warnings"]) == 3 and any("Modality" in w for w in untagged["warnings"])
    assert summary["with_warnings"] == 1
    assert json.loads((out / "cmyk.json").read_text())["warnings"] == []
    # rerun after an interruption: one result lost, one new file; only those two are processed
    (out / "a" / "x.json").unlink()
    write_png(inputs / "new.png", (_radiograph(seed=9) // 16).astype(np.uint8))
    run_bundle("inference", ["inference.json"], *common, "--skip_existing", "true", status=2)
    rerun = json.loads((out / "summary.json").read_text())
    processed = sorted(os.path.relpath(e["image"], inputs) for e in rerun["images"] if e["status"] == "processed")
    assert processed == ["a/x.png", "new.png"]
    assert rerun["existing"] == counts["processed"] - 1
    assert rerun["refused"] == counts["refused"]  # refused files are tried again: they may have been fixed
    # the refused files removed, nothing is left to do: no run of the network, a summary all the same
    for name, status in expected.items():
        if status == "refused":
            (inputs / name).unlink()
    output = run_bundle("inference", ["inference.json"], *common, "--skip_existing", "true")
    final = json.loads((out / "summary.json").read_text())
    assert final["processed"] == 0 and final["existing"] == counts["processed"] + 1
    assert final["refused"] == 0 and "(100 %)" not in output
    assert not (out / DetectionWriter.SPOOL_NAME).exists()


def test_summary_is_streamed_from_the_spool_sorted_by_path_as_one_json_document(tmp_path):
    """Results go to a spool file as they come; summary.json lists them and the skipped paths sorted by path."""
    skipped = [{"image": "/in/b-notes.txt", "status": "skipped", "reason": "not an image file"},
               {"image": "/in/a/x.png", "status": "existing", "reason": "result a/x.json exists"}]  # fmt: skip
    writer = DetectionWriter(str(tmp_path), ["rib", "clavicle"], skipped=skipped)
    writer._reset()
    results = [{"image": "/in/c.png", "status": "processed", "result": "c.json", "warnings": ["no view"]},
               {"image": "/in/b/y.png", "status": "refused", "reason": "truncated"},
               {"image": "/in/a-1.png", "status": "processed", "result": "a-1.json", "warnings": []}]  # fmt: skip
    for entry in results:
        writer._record(entry)
    assert len((tmp_path / DetectionWriter.SPOOL_NAME).read_text().splitlines()) == 3  # on disk, as they came
    counts = writer.write_summary()
    text = (tmp_path / "summary.json").read_text()
    everything = sorted(results + skipped, key=lambda e: e["image"])
    expected = {"processed": 2, "refused": 1, "skipped": 1, "existing": 1, "with_warnings": 1, "images": everything}
    assert json.loads(text) == expected and counts == {k: expected[k] for k in counts}
    assert text == json.dumps(expected, indent=2)  # the same document the in-memory summary was
    assert not (tmp_path / DetectionWriter.SPOOL_NAME).exists()
    empty = DetectionWriter(str(tmp_path / "none"), ["rib"], skipped=[])
    empty.write_summary()
    assert json.loads((tmp_path / "none" / "summary.json").read_text())["images"] == []
