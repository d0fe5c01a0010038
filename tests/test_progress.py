"""Progress as plain periodic lines when the output is not a terminal (CI logs, nohup, cluster jobs)."""

from __future__ import annotations

import io
import logging

import torch
from monai.transforms import Compose, Lambdad

from scripts.data.cache import CheckedCacheDataset
from scripts.utils.progress import PeriodicProgress, ProgressLogHandler, progress_handler


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_periodic_lines_about_every_tenth_and_at_the_end(caplog):
    with caplog.at_level(logging.INFO, logger="scripts.utils.progress"):
        progress = PeriodicProgress(95, "inference", "images")
        for _ in range(95):
            progress.update()
    lines = [record.getMessage() for record in caplog.records]
    assert 9 <= len(lines) <= 11 and all("\r" not in line for line in lines)
    assert lines[0].startswith("inference: 9/95 images (9 %), ") and "left" in lines[0]
    assert lines[-1].startswith("inference: 95/95 images (100 %), ") and "done in" in lines[-1]


def test_a_line_at_least_every_max_silence_seconds(caplog):
    with caplog.at_level(logging.INFO, logger="scripts.utils.progress"):
        progress = PeriodicProgress(None, "reading", "images", max_silence=0.0)  # unknown total: counts only
        progress.update()
        progress.update()
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["reading: 1 images", "reading: 2 images"]


def test_bar_in_a_terminal_lines_elsewhere(monkeypatch):
    from ignite.handlers import ProgressBar

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(progress_handler("inference", "images", persist=True), ProgressLogHandler)
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert isinstance(progress_handler("inference", "images", persist=True), ProgressBar)


def test_reading_the_training_cache_writes_lines_not_a_bar(monkeypatch, caplog):
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    data = [{"image": torch.zeros(1, 4, 4)} for _ in range(20)]
    with caplog.at_level(logging.INFO, logger="scripts.utils.progress"):
        dataset = CheckedCacheDataset(data, Compose([Lambdad("image", lambda x: x + 1)]), desc="training data")
    assert not dataset.progress
    assert any(r.getMessage().startswith("reading training data: 20/20 images (100 %)") for r in caplog.records)
