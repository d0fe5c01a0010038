"""Inference the way MONAI Label 0.8.5's ``BundleInferTask`` runs it, on DICOM (every claimed syntax) and PNG.

MONAI Label reads ``configs/inference.json`` alone, sets ``bundle_root`` and ``device`` (a plain string), builds
``network_def`` and loads ``models/model.pt`` into it non-strictly, runs the transforms of ``preprocessing`` one by
one on ``{"image": path}``, the ``inferer`` on the image with a batch axis, the transforms of ``postprocessing``
(less ``SaveImaged``), then resizes ``pred`` back to the image's ``spatial_shape`` (``Restored``): here that must be
a no-op, since the bundle's label map already has the file's size. It all runs in the server's own process.

This module runs in the project's environment and, in CI, in the MONAI Label pins tier (``scripts/check_pins.sh``:
pydicom 2.4.4 and numpy 1.26.4, the versions MONAI Label 0.8.5 forces), where a pydicom-3-only call fails it. The
only change to what MONAI Label does is a small network (``network_def`` overrides) to keep it fast; the network is
not what this checks. The full check with MONAI Label itself is ``scripts/check_monailabel.sh``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from compressed_dicom import CLAIMED_SYNTAXES, corrupt, encode
from conftest import BUNDLE_ROOT
from helpers import write_dicom, write_png

from scripts.data.decoding import pydicom_major
from scripts.data.loading import CXRInputError

#: The tests' light network, as ``network_def`` overrides of ``inference.json``.
LIGHT = {"block": "basic", "layers": [1, 1, 1, 1], "widths": [8, 16, 32, 64], "fpn_channels": 16}
LOSSLESS = ("jpeg2000_lossless", "jpegls_lossless", "jpeg_lossless", "jpeg_lossless_sv1", "rle")


def _parser(device: str = "cpu") -> Any:
    """``inference.json`` as ``BundleInferTask`` reads it: no other config, ``bundle_root`` and a string device."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(BUNDLE_ROOT / "configs" / "inference.json")
    parser.config.update({"bundle_root": str(BUNDLE_ROOT), "device": device})
    for key, value in LIGHT.items():
        parser[f"network_def#{key}"] = value
    parser["image_size"] = 128
    return parser


def _weights(path: Path, images: list[str]) -> Path:
    """Random light weights whose maps cover about 30 % of the test images for each class (a pattern with
    structure, which a flip or transposition would not reproduce), saved as ``model.pt``."""
    parser = _parser()
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def").eval()
    preprocessing = parser.get_parsed_content("preprocessing")
    batch = torch.stack([torch.as_tensor(preprocessing({"image": image})["image"]) for image in images])
    with torch.no_grad():
        network.head[-1].bias.zero_()
        logits = network(batch).transpose(0, 1).flatten(1)
        network.head[-1].bias.copy_(-torch.quantile(logits, 0.7, dim=1))
    torch.save(network.state_dict(), path)
    return path


def _infer_task(weights: Path) -> Callable[[str], dict[str, Any]]:
    """``BundleInferTask``'s steps (monailabel 0.8.5 ``tasks/infer/bundle.py`` and ``basic_infer.py``)."""
    from monai.transforms import SaveImaged

    parser = _parser()
    network = parser.get_parsed_content("network_def").eval()
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    network.load_state_dict(checkpoint.get("model", checkpoint), strict=False)  # MONAI Label: load_strict=False
    pre = list(parser.get_parsed_content("preprocessing").transforms)
    inferer = parser.get_parsed_content("inferer")
    post = [t for t in parser.get_parsed_content("postprocessing").transforms if not isinstance(t, SaveImaged)]

    def run(path: str) -> dict[str, Any]:
        data: dict[str, Any] = {"image": path, "device": "cpu", "result_extension": ".nrrd"}
        for transform in pre:
            data = transform(data)
        with torch.no_grad():
            data["pred"] = inferer(torch.as_tensor(data["image"])[None], network)[0]
        for transform in post:
            data = transform(data)
        pred = np.asarray(data["pred"])
        spatial_shape = tuple(int(v) for v in data["image"].meta["spatial_shape"])
        assert pred.shape[-2:] == spatial_shape  # Restored would resize otherwise: it must have nothing to do
        return data

    return run


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    """A portrait radiograph as uncompressed DICOM, in every claimed lossless syntax and as 16-bit PNG."""
    folder = tmp_path_factory.mktemp("studies")
    r, c = np.meshgrid(np.linspace(0, 1, 160), np.linspace(0, 1, 112), indexing="ij")  # 160 rows x 112 columns
    pixels = (2000 + 1500 * np.sin(9 * r) * np.cos(5 * c + 3 * r)).astype(np.uint16)
    pixels += np.random.default_rng(1).integers(0, 200, pixels.shape).astype(np.uint16)
    files = {"dicom": write_dicom(folder / "study.dcm", pixels, Modality="DX", BodyPartExamined="CHEST")}
    files["png"] = write_png(folder / "study.png", pixels)
    for name in LOSSLESS:
        files[name] = encode(files["dicom"], folder / f"{name}.dcm", CLAIMED_SYNTAXES[name][0])
    return files


@pytest.fixture(scope="module")
def run(studies, tmp_path_factory) -> Callable[[str], dict[str, Any]]:
    """The emulated ``BundleInferTask`` with weights that draw both classes on the test study."""
    weights = _weights(tmp_path_factory.mktemp("model") / "model.pt", [str(studies["dicom"])])
    return _infer_task(weights)


def test_dicom_and_png_inference_as_monai_label_runs_it(run, studies):
    reference = run(str(studies["dicom"]))
    label = np.asarray(reference["pred"])
    assert label.shape == (112, 160)  # (W, H): the file's columns and rows
    assert set(np.unique(label)) == {0, 1, 2}  # background and both classes: a map with structure
    result = reference["result"]
    assert result["image_size"] == [112, 160] and result["label_values"] == {"rib": 1, "clavicle": 2}
    assert result["detections"] and all(0 <= d["x"] < 112 and 0 <= d["y"] < 160 for d in result["detections"])
    for name in ("png", *LOSSLESS):  # the same pixels give the same map, whatever the format and the decoder
        np.testing.assert_array_equal(np.asarray(run(str(studies[name]))["pred"]), label, err_msg=name)


def test_a_corrupt_dicom_fails_one_request_and_the_server_process_goes_on(tmp_path, run, studies):
    """MONAI Label runs the pre-processing in its server process: a decoder crash there would end the server."""
    crash = corrupt(studies["jpeg2000_lossless"], tmp_path / "crash.dcm", "j2k_crash")
    truncated = corrupt(studies["jpeg_lossless_sv1"], tmp_path / "truncated.dcm", "truncated")
    for path, syntax in ((crash, "1.2.840.10008.1.2.4.90"), (truncated, "1.2.840.10008.1.2.4.70")):
        with pytest.raises(CXRInputError) as error:
            run(str(path))
        assert path.name in str(error.value) and syntax in str(error.value)
    if pydicom_major() >= 3:  # pydicom 3 hands this stream to GDCM's decoder that aborts (pydicom 2.4's raises)
        assert "decoder crashed" in str(pytest.raises(CXRInputError, run, str(crash)).value)
    assert np.asarray(run(str(studies["dicom"]))["pred"]).shape == (112, 160)  # the process is alive and serving
