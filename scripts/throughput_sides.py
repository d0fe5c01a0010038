"""What the throughput benchmark measures: the bundle's stages built from its configs, and what they are compared with.

:class:`TrainingSide` (stage 1 or 2, ``SupervisedTrainer`` from ``train.json`` [+ ``distill.json``]) against
:class:`BareStep` (the same network, loss and optimizer on one in-memory batch); :class:`InferenceSide`
(``inference.json``'s evaluator over DICOM files) against its bare forward pass; and the real
``python -m monai.bundle run inference`` command in a subprocess for its wall time and peak memory
(:func:`inference_peak_rss`).
"""

from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from repo_paths import BUNDLE_ROOT, REPO_ROOT

import torch
from bundle_command import bundle_command
from monai.bundle import ConfigParser
from throughput_settings import CONFIGS
from throughput_timing import Clock, StepTimer, TimedCall, difference

__all__ = ["BareStep", "InferenceSide", "TrainingSide", "build", "inference_peak_rss"]


def build(configs: list[str], overrides: dict[str, Any]) -> ConfigParser:
    """A bundle config parser for ``configs`` (names in ``bundle/configs``) with ``overrides``, initialised."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in configs])
    parser.read_meta(str(CONFIGS / "metadata.json"))
    parser.update({"bundle_root": str(BUNDLE_ROOT), **overrides})
    parser.get_parsed_content("initialize")  # as `monai.bundle run` does first: seeds, flush-denormal mode
    return parser


class TrainingSide:
    """One training stage built from the bundle configs, run one epoch at a time."""

    def __init__(self, configs: list[str], overrides: dict[str, Any], clock: Clock, stage2: bool) -> None:
        self.parser = build(configs, overrides)
        self.trainer = self.parser.get_parsed_content("train#trainer")
        handler = self.parser.get_parsed_content("train#handlers")[0]
        self.augmentation = TimedCall(handler.augmentation, clock)
        handler.augmentation = self.augmentation
        if stage2:  # the stage handlers (EMA teacher, AALS targets, teacher validation), as the "run" list attaches
            for stage_handler in self.parser.get_parsed_content("stage_handlers"):
                stage_handler.attach(self.trainer)
        self.timer = StepTimer(self.trainer, clock, self.augmentation)

    def epoch(self) -> list[dict[str, tuple[float, float]]]:
        self.timer.reset()
        self.trainer.state.max_epochs = (self.trainer.state.epoch or 0) + 1
        self.trainer.run()
        return self.timer.phases()


class BareStep:
    """Forward + loss + backward + optimizer step on one in-memory batch, as ``SupervisedTrainer`` does them."""

    def __init__(self, side: TrainingSide, amp: bool, clock: Clock) -> None:
        trainer = side.trainer
        self.network, self.loss, self.optimizer = trainer.network, trainer.loss_function, trainer.optimizer
        self.scaler = trainer.scaler if amp else None
        self.amp, self.clock = amp, clock
        self.device = trainer.state.device
        batch = next(iter(trainer.data_loader))
        image, label = side.augmentation.function(batch["image"].to(self.device), batch["label"].to(self.device))
        self.image, self.label = image, label

    def step(self) -> dict[str, tuple[float, float]]:
        """One step; wall and CPU seconds of its phases, split where ``SupervisedTrainer`` fires its events."""
        stamps = [self.clock()]
        with torch.autocast(self.device.type, enabled=self.amp):
            prediction = self.network(self.image)
            stamps.append(self.clock())
            loss = self.loss(prediction, self.label)
        stamps.append(self.clock())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            stamps.append(self.clock())
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            stamps.append(self.clock())
            self.optimizer.step()
        stamps.append(self.clock())
        names = ("forward", "loss", "backward", "optimizer")
        row = {name: difference(b, a) for name, a, b in zip(names, stamps[:-1], stamps[1:], strict=True)}
        row["total"] = difference(stamps[-1], stamps[0])
        return row

    def times(self, iterations: int) -> list[dict[str, tuple[float, float]]]:
        self.network.train()
        self.step()  # warm-up, not timed
        return [self.step() for _ in range(iterations)]


class InferenceSide:
    """``inference.json``'s evaluator over a folder of DICOM files, and the bare forward pass it is compared with."""

    def __init__(self, configs: list[str], overrides: dict[str, Any], clock: Clock) -> None:
        self.parser = build(configs, overrides)
        self.evaluator = self.parser.get_parsed_content("evaluator")
        self.timer = StepTimer(self.evaluator, clock)
        self.network = self.parser.get_parsed_content("network")
        self.preprocessing = self.parser.get_parsed_content("preprocessing")
        self.items = list(self.parser.get_parsed_content("datalist"))
        size = int(self.parser.get_parsed_content("image_size"))
        batch = int(self.parser.get_parsed_content("dataloader#batch_size"))
        self.image = torch.rand(batch, 1, size, size, device=self.parser.get_parsed_content("device"))
        self.amp, self.clock, self.batch_size = bool(self.parser.get_parsed_content("amp")), clock, batch

    def run(self) -> tuple[float, float, list[dict[str, tuple[float, float]]]]:
        """One pass over the folder: images per second in steady state and overall, and per-image phases.

        Steady state runs from the end of the second image to the end of the last, leaving out what a long
        archive amortises (checkpoint loading, data-loader worker start-up, filling the prefetch queue);
        overall is the whole ``evaluator.run()``.
        """
        self.timer.reset()
        start = self.clock()
        self.evaluator.run()
        seconds = self.clock()[0] - start[0]
        ends = [stamps["completed"][0] for stamps in self.timer.iterations]
        steady = (len(ends) - 2) / (ends[-1] - ends[1])
        return steady, len(self.items) / seconds, self.timer.phases(skip_first=True)

    def bare_forward(self, iterations: int) -> list[tuple[float, float]]:
        self.network.eval()
        out = []
        with torch.no_grad(), torch.autocast(self.image.device.type, enabled=self.amp):
            self.network(self.image)
            for _ in range(iterations):
                start = self.clock()
                self.network(self.image)
                out.append(difference(self.clock(), start))
        return out

    def preprocessing_breakdown(self) -> dict[str, tuple[float, float]]:
        """Wall and CPU seconds per image of each preprocessing transform, run in this process."""
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for item in self.items:
            data = dict(item)
            for transform in self.preprocessing.transforms:
                start = self.clock()
                data = transform(data)
                wall, cpu = difference(self.clock(), start)
                name = type(transform).__name__
                totals[name][0] += wall / len(self.items)
                totals[name][1] += cpu / len(self.items)
        return {name: (wall, cpu) for name, (wall, cpu) in totals.items()}


