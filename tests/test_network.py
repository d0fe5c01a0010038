"""ResNet + FPN heatmap network: output shape, prior, TorchScript."""

import pytest
import torch

from scripts.model.network import OUTPUT_STRIDE, FractureHeatmapNet

LIGHT = {"block": "basic", "layers": (1, 1, 1, 1), "widths": (8, 16, 32, 64), "fpn_channels": 16}


@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_output_is_stride4_logits_one_channel_per_class(size):
    net = FractureHeatmapNet(num_classes=2, **LIGHT).eval()
    out = net(torch.rand(2, 1, *size))
    assert out.shape == (2, 2, size[0] // OUTPUT_STRIDE, size[1] // OUTPUT_STRIDE)


def test_initial_probability_is_the_prior():
    net = FractureHeatmapNet(num_classes=2, prior_probability=0.01, **LIGHT).eval()
    for module in net.modules():  # zero every weight except the head bias: output = the prior
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.zeros_(module.weight)
    prob = torch.sigmoid(net(torch.rand(1, 1, 64, 64)))
    torch.testing.assert_close(prob, torch.full_like(prob, 0.01))


def test_bottleneck_resnet50_variant_builds():
    net = FractureHeatmapNet(num_classes=2)  # the paper's ResNet-50 + FPN default
    assert 25e6 < sum(p.numel() for p in net.parameters()) < 30e6


def test_torchscript_matches_eager():
    net = FractureHeatmapNet(num_classes=2, **LIGHT).eval()
    x = torch.rand(1, 1, 64, 64)
    scripted = torch.jit.script(net)
    assert (scripted(x) - net(x)).abs().max() < 1e-5


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="4 entries"):
        FractureHeatmapNet(layers=(1, 1, 1))
