"""``pretrained_backbone``: ResNet state dicts in torchvision's layout load into the network's MONAI ResNet backbone.

torchvision is not a dependency (and has no CPU build here), so the state dicts are built by hand in its ResNet
layout: the same names and shapes as ``torchvision.models.resnet18()/resnet50().state_dict()``, random values. The
parameter counts are checked against torchvision's published ones (11,689,512 and 25,557,032).
"""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import BUNDLE_ROOT
from monai.bundle import ConfigParser

from scripts.model.network import FractureHeatmapNet
from scripts.model.pretrained import KEY_MAP, load_pretrained_backbone, parameter_groups

RESNET18 = ("basic", (2, 2, 2, 2))
RESNET50 = ("bottleneck", (3, 4, 6, 3))


def torchvision_resnet(block: str, layers: tuple[int, ...], in_channels: int = 3, classes: int = 1000) -> dict:
    """A state dict in torchvision's ResNet layout (v1.5: stride on the 3x3 convolution), random values."""
    gen = torch.Generator().manual_seed(len(layers) + sum(layers))
    state: dict[str, torch.Tensor] = {}

    def conv(name: str, out: int, inp: int, k: int) -> None:
        state[f"{name}.weight"] = torch.randn(out, inp, k, k, generator=gen)

    def bn(name: str, channels: int) -> None:
        state[f"{name}.weight"] = torch.rand(channels, generator=gen) + 0.5
        state[f"{name}.bias"] = torch.randn(channels, generator=gen)
        state[f"{name}.running_mean"] = torch.randn(channels, generator=gen)
        state[f"{name}.running_var"] = torch.rand(channels, generator=gen) + 0.5
        state[f"{name}.num_batches_tracked"] = torch.tensor(7)

    expansion = 4 if block == "bottleneck" else 1
    conv("conv1", 64, in_channels, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
        for index in range(blocks):
            prefix = f"layer{stage}.{index}"
            if block == "bottleneck":
                conv(f"{prefix}.conv1", planes, inplanes, 1)
                bn(f"{prefix}.bn1", planes)
                conv(f"{prefix}.conv2", planes, planes, 3)
                bn(f"{prefix}.bn2", planes)
                conv(f"{prefix}.conv3", planes * 4, planes, 1)
                bn(f"{prefix}.bn3", planes * 4)
            else:
                conv(f"{prefix}.conv1", planes, inplanes, 3)
                bn(f"{prefix}.bn1", planes)
                conv(f"{prefix}.conv2", planes, planes, 3)
                bn(f"{prefix}.bn2", planes)
            if index == 0 and (stage > 1 or inplanes != planes * expansion):
                conv(f"{prefix}.downsample.0", planes * expansion, inplanes, 1)
                bn(f"{prefix}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    state["fc.weight"] = torch.randn(classes, 512 * expansion, generator=gen)
    state["fc.bias"] = torch.randn(classes, generator=gen)
    return state


def _parameters(state: dict) -> int:
    return sum(v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "tracked")))


def _network_key(key: str) -> str:
    for source, target in KEY_MAP:
        if key.startswith(source):
            return target + key[len(source) :]
    raise KeyError(key)


def _assert_backbone_equals(network: torch.nn.Module, state: dict) -> None:
    """Every backbone tensor equals the file's (conv1 summed over colour); shortcut biases are 0."""
    current = network.state_dict()
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        expected = value.sum(dim=1, keepdim=True) if key == "conv1.weight" and value.shape[1] == 3 else value
        torch.testing.assert_close(current[_network_key(key)], expected, rtol=0, atol=0, msg=key)
    biases = [k for k in current if k.endswith("downsample.0.bias")]
    assert biases and all((current[k] == 0).all() for k in biases)


def _train_config(**overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLE_ROOT / "configs" / "train.json"))
    parser.update({"device": "$torch.device('cpu')", **overrides})
    return parser


