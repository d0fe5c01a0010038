"""Cosine learning-rate decay: the factor's shape, the handler on an engine, and a resumed run continuing it."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import BUNDLE_ROOT
from ignite.engine import Engine, Events

from scripts.utils.lr_schedule import CosineLRHandler, cosine_factor


def test_cosine_factor_falls_from_one_to_the_final_factor_and_stays():
    assert cosine_factor(0, 10, 0.01) == pytest.approx(1.0)
    assert cosine_factor(5, 10, 0.01) == pytest.approx(0.01 + 0.99 * 0.5)
    assert cosine_factor(10, 10, 0.01) == pytest.approx(0.01)
    assert cosine_factor(25, 10, 0.01) == pytest.approx(0.01)
    values = [cosine_factor(e, 10, 0.0) for e in range(11)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    with pytest.raises(ValueError, match="decay_epochs"):
        cosine_factor(0, 0, 0.1)
    with pytest.raises(ValueError, match="final_factor"):
        cosine_factor(0, 10, 1.5)


def _rates(start_epoch: int, max_epochs: int) -> list[float]:
    """Learning rate seen in each epoch of a run that starts after ``start_epoch`` completed epochs."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.2)
    engine = Engine(lambda e, b: None)
    CosineLRHandler(optimizer, decay_epochs=4, final_factor=0.1).attach(engine)
    seen: list[float] = []
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: seen.append(optimizer.param_groups[0]["lr"]))
    if start_epoch:  # what CheckpointLoader restores on resume: the trainer's epoch, not a scheduler counter
        engine.load_state_dict({"epoch": start_epoch, "max_epochs": max_epochs, "epoch_length": 2})
    engine.run([0, 1], max_epochs=max_epochs)
    return seen


def test_handler_sets_the_rate_per_epoch_and_a_resumed_run_continues_the_schedule():
    full = _rates(0, 6)
    assert full == pytest.approx([0.2 * cosine_factor(e, 4, 0.1) for e in range(6)])
    assert full[0] == pytest.approx(0.2) and full[4] == pytest.approx(0.02) and full[5] == pytest.approx(0.02)
    assert _rates(3, 6) == pytest.approx(full[3:])
    assert math.isclose(full[2], 0.2 * (0.1 + 0.9 * 0.5))


def test_train_config_leaves_the_schedule_off_unless_asked():
    from monai.bundle import ConfigParser

    def handlers(cosine: bool) -> list:
        parser = ConfigParser()
        parser.read_config(str(BUNDLE_ROOT / "configs" / "train.json"))
        parser["lr_cosine"] = cosine
        parser["train#handlers"] = [h for h in parser["train#handlers"] if "lr_schedule" in h["_target_"]]
        return parser.get_parsed_content("train#handlers")

    assert handlers(False) == []
    (handler,) = handlers(True)
    assert isinstance(handler, CosineLRHandler) and handler.decay_epochs == 50 and handler.final_factor == 0.01
