"""Multi-process helpers for ``configs/multi_gpu_distill.json``.

Under ``DistributedDataParallel`` the student's batch-norm running statistics are broadcast from rank 0 at each
forward pass, then updated by each rank's own batch. ignite's ``EMAHandler`` copies those buffers into the
teacher on every rank, so the teachers' statistics differ slightly between ranks, and a validation that gathers
per-rank results would mix several teachers. Neither ignite nor MONAI offers a handler that synchronises a
plain module's buffers, hence this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["BroadcastBuffers"]


class BroadcastBuffers:
    """Copy ``module``'s buffers (e.g. batch-norm statistics) from rank ``src`` to every rank when an engine starts.

    Attach it to the teacher's evaluator: every rank then validates the same teacher, the one rank 0 saves.
    A no-op when not running distributed.

    Args:
        module: the network whose buffers are synchronised (parameters are left alone).
        src: rank whose buffers win.
    """

    def __init__(self, module: nn.Module, src: int = 0) -> None:
        self.module = module
        self.src = src

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for buffer in self.module.buffers():
            dist.broadcast(buffer.data, src=self.src)
