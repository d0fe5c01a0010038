"""The training benchmark's throughput parser and result merging (the benchmark itself is run by hand)."""

from __future__ import annotations

import pytest
from benchmark_training import merge_results, samples_per_second

LOG = """\
2026-11-27 07:00:00,000 - INFO - Epoch: 1/3, Iter: 1/2 -- train_loss: 0.9
2026-11-27 07:00:05,000 - INFO - Epoch: 1/3, Iter: 2/2 -- train_loss: 0.8
2026-11-27 07:00:05,500 - ignite.engine.engine.SupervisedTrainer - INFO - Epoch[1] Complete. Time taken: 00:00:05.500
2026-11-27 07:00:07,000 - INFO - Epoch: 2/3, Iter: 1/2 -- train_loss: 0.7
2026-11-27 07:00:08,000 - INFO - Epoch: 2/3, Iter: 2/2 -- train_loss: 0.6
2026-11-27 07:00:09,000 - INFO - Epoch: 3/3, Iter: 1/2 -- train_loss: 0.5
2026-11-27 07:00:10,000 - INFO - Epoch: 3/3, Iter: 2/2 -- train_loss: 0.4
"""


def test_throughput_skips_the_first_epoch_and_counts_epoch_boundaries():
    rate, iterations = samples_per_second(LOG, batch_size=8)
    assert iterations == 4
    assert rate == pytest.approx(4 * 8 / 5.0)  # 4 iterations x 8 samples from 07:00:05 to 07:00:10


def test_throughput_needs_two_epochs():
    with pytest.raises(RuntimeError, match="two epochs"):
        samples_per_second(LOG.splitlines()[0], batch_size=8)


def test_results_are_merged_by_device_network_and_amp(tmp_path):
    path = tmp_path / "results.json"
    merge_results({"device": "cpu", "network": "light", "amp": False, "stage1_samples_per_s": 1.0}, path)
    merge_results({"device": "gpu", "network": "light", "amp": True, "stage1_samples_per_s": 50.0}, path)
    runs = merge_results({"device": "cpu", "network": "light", "amp": False, "stage1_samples_per_s": 2.0}, path)
    assert [(r["device"], r["stage1_samples_per_s"]) for r in runs] == [("gpu", 50.0), ("cpu", 2.0)]
