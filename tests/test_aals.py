"""AALS sharpening properties, the teacher-target handler, and the EMA teacher."""

import copy
import json

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler

from scripts.distill.aals import AALSTargetHandler, make_target_fn, sharpen
from scripts.model.network import FractureHeatmapNet

LIGHT = {"block": "basic", "layers": (1, 1, 1, 1), "widths": (8, 16, 32, 64), "fpn_channels": 16}


def _map(values, dtype=torch.float32):
    """A (1, 1, 1, N) probability map."""
    return torch.tensor(values, dtype=dtype).reshape(1, 1, 1, -1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_t_is_a_fixed_point_and_output_never_below_input(dtype):
    prob = torch.rand(2, 2, 8, 8, dtype=dtype)
    prob[0, 0, 0, 0] = 0.4
    out = sharpen(prob, a0=4.0, t=0.4)
    assert out.dtype == dtype and out.shape == prob.shape
    assert torch.isclose(out[0, 0, 0, 0], torch.tensor(0.4, dtype=dtype))
    assert (out >= prob).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extremes_are_finite_and_kept(dtype):
    out = sharpen(_map([0.0, 1.0, 0.5], dtype), a0=6.0)
    assert torch.isfinite(out).all()
    assert out[0, 0, 0, 1] == 1.0 and 0.0 <= float(out[0, 0, 0, 0]) < 1e-3


def test_monotone_in_the_input():
    prob = torch.linspace(0, 0.6, 61).reshape(1, 1, 1, -1)
    out = sharpen(prob, a0=4.0)
    assert (out[..., 1:] >= out[..., :-1]).all()


def test_values_above_t_are_raised_and_below_t_unchanged():
    out = sharpen(_map([0.2, 0.45, 0.6]), a0=4.0, t=0.4)
    assert out[0, 0, 0, 0] == pytest.approx(0.2)  # below t: S lowers it, the max keeps it
    assert out[0, 0, 0, 1] > 0.45 and out[0, 0, 0, 2] > 0.6


def test_hand_computed_value():
    # y = 0.6 in a map with y_max = 0.6: a = 4 - 3 * 0.6 = 2.2; S = expit(2.2 logit(0.6) - 1.2 logit(0.4))
    logit = lambda p: torch.log(torch.tensor(p / (1 - p)))  # noqa: E731
    expected = torch.sigmoid(2.2 * logit(0.6) - 1.2 * logit(0.4))
    assert float(sharpen(_map([0.6]), a0=4.0)[0, 0, 0, 0]) == pytest.approx(float(expected), abs=1e-6)


def test_strength_falls_as_the_map_maximum_rises():
    """The same pixel value is raised less when the teacher is surer elsewhere in the map."""
    unsure = sharpen(_map([0.5, 0.5]), a0=4.0)[0, 0, 0, 0]
    sure = sharpen(_map([0.5, 0.9]), a0=4.0)[0, 0, 0, 0]
    certain = sharpen(_map([0.5, 1.0]), a0=4.0)
    assert unsure > sure > 0.5
    torch.testing.assert_close(certain, _map([0.5, 1.0]))  # a = 1 at y_max = 1: unchanged


def test_variants():
    prob = _map([0.1, 0.45, 0.7])
    torch.testing.assert_close(make_target_fn("plain")(prob), prob)
    symmetric = make_target_fn("symmetric", a0=3.0)(prob)
    assert symmetric[0, 0, 0, 0] < 0.1 and symmetric[0, 0, 0, 2] > 0.7  # lowers below 0.5, raises above
    fixed = make_target_fn("asymmetric_fixed", a0=3.0)(prob)
    assert (fixed >= prob).all()
    torch.testing.assert_close(make_target_fn("aals", a0=3.0)(prob), sharpen(prob, 3.0))
    with pytest.raises(ValueError, match="unknown target variant"):
        make_target_fn("hard")


def test_pseudo_label_variant_is_the_teacher_map_thresholded_at_t():
    prob = _map([0.1, 0.39, 0.41, 0.9])
    target = make_target_fn("pseudo_label", t=0.4)(prob)
    assert target.flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    assert make_target_fn("pseudo_label", t=0.05)(prob).flatten().tolist() == [1.0, 1.0, 1.0, 1.0]


def test_boxes_variant_leaves_every_target_as_it_is():
    assert make_target_fn("boxes") is None
    batch = _batch()
    batch["label"][0, 0, 2:4, 2:4] = 1.0  # a P image whose boxes the oracle datalist kept
    before = batch["label"].clone()
    engine = Engine(lambda e, b: None)
    engine.state.batch = batch
    AALSTargetHandler(FractureHeatmapNet(), None)(engine)
    torch.testing.assert_close(engine.state.batch["label"], before)


def _batch():
    return {
        "image": torch.rand(3, 1, 32, 32),
        "label": torch.zeros(3, 2, 8, 8),
        "image_label": torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]),
        "subset": ["P", "R", "N"],
    }


