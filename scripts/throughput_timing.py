"""The throughput benchmark's instruments: a clock, a timed proxy and phase stamps on an ignite engine.

Every figure of ``scripts/benchmark_throughput.py`` is a difference of two ``(wall s, process-CPU s)`` readings of
:class:`Clock`; cores used are CPU seconds over wall seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

#: Training step phases, in order, between the stamps taken by :class:`StepTimer`.
PHASES = ("data", "augmentation", "transfer_and_teacher", "forward", "loss", "backward", "optimizer", "handlers")


class Clock:
    """Wall and process-CPU time; waits for the GPU first, so that a stamp closes the work queued before it."""

    def __init__(self, device: torch.device) -> None:
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def __call__(self) -> tuple[float, float]:
        self.sync()
        return time.perf_counter(), time.process_time()


class TimedCall:
    """Callable proxy that adds up its calls' wall and CPU seconds in ``wall`` and ``cpu`` (for the augmentation)."""

    def __init__(self, function: Callable, clock: Clock) -> None:
        self.function, self.clock = function, clock
        self.wall = self.cpu = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = self.clock()
        result = self.function(*args, **kwargs)
        end_wall, end_cpu = self.clock()
        self.wall, self.cpu = self.wall + end_wall - wall, self.cpu + end_cpu - cpu
        return result


class StepTimer:
    """Stamps an ignite engine's events and turns them into per-iteration phase times (wall and CPU seconds).

    Attach after every other handler: its ``ITERATION_STARTED`` and ``ITERATION_COMPLETED`` stamps then close
    those events' handlers. ``augmentation`` is the :class:`TimedCall` around the batch augmentation (None for
    an evaluator), whose time is taken out of the ``ITERATION_STARTED`` span.
    """

    def __init__(self, engine: Engine, clock: Clock, augmentation: TimedCall | None = None) -> None:
        self.clock, self.augmentation = clock, augmentation
        self.stamps: dict[str, tuple[float, float]] = {}
        self.iterations: list[dict[str, tuple[float, float]]] = []
        events = {
            "get_batch": Events.GET_BATCH_STARTED,
            "got_batch": Events.GET_BATCH_COMPLETED,
            "started": Events.ITERATION_STARTED,
            "forward": IterationEvents.FORWARD_COMPLETED,
            "loss": IterationEvents.LOSS_COMPLETED,
            "backward": IterationEvents.BACKWARD_COMPLETED,
            "model": IterationEvents.MODEL_COMPLETED,
            "completed": Events.ITERATION_COMPLETED,
        }
        for name, event in events.items():
            try:
                engine.add_event_handler(event, self._stamp, name)
            except ValueError:  # an event this engine does not fire (an evaluator has no backward)
                continue

    def _stamp(self, engine: Engine, name: str) -> None:
        if name == "get_batch":
            self._aug_before = (self.augmentation.wall, self.augmentation.cpu) if self.augmentation else (0.0, 0.0)
        self.stamps[name] = self.clock()
        if name == "completed":
            aug = (self.augmentation.wall, self.augmentation.cpu) if self.augmentation else (0.0, 0.0)
            self.stamps["aug"] = (aug[0] - self._aug_before[0], aug[1] - self._aug_before[1])
            self.iterations.append(self.stamps)
            self.stamps = {}

    def reset(self) -> None:
        self.iterations = []

    def phases(self, skip_first: bool = True) -> list[dict[str, tuple[float, float]]]:
        """Per iteration: ``{phase: (wall s, cpu s)}`` and ``total``; the first of each run is left out."""
        rows = []
        for stamps in self.iterations[1 if skip_first else 0 :]:
            # Consecutive stamps that this engine fired: an evaluator has no loss, backward or optimizer step.
            # MONAI runs a workflow's post-processing at MODEL_COMPLETED (part of "optimizer" for a trainer).
            names = [name for name in _STAMP_ORDER if name in stamps]
            pairs = zip(names, names[1:], strict=False)
            row = {_PHASE_OF_STAMP[b]: difference(stamps[b], stamps[a]) for a, b in pairs}
            if "optimizer" in row and "backward" not in row:  # an evaluator: MODEL_COMPLETED closes post-processing
                row["postprocessing"] = row.pop("optimizer")
            started = row.pop("iteration_started")
            row["augmentation"] = stamps["aug"]
            row["transfer_and_teacher"] = difference(started, stamps["aug"])
            row["total"] = difference(stamps["completed"], stamps["get_batch"])
            rows.append(row)
        return rows


_STAMP_ORDER = ("get_batch", "got_batch", "started", "forward", "loss", "backward", "model", "completed")
#: The phase that ends at each stamp.
_PHASE_OF_STAMP = {"got_batch": "data", "started": "iteration_started", "forward": "forward", "loss": "loss",
                   "backward": "backward", "model": "optimizer", "completed": "handlers"}  # fmt: skip


def difference(end: tuple[float, float], start: tuple[float, float]) -> tuple[float, float]:
    """``end - start`` of two ``(wall s, CPU s)`` readings."""
    return end[0] - start[0], end[1] - start[1]