def test_torchvision_resnet50_loads_into_the_default_network_through_the_config(tmp_path, caplog):
    state = torchvision_resnet(*RESNET50)
    assert len(state) == 320 and _parameters(state) == 25_557_032  # torchvision's resnet50 layout
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(state, path)
    parser = _train_config(pretrained_backbone=str(path))
    with caplog.at_level(logging.INFO, logger="scripts.model.pretrained"):
        parser.get_parsed_content("stage_setup")  # what the "training" run does first
    network = parser.get_parsed_content("network")
    _assert_backbone_equals(network, state)
    assert "318 tensors loaded, conv1 summed over its 3 colour channels" in caplog.text
    assert "2 file tensors not used (fc.weight, fc.bias)" in caplog.text
    assert "(ResNet-50)" in caplog.text and "4 backbone tensors not in the file, set to 0" in caplog.text


def test_resnet18_into_resnet18_and_a_mismatch_refused_in_one_line(tmp_path):
    state = torchvision_resnet(*RESNET18)
    assert len(state) == 122 and _parameters(state) == 11_689_512  # torchvision's resnet18 layout
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    resnet18 = FractureHeatmapNet(block="basic", layers=(2, 2, 2, 2), fpn_channels=64)
    _assert_backbone_equals(load_pretrained_backbone(resnet18, path), state)
    with pytest.raises(ValueError) as refused:
        load_pretrained_backbone(FractureHeatmapNet(), path)  # the default (ResNet-50) network_def
    message = str(refused.value)
    assert "\n" not in message and "(ResNet-18) does not fit this network's backbone" in message
    assert "(ResNet-50)" in message and "resnet18.pth" in message


def test_single_channel_weights_with_a_prefix_load_as_they_are(tmp_path):
    """A torchxrayvision ResNet's state_dict(): a torchvision ResNet-50 under ``model.``, one-channel conv1."""
    state = torchvision_resnet(*RESNET50, in_channels=1, classes=18)
    path = tmp_path / "xrv-resnet50.pt"
    torch.save({f"model.{k}": v for k, v in state.items()} | {"op_threshs": torch.rand(18)}, path)
    with pytest.raises(ValueError, match="set pretrained_prefix to 'model.'"):
        load_pretrained_backbone(FractureHeatmapNet(), path)
    network = load_pretrained_backbone(FractureHeatmapNet(), path, prefix="model.")
    _assert_backbone_equals(network, state)
    torch.testing.assert_close(network.stem[0].weight, state["conv1.weight"], rtol=0, atol=0)


class NotTensors:
    """A pickled object: torch.load(weights_only=True) refuses to build it."""


def test_files_that_are_no_tensor_state_dict_are_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"conv1.weight": NotTensors()}, path)
    with pytest.raises(ValueError, match="pickled.pt: not a state dict that torch.load\\(weights_only=True\\) reads"):
        load_pretrained_backbone(FractureHeatmapNet(), path)
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        load_pretrained_backbone(FractureHeatmapNet(), tmp_path / "absent.pth")


def test_backbone_learning_rate_factor():
    network = FractureHeatmapNet(block="basic", layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), fpn_channels=16)
    assert len(torch.optim.AdamW(parameter_groups(network, 1e-3)).param_groups) == 1  # default: as before
    groups = torch.optim.AdamW(parameter_groups(network, 1e-3, 0.1)).param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3])
    backbone = {id(p) for n, p in network.named_parameters() if n.startswith(("stem.", "stages."))}
    assert {id(p) for p in groups[0]["params"]} == backbone
    assert sum(len(g["params"]) for g in groups) == len(list(network.parameters()))
    # the config key reaches the optimizer
    parser = _train_config(backbone_lr_factor=0.25, learning_rate=0.002)
    parser["network_def"].update({"block": "basic", "layers": [1, 1, 1, 1], "widths": [8, 16, 32, 64]})
    assert [g["lr"] for g in parser.get_parsed_content("optimizer").param_groups] == pytest.approx([5e-4, 2e-3])