def test_handler_rewrites_only_p_targets_and_keeps_negative_classes_zero():
    torch.manual_seed(0)
    teacher = FractureHeatmapNet(num_classes=2, **LIGHT)
    handler = AALSTargetHandler(teacher, make_target_fn("aals", a0=4.0))
    batch = _batch()
    batch["label"][1, 0, 2, 2] = 1.0  # R image's box target
    original = batch["label"].clone()
    engine = Engine(lambda e, b: None)
    engine.state.batch = batch
    handler(engine)
    new = engine.state.batch["label"]
    torch.testing.assert_close(new[1:], original[1:])  # R and N untouched
    assert (new[0, 1] == 0).all()  # clavicle is negative in the image-level label
    with torch.no_grad():
        expected = sharpen(torch.sigmoid(teacher.eval()(batch["image"][:1])), 4.0)[0, 0]
    torch.testing.assert_close(new[0, 0], expected)


def test_teacher_gets_no_gradient_and_student_does():
    torch.manual_seed(0)
    student = FractureHeatmapNet(num_classes=2, **LIGHT)
    ema = EMAHandler(student, momentum=0.5)
    handler = AALSTargetHandler(ema.ema_model, make_target_fn("aals"))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)

    def step(engine, batch):
        student.train()
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(student(batch["image"]), batch["label"])
        loss.backward()
        engine.state.student_grad = sum(p.grad.abs().sum() for p in student.parameters() if p.grad is not None)
        optimizer.step()
        return loss.item()

    engine = Engine(step)
    engine.add_event_handler(Events.ITERATION_STARTED, handler)
    ema.attach(engine)
    engine.run([_batch()], max_epochs=1)
    assert engine.state.student_grad > 0
    assert all(p.grad is None for p in ema.ema_model.parameters())
    assert not any(p.requires_grad for p in ema.ema_model.parameters())


def test_ema_teacher_starts_at_the_loaded_weights_and_moves_towards_the_student():
    torch.manual_seed(0)
    stage1 = FractureHeatmapNet(num_classes=2, **LIGHT)
    student = copy.deepcopy(stage1)
    ema = EMAHandler(student, momentum=0.1)
    teacher = ema.ema_model
    for p_teacher, p_stage1 in zip(teacher.parameters(), stage1.parameters(), strict=True):
        torch.testing.assert_close(p_teacher, p_stage1)
    with torch.no_grad():  # the student takes a step away
        for p in student.parameters():
            p.add_(1.0)
    engine = Engine(lambda e, b: None)
    ema.attach(engine)
    engine.run([0], max_epochs=1)
    p_teacher, p_stage1 = next(teacher.parameters()), next(stage1.parameters())
    torch.testing.assert_close(p_teacher, p_stage1 + 0.1)  # ema = 0.9 * ema + 0.1 * student


class _ConstantTeacher(torch.nn.Module):
    """A 'teacher' whose probability map is ``prob`` everywhere (logits in, shape (B, 2, 8, 8))."""

    def __init__(self, prob: float) -> None:
        super().__init__()
        self.logit = float(torch.logit(torch.tensor(prob)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.full((image.shape[0], 2, 8, 8), self.logit)


@pytest.mark.parametrize(("prob", "raised"), [(0.6, 1.0), (0.2, 0.0)])
def test_handler_writes_per_epoch_statistics_of_teacher_and_target_maxima(tmp_path, prob, raised):
    """Above t AALS raises the map (share_raised 1); below t it keeps it (share 0): the stats file says which."""
    stats = tmp_path / "runs" / "aals_stats.jsonl"
    handler = AALSTargetHandler(_ConstantTeacher(prob), make_target_fn("aals", a0=4.0, t=0.4), stats_file=str(stats))
    engine = Engine(lambda e, b: None)
    handler.attach(engine)
    engine.run([_batch(), _batch()], max_epochs=2)
    records = [json.loads(line) for line in stats.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0]["num_maps"] == 2  # one P image per batch, one positive class
    assert records[0]["teacher_max_quartiles"] == pytest.approx([prob] * 3, abs=1e-5)
    expected = float(sharpen(torch.full((1, 1, 8, 8), prob), 4.0, 0.4).max())
    assert records[0]["target_max_quartiles"] == pytest.approx([expected] * 3, abs=1e-5)
    assert records[0]["share_raised"] == raised