def _peak_rss_mb(pid: int) -> tuple[float, float]:
    """``VmHWM`` (peak resident memory, MB) of process ``pid`` and the sum over its descendants (loader workers)."""

    def hwm(process: int) -> float:
        try:
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def descendants(process: int) -> list[int]:
        found = []
        for children in Path(f"/proc/{process}/task").glob("*/children"):
            try:
                found += [int(child) for child in children.read_text().split()]
            except OSError:
                continue
        return found + [grand for child in found for grand in descendants(child)]

    return hwm(pid), sum(hwm(child) for child in descendants(pid))


def inference_peak_rss(preset: dict, common: dict, dicoms: Path, work: Path, checkpoint: Path) -> dict[str, float]:
    """Wall time and peak resident memory of the real ``monai.bundle run inference`` command (a subprocess).

    Linux keeps a process's peak (``VmHWM``) per address space, so it is read from ``/proc`` while the command
    runs (every 0.1 s; the last reading before exit stands): ``getrusage`` would report this benchmark's own peak,
    which a child inherits through ``fork``. Workers' peaks are summed separately (an upper bound: they need not
    peak together).
    """
    overrides = {**common, "dataset_dir": dicoms, "ckpt_path": checkpoint, "output_dir": work / "inference_cli",
                 "write_overlays": False}  # fmt: skip
    log = work / "inference_cli.log"
    start = time.perf_counter()
    main_peak = workers_peak = 0.0
    with log.open("w") as handle:
        process = subprocess.Popen(bundle_command("inference", ["inference.json", *preset["configs"]], overrides),
                                   cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
        while process.poll() is None:
            own, workers = _peak_rss_mb(process.pid)
            main_peak, workers_peak = max(main_peak, own), max(workers_peak, workers)
            time.sleep(0.1)
    if process.returncode != 0:
        raise RuntimeError(f"inference command failed, see {log}")
    return {"wall_s": round(time.perf_counter() - start, 1), "peak_rss_mb": round(main_peak),
            "workers_peak_rss_mb": round(workers_peak)}  # fmt: skip
