"""Platt calibration of image scores, folded into the network's head, and the reliability statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scripts.distill.calibration import fit_platt, fold_platt_into_head
from scripts.evaluate.class_metrics import reliability
from scripts.model.network import FractureHeatmapNet


def _logit(p):
    return np.log(p) - np.log1p(-p)


def test_fit_platt_recovers_the_parameters_that_generated_the_labels():
    rng = np.random.default_rng(0)
    raw_logit = rng.normal(0.0, 2.0, size=20000)
    a_true, b_true = 0.6, -1.5
    labels = rng.random(raw_logit.size) < 1.0 / (1.0 + np.exp(-(a_true * raw_logit + b_true)))
    a, b = fit_platt(1.0 / (1.0 + np.exp(-raw_logit)), labels.astype(float))
    assert a == pytest.approx(a_true, abs=0.05) and b == pytest.approx(b_true, abs=0.08)


def test_fit_platt_needs_both_labels():
    with pytest.raises(ValueError, match="both labels"):
        fit_platt(np.array([0.2, 0.7]), np.array([1.0, 1.0]))


def test_folding_gives_a_times_logit_plus_b_per_class_and_keeps_the_maximum_where_it_was():
    torch.manual_seed(0)
    net = FractureHeatmapNet(num_classes=2, block="basic", layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), fpn_channels=8)
    net.eval()
    image = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        before = net(image)
        fold_platt_into_head(net.head[-1], a=[0.5, 2.0], b=[-1.0, 0.3])
        after = net(image)
    expected = before * torch.tensor([0.5, 2.0]).view(1, 2, 1, 1) + torch.tensor([-1.0, 0.3]).view(1, 2, 1, 1)
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(after.flatten(2).argmax(-1), before.flatten(2).argmax(-1))


def test_reliability_of_a_calibrated_and_an_overconfident_score():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 50000)
    labels = (rng.random(p.size) < p).astype(float)
    assert reliability(p, labels)["ece"] < 0.01
    overconfident = 1.0 / (1.0 + np.exp(-(_logit(p) + np.log(20.0))))  # odds x 20, as pos_weight 20 trains
    stats = reliability(overconfident, labels)
    assert stats["ece"] > 0.2
    assert sum(b["count"] for b in stats["bins"]) == p.size
    filled = [b for b in stats["bins"] if b["count"]]
    assert all(b["positive_rate"] <= b["mean_score"] + 0.02 for b in filled)  # below the diagonal everywhere


def test_handler_saves_the_calibrated_network_and_maps_the_operating_point(tmp_path):
    import json

    from ignite.engine import Engine

    from scripts.distill.aals import load_weights
    from scripts.distill.calibration import PlattCalibrationHandler

    torch.manual_seed(0)
    make = lambda: FractureHeatmapNet(  # noqa: E731
        num_classes=2, block="basic", layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), fpn_channels=8
    )
    net = make()
    source = tmp_path / "model.pt"
    torch.save(net.state_dict(), source)
    rib = {"threshold": 0.7, "fp_per_image": 0.2, "validation_sensitivity": 0.5}
    clavicle = {"threshold": None, "fp_per_image": 0.0, "validation_sensitivity": 0.0}
    point = {"classes": {"rib": rib, "clavicle": clavicle}}
    (tmp_path / "model_operating_point.json").write_text(json.dumps(point))
    handler = PlattCalibrationHandler(net, net.head[-1], str(tmp_path / "cal.pt"), ["rib", "clavicle"], str(source))
    rng = np.random.default_rng(0)
    engine = Engine(lambda e, b: None)
    handler._reset(engine)
    for _ in range(50):  # over-confident scores: half the images at 0.9 are negative
        label = rng.random(2) < 0.5
        engine.state.output = [{"image_score": torch.tensor(np.where(label, 0.95, 0.9)), "image_target": label * 1.0}]
        handler._collect(engine)
    handler._calibrate(engine)
    record = json.loads((tmp_path / "cal_calibration.json").read_text())
    a, b = record["classes"]["rib"]["a"], record["classes"]["rib"]["b"]
    mapped = json.loads((tmp_path / "cal_operating_point.json").read_text())
    assert mapped["classes"]["rib"]["threshold"] == pytest.approx(1 / (1 + np.exp(-(a * _logit(0.7) + b))), abs=1e-6)
    assert (
        mapped["classes"]["clavicle"]["threshold"] is None and mapped["calibrated_from"] == "model_operating_point.json"
    )
    assert record["classes"]["rib"]["after"]["ece"] < record["classes"]["rib"]["before"]["ece"]
    reloaded = load_weights(make(), str(tmp_path / "cal.pt"))
    torch.testing.assert_close(reloaded.head[-1].bias, net.head[-1].bias)


def test_fit_on_saturated_logits_stays_finite_and_calibrates():
    """An over-confident network (odds x 20, many image scores that round to 1.0 in float32) still gets a finite fit."""
    from scripts.distill.calibration import fit_platt_logits

    rng = np.random.default_rng(2)
    true_logit = rng.normal(-2.0, 3.0, size=3000)
    labels = (rng.random(true_logit.size) < 1.0 / (1.0 + np.exp(-true_logit))).astype(float)
    network_logit = 4.0 * true_logit + np.log(20.0)  # steep and shifted: float32 sigmoid saturates for many
    a, b = fit_platt_logits(network_logit, labels)
    assert a == pytest.approx(0.25, abs=0.03) and b == pytest.approx(-np.log(20.0) / 4.0, abs=0.15)
    separable = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])
    a, b = fit_platt_logits(separable, np.array([0, 0, 0, 1, 1, 1.0]))
    assert np.isfinite([a, b]).all() and a > 0


def test_handler_leaves_a_class_without_positives_uncalibrated(tmp_path, caplog):
    """A validation split with no clavicle fracture calibrates the rib channel and keeps the clavicle one as is."""
    import json

    from ignite.engine import Engine

    from scripts.distill.calibration import PlattCalibrationHandler

    torch.manual_seed(0)
    net = FractureHeatmapNet(num_classes=2, block="basic", layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), fpn_channels=8)
    clavicle_before = (net.head[-1].weight[1].clone(), net.head[-1].bias[1].clone())
    handler = PlattCalibrationHandler(net, net.head[-1], str(tmp_path / "cal.pt"), ["rib", "clavicle"])
    rng = np.random.default_rng(0)
    engine = Engine(lambda e, b: None)
    handler._reset(engine)
    for _ in range(40):
        rib = float(rng.random() < 0.5)
        engine.state.output = [{"image_score": torch.tensor([0.95 if rib else 0.9, 0.2]),
                                "image_target": torch.tensor([rib, 0.0])}]  # fmt: skip
        handler._collect(engine)
    handler._calibrate(engine)
    record = json.loads((tmp_path / "cal_calibration.json").read_text())
    assert (record["classes"]["clavicle"]["a"], record["classes"]["clavicle"]["b"]) == (1.0, 0.0)
    assert record["classes"]["rib"]["a"] != 1.0
    torch.testing.assert_close(net.head[-1].weight[1], clavicle_before[0])
    torch.testing.assert_close(net.head[-1].bias[1], clavicle_before[1])
    assert "left uncalibrated" in caplog.text
