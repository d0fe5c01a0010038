"""BroadcastBuffers: every rank ends with rank 0's batch-norm statistics; parameters are untouched."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import BUNDLE_ROOT
from torch import nn

from scripts.utils.distributed import BroadcastBuffers


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, results: dict) -> None:
    import sys

    sys.path.insert(0, str(BUNDLE_ROOT))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        module = nn.BatchNorm2d(3)
        module.running_mean.fill_(float(rank + 1))
        module.num_batches_tracked.fill_(10 * (rank + 1))
        module.weight.data.fill_(float(rank + 1))
        BroadcastBuffers(module)()
        results[rank] = (module.running_mean.tolist(), int(module.num_batches_tracked), module.weight.tolist())
    finally:
        dist.destroy_process_group()


def test_buffers_follow_rank0_and_parameters_stay():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(2, _free_port(), results), nprocs=2, join=True)
        results = dict(results)
    assert results[0][:2] == results[1][:2] == ([1.0, 1.0, 1.0], 10)
    assert results[1][2] == [2.0, 2.0, 2.0]  # parameters are not broadcast


def test_no_op_without_a_process_group():
    module = nn.BatchNorm2d(2)
    module.running_var.fill_(3.0)
    BroadcastBuffers(module)()
    assert torch.equal(module.running_var, torch.full((2,), 3.0))
