"""Atomic checkpoint writes, the key-metric state across resumes, ``latest`` resolution and random states."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from scripts.utils.checkpoints import (
    AtomicDiskSaver,
    RandomStates,
    SafeCheckpointSaver,
    latest_checkpoint,
    resolve_resume,
)


def _engine_with_metric(scores: list[float]) -> Engine:
    """An engine whose epoch ``e`` ends with ``state.metrics["score"] = scores[e - 1]``."""
    engine = Engine(lambda engine, batch: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _set_metric(engine):
        engine.state.metrics["score"] = scores[engine.state.epoch - 1]

    return engine


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    saver = AtomicDiskSaver(tmp_path, filename="model.pt")
    saver({"w": torch.ones(3)}, "ignored.pt")

    def broken_save(obj, stream, *args, **kwargs):
        stream.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        saver({"w": torch.zeros(3)}, "ignored.pt")
    monkeypatch.undo()
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_previous_epoch_checkpoint_is_removed_only_after_the_next_one_is_complete(tmp_path, monkeypatch):
    network = torch.nn.Linear(2, 2)
    engine = Engine(lambda engine, batch: None)
    saver = SafeCheckpointSaver(str(tmp_path), {"model": network, "trainer": engine}, save_interval=1, n_saved=1)
    saver.attach(engine)
    real_save = torch.save

    def save_or_fail(obj, stream, *args, **kwargs):
        if obj["trainer"]["iteration"] == 2:
            raise KeyboardInterrupt  # stands for a kill during the write of the epoch-2 checkpoint
        real_save(obj, stream, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_or_fail)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=2)
    # MONAI's own saver removes checkpoint_epoch=1.pt before writing epoch 2: here it is still there, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_epoch=1.pt"]
    monkeypatch.undo()
    assert torch.load(tmp_path / "checkpoint_epoch=1.pt", weights_only=True)["trainer"]["iteration"] == 1


def test_key_metric_state_survives_a_resume(tmp_path):
    network = torch.nn.Linear(2, 2)
    kwargs = {"save_key_metric": True, "key_metric_name": "score", "key_metric_filename": "model.pt"}
    first = SafeCheckpointSaver(str(tmp_path), {"model": network}, **kwargs)
    engine = _engine_with_metric([0.5, 0.8, 0.6])
    first.attach(engine)
    with torch.no_grad():
        network.weight.fill_(1.0)
    engine.run([0], max_epochs=2)  # epoch 2 (0.8) is the best
    best = network.weight.clone()
    # resume: a fresh saver, restored; the next validations score 0.7 and 0.75: worse, model.pt must stay
    resumed = SafeCheckpointSaver(str(tmp_path), {"model": network}, **kwargs)
    assert resumed.restore_key_metric() == pytest.approx(0.8)
    engine = _engine_with_metric([0.7, 0.75, 0.9])
    resumed.attach(engine)
    with torch.no_grad():
        network.weight.fill_(2.0)
    engine.run([0], max_epochs=2)
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], best)
    engine.run([0], max_epochs=3)  # 0.9 beats it
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weight"], network.weight)
    # without the restore, MONAI's comparison starts anew and the worse 0.7 would have replaced it
    plain = SafeCheckpointSaver(str(tmp_path / "plain"), {"model": network}, **kwargs)
    assert plain.restore_key_metric() is None


def test_latest_is_the_intact_checkpoint_with_most_iterations(tmp_path):
    engine = Engine(lambda engine, batch: None)
    for iteration in (4, 8):
        engine.state.iteration, engine.state.epoch_length, engine.state.max_epochs = iteration, 4, 5
        torch.save({"trainer": engine.state_dict()}, tmp_path / f"checkpoint_epoch={iteration // 4}.pt")
    torch.save({"weight": torch.ones(1)}, tmp_path / "model.pt")  # weights only: not a training checkpoint
    (tmp_path / "checkpoint_epoch=3.pt").write_bytes(b"PK\x03\x04truncated")
    (tmp_path / ".checkpoint_epoch=4.pt.abc.partial").write_bytes(b"half")
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=2.pt"
    assert resolve_resume("latest", tmp_path).endswith("checkpoint_epoch=2.pt")
    assert not (tmp_path / ".checkpoint_epoch=4.pt.abc.partial").exists()  # interrupted write cleaned up
    assert resolve_resume("latest", tmp_path / "empty") == ""  # nothing yet: a fresh start
    assert resolve_resume("", tmp_path) == ""
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        resolve_resume(str(tmp_path / "nothere.pt"), tmp_path)


def test_random_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    states = RandomStates()
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    torch.save({"random_states": states.state_dict()}, tmp_path / "c.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    states.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True)["random_states"])
    assert torch.equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_other_ranks_get_their_own_random_stream_after_a_resume(tmp_path, monkeypatch):
    states = RandomStates()
    torch.manual_seed(1)
    saved = states.state_dict()  # rank 0's, as in the checkpoint
    states.load_state_dict(saved)
    rank0 = torch.rand(3)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    draws = []
    for rank in (1, 2, 1):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        states.load_state_dict(saved)
        draws.append(torch.rand(3))
    assert not torch.equal(draws[0], rank0) and not torch.equal(draws[0], draws[1])
    assert torch.equal(draws[0], draws[2])  # deterministic given the checkpoint and the rank
