"""Model Zoo checks, run as the Zoo's CI runs them (from the bundle folder): metadata schema, network I/O, export."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import BUNDLE_ROOT, REPO_ROOT
from scripts.network import FractureHeatmapNet

SCHEMAS = REPO_ROOT.parent / "shared" / "modelzoo"
LIGHT = {"block": "basic", "layers": (1, 1, 1, 1), "widths": (8, 16, 32, 64), "fpn_channels": 16}
LIGHT_OVERRIDES = [
    "--network_def#block", "basic", "--network_def#layers", "[1,1,1,1]",
    "--network_def#widths", "[8,16,32,64]", "--network_def#fpn_channels", "16",
]  # fmt: skip


def monai_bundle(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


@pytest.mark.parametrize("schema", ["meta_schema_20220324.json", "meta_schema_20240725.json"])
def test_metadata_validates_against_the_zoo_schema(schema):
    if not (SCHEMAS / schema).is_file():
        pytest.skip(f"{SCHEMAS / schema} not present (it lives in ../shared beside the repository)")
    output = monai_bundle(
        "verify_metadata", "--meta_file", "configs/metadata.json", "--filepath", str(SCHEMAS / schema)
    )
    assert "metadata is verified with no error" in output


def test_network_input_and_output_match_the_metadata():
    output = monai_bundle(
        "verify_net_in_out", "network_def", "--meta_file", "configs/metadata.json",
        "--config_file", "configs/inference.json", *LIGHT_OVERRIDES,
    )  # fmt: skip
    assert "data shape of network is verified with no error" in output


def test_torchscript_export_matches_eager(tmp_path):
    torch.manual_seed(0)
    network = FractureHeatmapNet(num_classes=2, **LIGHT).eval()
    torch.save(network.state_dict(), tmp_path / "model.pt")
    monai_bundle(
        "ckpt_export", "network_def", "--filepath", str(tmp_path / "model.ts"), "--ckpt_file",
        str(tmp_path / "model.pt"), "--meta_file", "configs/metadata.json", "--config_file",
        "configs/inference.json", *LIGHT_OVERRIDES,
    )  # fmt: skip
    scripted = torch.jit.load(tmp_path / "model.ts")
    image = torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        assert (scripted(image) - network(image)).abs().max() < 1e-5
