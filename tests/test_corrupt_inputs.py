"""One corrupt file never ends a run: every compressed syntax the user guide claims, valid and corrupt, side by side.

Corrupt streams (``scripts/compressed_dicom.py``): a truncated codestream and a valid start followed by garbage for
every claimed syntax, and for JPEG 2000 the stream on which python-gdcm aborts the process. Inference over a folder
mixing them with valid DICOM (every syntax), PNG and NIfTI files must give every valid image its result and every
corrupt file its reason in ``summary.json``, and say with its exit status that inputs were refused. A training
datalist holding such files is refused before training, with the list of them.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from bundle_runs import LIGHT, config_files
from compressed_dicom import CLAIMED_SYNTAXES, corrupt, encode
from conftest import REPO_ROOT
from helpers import write_dicom, write_png

from scripts.data.decoding import (
    CRASH_REASON,
    ContainedDecoder,
    DecodeError,
    DecoderCrashError,
    decode_plan,
    pydicom_major,
)
from scripts.data.loading import CXRInputError, LoadCXRImaged, load_cxr

CHEST = {"Modality": "DX", "BodyPartExamined": "CHEST", "ViewPosition": "PA"}


def _radiograph(rows: int = 96, cols: int = 80, bits: int = 12) -> np.ndarray:
    """Smooth content with noise, like a radiograph: compressible, with dynamic range."""
    r, c = np.meshgrid(np.linspace(0, 1, rows), np.linspace(0, 1, cols), indexing="ij")
    noise = np.random.default_rng(0).integers(0, 64, (rows, cols))
    image = 2000 + 1500 * np.sin(6 * r) * np.cos(4 * c) + noise
    return (image / 16).astype(np.uint8) if bits <= 8 else image.astype(np.uint16)


def _sources(folder: Path) -> dict[int, Path]:
    """Uncompressed 8-bit and 12-bit sources, outside the input folder."""
    folder.mkdir(exist_ok=True)
    return {
        bits: write_dicom(folder / f"plain{bits}.dcm", _radiograph(bits=bits), bits_stored=bits, **CHEST)
        for bits in (8, 12)
    }


def _compressed(folder: Path, sources: dict[int, Path], name: str) -> Path:
    syntax, bits = CLAIMED_SYNTAXES[name]
    return encode(sources[bits], folder / f"{name}.dcm", syntax)


class CrashFile(NamedTuple):
    path: Path
    #: python-gdcm aborted the throwaway process that read it (SIGABRT), as it did when this test was written
    aborts: bool


@pytest.fixture(scope="module")
def crash_file(tmp_path_factory) -> CrashFile:
    """A JPEG 2000 DICOM on which python-gdcm aborts the process (checked in a throwaway process)."""
    folder = tmp_path_factory.mktemp("crash")
    sources = _sources(folder / "sources")
    path = corrupt(_compressed(folder, sources, "jpeg2000_lossless"), folder / "j2k_crash.dcm", "j2k_crash")
    if pydicom_major() >= 3:
        code = "import sys; from pydicom.pixels import pixel_array; pixel_array(sys.argv[1], decoding_plugin='gdcm')"
    else:
        code = "import sys, pydicom; pydicom.dcmread(sys.argv[1]).convert_pixel_data(handler_name='gdcm')"
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    return CrashFile(path, result.returncode == -signal.SIGABRT)


def test_no_gdcm_decoding_runs_in_this_process():
    """GDCM may abort the process: in every plan it is contained; the in-process decoders come first."""
    for name, (syntax, _) in CLAIMED_SYNTAXES.items():
        steps = decode_plan(pydicom.uid.UID(syntax))
        assert steps, name
        assert all(step.contained for step in steps if step.plugin == "gdcm"), (name, steps)
        contained = [step.contained for step in steps]
        assert contained == sorted(contained), (name, steps)  # in-process ones first
    j2k = decode_plan(pydicom.uid.UID(CLAIMED_SYNTAXES["jpeg2000_lossless"][0]))
    assert j2k[0].plugin == "pylibjpeg" and not j2k[0].contained
    lossless = decode_plan(pydicom.uid.UID(CLAIMED_SYNTAXES["jpeg_lossless_sv1"][0]))
    assert [(s.plugin, s.contained) for s in lossless] == [("gdcm", True)]  # GDCM is the only decoder: contained


def test_gdcm_crash_is_contained_and_the_next_file_decodes(tmp_path, crash_file):
    if pydicom_major() >= 3:  # pydicom 2.4's GDCM handler takes another path through GDCM, which raises instead
        assert crash_file.aborts, "python-gdcm no longer aborts on this stream"
    decoder = ContainedDecoder()
    plain = write_dicom(tmp_path / "plain.dcm", _radiograph(), **CHEST)
    lossless = encode(plain, tmp_path / "lossless.dcm", CLAIMED_SYNTAXES["jpeg_lossless_sv1"][0])
    if crash_file.aborts:
        with pytest.raises(DecoderCrashError, match="SIGABRT"):
            decoder.decode(crash_file.path, "gdcm")
    # a fresh child decodes the next file: the same pixels as the uncompressed file
    np.testing.assert_array_equal(decoder.decode(lossless, "gdcm"), _radiograph())
    with pytest.raises(DecodeError) as error:  # a Python error in the child comes back as one, the child lives on
        decoder.decode(lossless, "no_such_plugin")
    assert not isinstance(error.value, DecoderCrashError)
    np.testing.assert_array_equal(decoder.decode(lossless, "gdcm"), _radiograph())
    decoder.close()


def test_a_decoder_that_does_not_answer_is_killed(tmp_path):
    plain = write_dicom(tmp_path / "plain.dcm", _radiograph(2000, 1800), **CHEST)
    lossless = encode(plain, tmp_path / "lossless.dcm", CLAIMED_SYNTAXES["jpeg_lossless_sv1"][0])
    decoder = ContainedDecoder()
    with pytest.raises(DecoderCrashError, match="no answer within"):
        decoder.decode(lossless, "gdcm", timeout=1e-4)
    np.testing.assert_array_equal(decoder.decode(lossless, "gdcm"), _radiograph(2000, 1800))
    decoder.close()


@pytest.mark.parametrize("name", sorted(CLAIMED_SYNTAXES))
def test_every_claimed_syntax_decodes_and_each_corruption_is_reported(tmp_path, name):
    sources = _sources(tmp_path / "sources")
    valid = _compressed(tmp_path, sources, name)
    bits = CLAIMED_SYNTAXES[name][1]
    decoded = load_cxr(valid).as_tensor()
    reference = load_cxr(sources[bits]).as_tensor()
    if name in ("jpeg2000", "jpeg_baseline"):  # lossy: close, not equal
        assert (decoded - reference).abs().mean() < 0.05 * float(reference.max() - reference.min())
    else:
        torch.testing.assert_close(decoded, reference)
    syntax = pydicom.dcmread(valid, stop_before_pixels=True).file_meta.TransferSyntaxUID
    for kind in ("truncated", "garbage"):
        broken = corrupt(valid, tmp_path / f"{kind}.dcm", kind)
        with pytest.raises(CXRInputError) as error:
            load_cxr(broken)
        message = str(error.value)
        assert f"{kind}.dcm" in message and syntax.name in message and str(syntax) in message, message


def test_crash_reason_names_file_syntax_and_the_crash(crash_file):
    with pytest.raises(CXRInputError) as error:
        load_cxr(crash_file.path)
    message = str(error.value)
    assert "j2k_crash.dcm" in message and "1.2.840.10008.1.2.4.90" in message and "JPEG 2000" in message
    if crash_file.aborts:
        assert CRASH_REASON in message and "SIGABRT" in message


def _light_weights(path: Path) -> Path:
    """Random weights of the tests' light network (``bundle_runs.LIGHT``)."""
    from scripts.model.network import FractureHeatmapNet

    torch.manual_seed(0)
    network = FractureHeatmapNet(block="basic", layers=[1, 1, 1, 1], widths=[8, 16, 32, 64], fpn_channels=16)
    torch.save(network.state_dict(), path)
    return path


