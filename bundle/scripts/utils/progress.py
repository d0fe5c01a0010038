"""Progress that reads well in a terminal and in a log file.

A tqdm bar redraws one line with carriage returns: right in a terminal, but a CI log, ``nohup.out`` or a cluster
job's output file receives hundreds of updates glued into one line. When the output is not a terminal the bundle
writes plain, periodic log lines instead (:class:`PeriodicProgress`): count, share, rate and time left, about every
10 % and at least every :data:`MAX_SILENCE_S` seconds, through ``logging`` so that the log handlers format them.

:func:`progress_handler` gives the inference engine ignite's ``ProgressBar`` in a terminal and a
:class:`ProgressLogHandler` otherwise; :class:`scripts.data.cache.CheckedCacheDataset` uses
:class:`PeriodicProgress` while it reads the training images.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["MAX_SILENCE_S", "PeriodicProgress", "ProgressLogHandler", "is_terminal", "progress_handler"]

logger = logging.getLogger(__name__)

#: Longest time between two progress lines when the output is not a terminal, in seconds.
MAX_SILENCE_S = 60.0


def is_terminal(stream: IO | None = None) -> bool:
    """Whether ``stream`` (default: ``sys.stderr``, where tqdm draws) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced by an object without isatty
        return False


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class PeriodicProgress:
    """Log ``<desc>: <done>/<total> <unit> (<percent> %), <rate> <unit>/s, <time> left`` now and then.

    A line is written when ``done`` crosses the next tenth of ``total``, or when :data:`MAX_SILENCE_S` seconds have
    passed since the last line, and always for the last item.

    Args:
        total: number of items (``None`` or 0 when unknown: counts and rates only).
        desc: what is being done, e.g. ``"inference"``.
        unit: what is counted, plural, e.g. ``"images"``.
        every: share of ``total`` between lines (0.1: about ten lines).
        max_silence: seconds after which a line is written anyway.
        log: the logger to write to.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str = "images",
        every: float = 0.1,
        max_silence: float = MAX_SILENCE_S,
        log: logging.Logger | None = None,
    ) -> None:
        self.total = int(total or 0)
        self.desc, self.unit = desc, unit
        self.step = max(1, int(self.total * every)) if self.total else 0
        self.max_silence = max_silence
        self.log = log or logger
        self.done = 0
        self.started = self.last_time = time.monotonic()
        self.next_count = self.step
        self._lock = threading.Lock()  # CacheDataset reads with a thread pool

    def update(self, count: int = 1) -> None:
        """Add ``count`` finished items; write a line when one is due."""
        with self._lock:
            self.done += count
            now = time.monotonic()
            last = bool(self.total) and self.done >= self.total
            due = (self.step and self.done >= self.next_count) or now - self.last_time >= self.max_silence
            if not (due or last):
                return
            while self.step and self.next_count <= self.done:
                self.next_count += self.step
            self.last_time = now
            text = self.line(now)
        self.log.info("%s", text)

    def line(self, now: float | None = None) -> str:
        """The progress line for the current count."""
        elapsed = (time.monotonic() if now is None else now) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.desc}: {self.done}"
        if self.total:
            text += f"/{self.total} {self.unit} ({100.0 * self.done / self.total:.0f} %)"
        else:
            text += f" {self.unit}"
        text += f", {rate:.1f} {self.unit}/s"
        if self.total and self.done < self.total and rate > 0:
            text += f", {_duration((self.total - self.done) / rate)} left"
        elif self.total and self.done >= self.total:
            text += f", done in {_duration(elapsed)}"
        return text


class ProgressLogHandler:
    """ignite handler: :class:`PeriodicProgress` over an engine's iterations (one per epoch).

    Args:
        desc: what the engine does, e.g. ``"inference"``.
        unit: what one iteration is, plural (``"images"`` for inference at batch size 1).
    """

    def __init__(self, desc: str = "progress", unit: str = "iterations") -> None:
        self.desc, self.unit = desc, unit
        self.progress: PeriodicProgress | None = None

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._update)

    def _start(self, engine: Engine) -> None:
        self.progress = PeriodicProgress(engine.state.epoch_length, self.desc, self.unit)

    def _update(self, engine: Engine) -> None:
        if self.progress is not None:
            self.progress.update()


def progress_handler(desc: str = "progress", unit: str = "iterations", **bar_args: Any) -> Any:
    """ignite's ``ProgressBar`` when stderr is a terminal, else a :class:`ProgressLogHandler` (plain lines).

    Args:
        desc: what the engine does (the bar's ``desc``, the lines' prefix).
        unit: what one iteration is, plural, for the plain lines.
        bar_args: further ``ProgressBar`` arguments (e.g. ``persist=True``), used in a terminal only.
    """
    if is_terminal():
        from ignite.handlers import ProgressBar

        return ProgressBar(desc=desc, **bar_args)
    return ProgressLogHandler(desc, unit)
