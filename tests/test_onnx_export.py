"""ONNX export with MONAI's ``onnx_export`` bundle command: dynamic batch, equal to eager in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_model_zoo import LIGHT, LIGHT_OVERRIDES, monai_bundle

from scripts.model.network import FractureHeatmapNet

pytestmark = pytest.mark.slow  # ONNX export and ONNX Runtime: full tier only

onnx = pytest.importorskip("onnx", reason="optional extra: pip install -r requirements-deploy.txt")
onnxruntime = pytest.importorskip("onnxruntime", reason="optional extra: pip install -r requirements-deploy.txt")

#: The README's export command (after the file arguments): trace, name the tensors, batch axis dynamic.
CONVERTER = (
    "{'input_names': ['image'], 'output_names': ['pred'], 'dynamic_axes': {'image': {0: 'batch'}, "
    "'pred': {0: 'batch'}}, 'dynamo': False}"
)


def test_onnx_export_has_a_dynamic_batch_and_matches_eager(tmp_path):
    torch.manual_seed(0)
    network = FractureHeatmapNet(num_classes=2, **LIGHT).eval()
    torch.save(network.state_dict(), tmp_path / "model.pt")
    monai_bundle(
        "onnx_export", "network_def", "--filepath", str(tmp_path / "model.onnx"), "--ckpt_file",
        str(tmp_path / "model.pt"), "--meta_file", "configs/metadata.json", "--config_file",
        "configs/inference.json", *LIGHT_OVERRIDES, "--use_trace", "True", "--input_shape", "[1, 1, 64, 64]",
        "--converter_kwargs", CONVERTER,
    )  # fmt: skip
    model = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(model)
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert model.graph.input[0].name == "image" and batch_dim.dim_param == "batch"
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # exported with batch 1; a batch of 3 runs through the same graph
        image = torch.rand(batch, 1, 64, 64, generator=torch.Generator().manual_seed(batch))
        (onnx_out,) = session.run(["pred"], {"image": image.numpy()})
        with torch.no_grad():
            eager = network(image).numpy()
        assert onnx_out.shape == eager.shape == (batch, 2, 16, 16)
        np.testing.assert_allclose(onnx_out, eager, rtol=1e-4, atol=1e-4)
        assert np.abs(eager).max() > 1e-3  # a real output, not an all-zero map