def _bundle(run_id: str, configs: list[str], *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config_files(configs)]
    command += ["--meta_file", str(REPO_ROOT / "bundle" / "configs" / "metadata.json"), *LIGHT, *overrides]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


def test_folder_with_corrupt_streams_of_every_syntax_completes(tmp_path, crash_file):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    sources = _sources(tmp_path / "sources")
    expected: dict[str, str] = {}  # file name -> "processed" or the words its reason must hold
    write_dicom(inputs / "uncompressed.dcm", _radiograph(), **CHEST)
    write_png(inputs / "radiograph.png", _radiograph())
    nib.save(nib.Nifti1Image(_radiograph().T.astype(np.float32), np.eye(4)), inputs / "radiograph.nii.gz")
    expected.update({"uncompressed.dcm": "processed", "radiograph.png": "processed", "radiograph.nii.gz": "processed"})
    for name, (syntax, _) in CLAIMED_SYNTAXES.items():
        valid = _compressed(inputs, sources, name)
        expected[valid.name] = "processed"
        for kind in ("truncated", "garbage"):
            corrupt(valid, inputs / f"{name}_{kind}.dcm", kind, seed=len(expected))
            expected[f"{name}_{kind}.dcm"] = syntax
    (inputs / "j2k_crash.dcm").write_bytes(crash_file.path.read_bytes())
    expected["j2k_crash.dcm"] = CRASH_REASON if crash_file.aborts else "1.2.840.10008.1.2.4.90"

    output = tmp_path / "results"
    result = _bundle(
        "inference", ["inference.json"], "--dataset_dir", str(inputs), "--output_dir", str(output),
        "--ckpt_path", str(_light_weights(tmp_path / "model.pt")), "--num_workers", "2",
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 2, log[-3000:]  # the run completed and says that inputs were refused
    summary = json.loads((output / "summary.json").read_text())
    entries = {Path(entry["image"]).name: entry for entry in summary["images"]}
    assert set(entries) == set(expected)
    for name, want in expected.items():
        entry = entries[name]
        if want == "processed":
            assert entry["status"] == "processed", entry
            assert (output / entry["result"]).is_file()
        else:
            assert entry["status"] == "refused" and want in entry["reason"] and name in entry["reason"], entry
    assert summary["refused"] == sum(want != "processed" for want in expected.values())
    assert "\r" not in log  # not a terminal: plain progress lines, not a redrawn bar
    assert f"inference: {len(expected)}/{len(expected)} images (100 %)" in log


def _datalist(folder: Path, images: list[Path], validation: list[Path]) -> Path:
    labels = {"rib": 0, "clavicle": 0}
    items = [{"image": str(path), "subset": "N", "labels": labels} for path in images]
    evaluation = [{"image": str(path), "labels": labels, "boxes": [], "box_classes": []} for path in validation]
    datalist = {"classes": ["rib", "clavicle"], "training": items, "validation": evaluation, "test": []}
    (folder / "datalist.json").write_text(json.dumps(datalist))
    return folder


@pytest.mark.parametrize("store", [True, False], ids=["preprocessed_store", "in_ram_cache"])
def test_training_datalist_with_corrupt_files_is_refused_before_training(tmp_path, crash_file, store):
    """Both training data paths read every image first, through the contained decoding, and list all bad files."""
    sources = _sources(tmp_path / "sources")
    good = [write_dicom(tmp_path / f"good{i}.dcm", np.roll(_radiograph(), 7 * i, axis=1), **CHEST) for i in range(6)]
    rle = _compressed(tmp_path, sources, "rle")
    bad = [corrupt(rle, tmp_path / "bad_rle.dcm", "truncated"), tmp_path / "bad_j2k.dcm"]
    bad[1].write_bytes(crash_file.path.read_bytes())
    models, cache = tmp_path / "models", tmp_path / "cache"
    result = _bundle(
        "training", ["train.json"], "--dataset_dir", str(_datalist(tmp_path, good[:4] + bad, good[4:])),
        "--ckpt_dir", str(models), "--output_dir", str(tmp_path / "runs"), "--train#trainer#max_epochs", "1",
        "--cache_dir", str(cache) if store else "", "--num_workers", "2",
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode != 0
    if store:  # built in DataLoader worker processes: GDCM's abort would have killed one and ended the run
        assert "training data: 2 of 6 images cannot be used, so the run stops before its first step" in log, log[-3000:]
        refused = json.loads(next(cache.glob("*/refused.json")).read_text())
        assert sorted(refused) == sorted(str(path) for path in bad)
        if crash_file.aborts:
            assert CRASH_REASON in refused[str(bad[1])] and "1.2.840.10008.1.2.4.90" in refused[str(bad[1])]
    else:
        assert "training data: 2 of 6 images cannot be read; nothing was trained" in log, log[-3000:]
    assert "exited unexpectedly" not in log  # no DataLoader worker died
    assert all(str(path) in log for path in bad) and not any(f"{path}:" in log for path in good)
    assert "Epoch[1]" not in log and not list(models.glob("*.pt"))  # refused before the first iteration


def test_uncached_unreadable_image_is_skipped_with_a_warning(tmp_path, caplog, crash_file):
    from monai.transforms import Compose

    from scripts.data.cache import CheckedCacheDataset

    good = [write_dicom(tmp_path / f"good{i}.dcm", _radiograph(), **CHEST) for i in range(3)]
    data = [{"image": str(path)} for path in [*good[:2], crash_file.path, good[2]]]
    transform = Compose([LoadCXRImaged("image")])
    dataset = CheckedCacheDataset(data, transform, desc="training data", replace_unreadable=True, cache_rate=0.5)
    assert dataset.cache_num == 2
    with caplog.at_level(logging.WARNING):
        item = dataset[2]  # the unreadable file is outside the cache: the next image comes instead
    assert item["image"].meta["filename_or_obj"] == str(good[2])
    assert f"training data: skipped {crash_file.path}" in caplog.text
    # evaluation data: a stand-in would count another image twice, so the file's error is raised
    evaluation = CheckedCacheDataset(data, transform, desc="test data", cache_rate=0.0)
    with pytest.raises(CXRInputError, match="j2k_crash.dcm"):
        evaluation[2]
    with pytest.raises(CXRInputError, match=r"(?s)1 of 4 images cannot be read.*j2k_crash\.dcm"):
        CheckedCacheDataset(data, transform, desc="training data", cache_rate=1.0)
