"""Cosine learning-rate decay over epochs, derived from the trainer's epoch so that a resumed run continues it.

torch's and ignite's schedulers keep their own step counter, which would need an entry in the training checkpoint
(and a checkpoint written without one could no longer be resumed). This handler instead sets the rate at every
epoch start from ``engine.state.epoch``, which the checkpoint already restores: the schedule is a pure function of
the epoch, so nothing else needs saving.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["CosineLRHandler", "cosine_factor"]

logger = logging.getLogger(__name__)


def cosine_factor(epochs_done: int, decay_epochs: int, final_factor: float) -> float:
    """Learning-rate factor after ``epochs_done`` epochs: 1 at 0, ``final_factor`` from ``decay_epochs`` on.

    ``final_factor + (1 - final_factor) * (1 + cos(pi * epochs_done / decay_epochs)) / 2``, held at
    ``final_factor`` once ``epochs_done >= decay_epochs``.
    """
    if decay_epochs <= 0:
        raise ValueError(f"decay_epochs must be positive, got {decay_epochs}.")
    if not 0.0 <= final_factor <= 1.0:
        raise ValueError(f"final_factor must be in [0, 1], got {final_factor}.")
    progress = min(max(epochs_done, 0) / decay_epochs, 1.0)
    return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class CosineLRHandler:
    """Set every parameter group's learning rate to ``initial * cosine_factor(epoch - 1)`` at ``EPOCH_STARTED``.

    Args:
        optimizer: the trainer's optimizer; the rates it holds when this handler is built are the initial rates.
        decay_epochs: epochs over which the rate falls to ``final_factor`` times its initial value (usually the
            trainer's ``max_epochs``); later epochs keep the final rate.
        final_factor: final rate as a fraction of the initial one.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, decay_epochs: int, final_factor: float = 0.01) -> None:
        cosine_factor(0, decay_epochs, final_factor)  # validates the arguments
        self.optimizer = optimizer
        self.decay_epochs = int(decay_epochs)
        self.final_factor = float(final_factor)
        self.initial_rates = [float(group["lr"]) for group in optimizer.param_groups]

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        factor = cosine_factor(engine.state.epoch - 1, self.decay_epochs, self.final_factor)
        for group, initial in zip(self.optimizer.param_groups, self.initial_rates, strict=True):
            group["lr"] = initial * factor
        logger.info("epoch %d: learning rate x %.4f (cosine decay)", engine.state.epoch, factor)
