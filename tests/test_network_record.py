"""Checkpoints that know their network: the record in every state dict, and one line when a config disagrees."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch
from bundle_runs import config_files
from conftest import REPO_ROOT
from monai.networks.utils import copy_model_state

from scripts.model.network import FractureHeatmapNet
from scripts.model.record import (
    RECORD_KEY,
    NetworkMismatchError,
    bundle_version,
    check_checkpoint,
    decode_record,
    read_checkpoint_network,
)

#: The light network of configs/demo.json, and the tests' lighter one (tests/bundle_runs.py).
DEMO = {"block": "basic", "layers": [1, 1, 1, 1], "widths": [16, 32, 64, 128], "fpn_channels": 32}
TESTS = {"block": "basic", "layers": [1, 1, 1, 1], "widths": [8, 16, 32, 64], "fpn_channels": 16}


def _without_record(state: dict) -> dict:
    return {key: value for key, value in state.items() if key != RECORD_KEY}


def test_state_dict_records_the_network_definition_and_bundle_version():
    record = decode_record(FractureHeatmapNet(**DEMO).state_dict()[RECORD_KEY])
    assert record["bundle_version"] == bundle_version() != "unknown"
    assert record["network_def"] == {
        "_target_": "scripts.model.network.FractureHeatmapNet", **DEMO, "num_classes": 2, "in_channels": 1,
    }  # fmt: skip


def test_other_network_is_refused_in_one_line_naming_both_and_the_fix():
    light = FractureHeatmapNet(**DEMO).state_dict()
    for strict in (True, False):  # False: as MONAI Label loads, which would otherwise serve a random model
        with pytest.raises(NetworkMismatchError) as error:
            FractureHeatmapNet().load_state_dict(light, strict=strict)
        message = str(error.value)
        assert "\n" not in message
        assert "light network (demo.json)" in message and "default network (inference.json)" in message
        assert message.endswith("add bundle/configs/demo.json to --config_file")
    with pytest.raises(NetworkMismatchError, match="leave bundle/configs/demo.json out of --config_file$"):
        FractureHeatmapNet(**DEMO).load_state_dict(FractureHeatmapNet().state_dict())
    with pytest.raises(NetworkMismatchError, match=r"--network_def#widths \[8,16,32,64\] --network_def#fpn_channels"):
        FractureHeatmapNet(**DEMO).load_state_dict(FractureHeatmapNet(**TESTS).state_dict())
    with pytest.raises(NetworkMismatchError, match="3 classes it was trained with"):
        FractureHeatmapNet(**DEMO).load_state_dict(FractureHeatmapNet(**DEMO, num_classes=3).state_dict())


def test_checkpoint_of_an_earlier_release_loads_with_a_warning_or_is_named(caplog):
    old = _without_record(FractureHeatmapNet(**DEMO).state_dict())
    network = FractureHeatmapNet(**DEMO)
    with caplog.at_level(logging.WARNING):
        assert not network.load_state_dict(old).missing_keys
    assert "without a network record" in caplog.text
    torch.testing.assert_close(network.stem[0].weight, old["stem.0.weight"])
    with pytest.raises(NetworkMismatchError) as error:  # read from its weights: named as well, in one line
        FractureHeatmapNet().load_state_dict(old, strict=False)
    assert "no network record: read from its weights" in str(error.value) and "\n" not in str(error.value)


def test_export_paths_and_copies_keep_working(tmp_path):
    network = FractureHeatmapNet(**TESTS)
    state = network.state_dict()
    copy = FractureHeatmapNet(**TESTS)
    copy_model_state(copy, state)  # MONAI's ckpt_export path compares .shape of every value
    torch.testing.assert_close(copy.head[-1].weight, network.head[-1].weight)
    scripted = torch.jit.script(copy.eval())  # the record's methods stay out of TorchScript
    image = torch.rand(1, 1, 64, 64)
    torch.testing.assert_close(scripted(image), copy(image))
    path = tmp_path / "model.pt"
    torch.save({"model": state}, path)
    assert read_checkpoint_network(path) == ({**TESTS, "num_classes": 2, "in_channels": 1}, bundle_version())


def test_check_checkpoint_ends_the_command_with_the_line(tmp_path):
    path = tmp_path / "light.pt"
    torch.save(_without_record(FractureHeatmapNet(**DEMO).state_dict()), path)
    with pytest.raises(SystemExit) as stop:
        check_checkpoint(path, FractureHeatmapNet())
    assert str(stop.value).startswith(f"error: {path} holds the light network (demo.json)")
    check_checkpoint(path, FractureHeatmapNet(**DEMO))  # the same network: nothing to say
    check_checkpoint(tmp_path / "missing.pt", FractureHeatmapNet())  # left to the loader


def test_every_checkpoint_of_a_training_run_records_its_network(stage1):
    files = sorted(stage1.glob("*.pt"))
    assert {"model.pt", "checkpoint_epoch=1.pt"} <= {path.name for path in files}
    for path in files:
        assert read_checkpoint_network(path) == ({**TESTS, "num_classes": 2, "in_channels": 1}, bundle_version())


def test_inference_with_the_other_networks_checkpoint_fails_in_one_line(tmp_path):
    path = tmp_path / "light.pt"
    torch.save(FractureHeatmapNet(**DEMO).state_dict(), path)
    (tmp_path / "in").mkdir()
    command = [sys.executable, "-m", "monai.bundle", "run", "inference"]
    command += ["--config_file", config_files(["inference.json"]), "--dataset_dir", str(tmp_path / "in")]
    command += ["--output_dir", str(tmp_path / "out"), "--ckpt_path", str(path)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output and "size mismatch" not in output
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: {path} holds the light network (demo.json)")
    assert last.endswith("add bundle/configs/demo.json to --config_file")


def test_legacy_format_checkpoint_is_read_and_an_unreadable_file_is_left_to_the_loader(tmp_path):
    legacy = tmp_path / "legacy.pt"  # PyTorch's pre-1.6 serialisation, which cannot be memory-mapped
    torch.save({"model": FractureHeatmapNet(**TESTS).state_dict()}, legacy, _use_new_zipfile_serialization=False)
    assert read_checkpoint_network(legacy) == ({**TESTS, "num_classes": 2, "in_channels": 1}, bundle_version())
    with pytest.raises(SystemExit, match="holds the light network"):
        legacy_light = tmp_path / "legacy_light.pt"
        torch.save(FractureHeatmapNet(**DEMO).state_dict(), legacy_light, _use_new_zipfile_serialization=False)
        check_checkpoint(legacy_light, FractureHeatmapNet())
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    check_checkpoint(garbage, FractureHeatmapNet())  # no verdict here: the checkpoint loader names the problem
