"""Model Zoo checks, run as the Zoo's CI runs them (from the bundle folder): metadata schema, network I/O, export."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import BUNDLE_ROOT, REPO_ROOT
from monai.bundle import ConfigParser, ConfigWorkflow

from scripts.model.network import FractureHeatmapNet

SCHEMAS = REPO_ROOT.parent / "shared" / "modelzoo"
LIGHT = {"block": "basic", "layers": (1, 1, 1, 1), "widths": (8, 16, 32, 64), "fpn_channels": 16}
LIGHT_OVERRIDES = [
    "--network_def#block", "basic", "--network_def#layers", "[1,1,1,1]",
    "--network_def#widths", "[8,16,32,64]", "--network_def#fpn_channels", "16",
]  # fmt: skip
LIGHT_CONFIG = {f"network_def#{key}": list(v) if isinstance(v, tuple) else v for key, v in LIGHT.items()}


def monai_bundle(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=BUNDLE_ROOT, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["meta_schema_20240725.json", "meta_schema_20220324.json"])
def test_metadata_validates_against_both_zoo_schemas(schema):
    """The schema ``metadata.json`` names (20240725, ``required_packages_version``) and the one the Zoo's checks still
    apply (20220324, which requires ``optional_packages_version``): the file carries both keys."""
    named = json.loads((BUNDLE_ROOT / "configs" / "metadata.json").read_text())["schema"].rsplit("/", 1)[1]
    assert named == "meta_schema_20240725.json"
    if not (SCHEMAS / schema).is_file():
        pytest.skip(f"{SCHEMAS / schema} not present (it lives in ../shared beside the repository)")
    output = monai_bundle(
        "verify_metadata", "--meta_file", "configs/metadata.json", "--filepath", str(SCHEMAS / schema)
    )
    assert "metadata is verified with no error" in output


def test_both_package_keys_agree_so_monais_rename_loses_nothing():
    """MONAI 1.6.1 renames ``optional_packages_version`` to ``required_packages_version`` when it reads the file
    (with a deprecation warning): the two lists must be the same, or the rename would drop a pin."""
    metadata = json.loads((BUNDLE_ROOT / "configs" / "metadata.json").read_text())
    assert metadata["optional_packages_version"] == metadata["required_packages_version"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser = ConfigParser()
        parser.read_meta(BUNDLE_ROOT / "configs" / "metadata.json")
    assert parser.get("_meta_")["required_packages_version"] == metadata["required_packages_version"]


@pytest.mark.slow
def test_network_input_and_output_match_the_metadata():
    output = monai_bundle(
        "verify_net_in_out", "network_def", "--meta_file", "configs/metadata.json",
        "--config_file", "configs/inference.json", *LIGHT_OVERRIDES,
    )  # fmt: skip
    assert "data shape of network is verified with no error" in output


@pytest.mark.slow
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


def test_version_is_the_newest_changelog_entry():
    metadata = json.loads((BUNDLE_ROOT / "configs" / "metadata.json").read_text())
    versions = sorted(metadata["changelog"], key=lambda v: tuple(int(part) for part in v.split(".")))
    assert metadata["version"] == versions[-1]


def test_eval_metrics_are_the_ablation_benchmark_numbers():
    """metadata.json eval_metrics come from the method benchmark's current record, bundle/docs/ablation_v2.json (the
    top level's AALS arm; scripts/benchmark_ablation.py --protocol v2 writes both)."""
    from ablation_report import eval_metrics

    metadata = json.loads((BUNDLE_ROOT / "configs" / "metadata.json").read_text())
    record = json.loads((BUNDLE_ROOT / "docs" / "ablation_v2.json").read_text())
    assert metadata["eval_metrics"] == eval_metrics(record)
    assert all(0.0 < value < 1.0 for value in metadata["eval_metrics"].values())


@pytest.mark.parametrize(
    "workflow_type, configs",
    [
        ("train", ["train.json"]),
        ("infer", ["inference.json"]),
        ("train", ["train.json", "evaluate.json"]),
        ("train", ["train.json", "distill.json"]),
    ],
)
def test_workflow_has_every_required_property(workflow_type, configs, phantoms, tmp_path):
    configs_dir = BUNDLE_ROOT / "configs"
    workflow = ConfigWorkflow(
        config_file=[str(configs_dir / name) for name in configs],
        meta_file=str(configs_dir / "metadata.json"),
        workflow_type=workflow_type,
        dataset_dir=str(phantoms / ("images" if workflow_type == "infer" else "")),
        num_workers=0,
        ckpt_dir=str(tmp_path / "models"),
        output_dir=str(tmp_path / "runs"),
        **LIGHT_CONFIG,
    )
    workflow.initialize()
    assert workflow.check_properties() == []


def test_property_check_reports_a_missing_trainer(phantoms, tmp_path):
    configs_dir = BUNDLE_ROOT / "configs"
    workflow = ConfigWorkflow(
        config_file=str(configs_dir / "train.json"), meta_file=str(configs_dir / "metadata.json"),
        workflow_type="train", dataset_dir=str(phantoms), ckpt_dir=str(tmp_path / "models"),
    )  # fmt: skip
    workflow.parser["train"].pop("trainer")
    workflow.initialize()
    with pytest.raises(KeyError, match="'trainer'"):
        workflow.check_properties()
