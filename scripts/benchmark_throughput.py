"""Throughput as ratios: the bundle's training and inference against what the network itself allows, one run.

Absolute samples per second differ about 4x between the machines this project runs on, so this benchmark
measures, in one process, interleaved round by round so that machine noise hits every side alike:

* ``bare step``: forward + loss + backward + optimizer step of the bundle's network on one batch already in
  memory (the same network object, loss, optimizer, batch size, input size and threads as the trainer);
* ``stage 1``: ``SupervisedTrainer`` built from ``train.json``: the real sampler, cached data set, batched
  augmentation and every per-iteration handler (no validation, no checkpoints: those are per epoch);
* ``stage 2``: the same with ``distill.json``: EMA teacher pass and AALS targets on the P images;
* ``bare forward``: the network's forward pass at the inference batch size (1) on an in-memory image;
* ``inference``: the ``SupervisedEvaluator`` of ``inference.json`` over a folder of DICOM files at clinical size
  (phantoms of about 2,400 x 2,500 pixels, 12 bits), decoding, intensity scaling, letterboxing, forward,
  detections and one JSON file per image (``write_overlays`` false: DICOM to JSON).

and breaks one step down into phases (seconds and cores used, from process CPU time over wall time):
data loading, augmentation, host-to-device transfer + teacher (``ITERATION_STARTED`` handlers other than the
augmentation), forward, loss, backward (with ``zero_grad``), optimizer, per-iteration handlers. Each
inference preprocessing transform is timed on its own. The real ``python -m monai.bundle run inference`` command
is run once more in a subprocess for its peak resident memory and wall time.

Results go to ``bundle/docs/benchmark_throughput.json`` and the table between the ``throughput`` markers of
the model card (``bundle/docs/README.md``).

Examples::

    .venv/bin/python scripts/benchmark_throughput.py                        # light and default networks, CPU
    .venv/bin/python scripts/benchmark_throughput.py --networks light --rounds 3
    .venv/bin/python scripts/benchmark_throughput.py --device cuda:0 --amp both   # GPU: with and without AMP
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repo_paths import BUNDLE_ROOT, REPO_ROOT

import torch
from bundle_command import bundle_command

sys.path.insert(0, str(BUNDLE_ROOT))

from ignite.engine import Engine, Events  # noqa: E402
from monai.bundle import ConfigParser  # noqa: E402
from monai.engines.utils import IterationEvents  # noqa: E402

CONFIGS = BUNDLE_ROOT / "configs"
RESULTS = BUNDLE_ROOT / "docs" / "benchmark_throughput.json"
MODEL_CARD = BUNDLE_ROOT / "docs" / "README.md"
#: Model-card markers of the table, per device type (a GPU run keeps the CPU table, and the other way round).
MARKERS = {
    "cpu": ("<!-- throughput:start -->", "<!-- throughput:end -->"),
    "cuda": ("<!-- throughput-gpu:start -->", "<!-- throughput-gpu:end -->"),
}
TABLE_START, TABLE_END = MARKERS["cpu"]
#: Network presets: extra config files, input size and training batch size (as in the demo and train.json), and
#: the training iterations per side and round that fit a 2-core CPU.
NETWORKS = {
    "light": {"configs": ["demo.json"], "image_size": 256, "batch_size": 16, "iterations": 24},
    "default": {"configs": [], "image_size": 512, "batch_size": 8, "iterations": 3},
}
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
            row = {_PHASE_OF_STAMP[b]: _difference(stamps[b], stamps[a]) for a, b in pairs}
            if "optimizer" in row and "backward" not in row:  # an evaluator: MODEL_COMPLETED closes post-processing
                row["postprocessing"] = row.pop("optimizer")
            started = row.pop("iteration_started")
            row["augmentation"] = stamps["aug"]
            row["transfer_and_teacher"] = _difference(started, stamps["aug"])
            row["total"] = _difference(stamps["completed"], stamps["get_batch"])
            rows.append(row)
        return rows


_STAMP_ORDER = ("get_batch", "got_batch", "started", "forward", "loss", "backward", "model", "completed")
#: The phase that ends at each stamp.
_PHASE_OF_STAMP = {"got_batch": "data", "started": "iteration_started", "forward": "forward", "loss": "loss",
                   "backward": "backward", "model": "optimizer", "completed": "handlers"}  # fmt: skip


def _difference(end: tuple[float, float], start: tuple[float, float]) -> tuple[float, float]:
    return end[0] - start[0], end[1] - start[1]


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
        row = {name: _difference(b, a) for name, a, b in zip(names, stamps[:-1], stamps[1:], strict=True)}
        row["total"] = _difference(stamps[-1], stamps[0])
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
                out.append(_difference(self.clock(), start))
        return out

    def preprocessing_breakdown(self) -> dict[str, tuple[float, float]]:
        """Wall and CPU seconds per image of each preprocessing transform, run in this process."""
        totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for item in self.items:
            data = dict(item)
            for transform in self.preprocessing.transforms:
                start = self.clock()
                data = transform(data)
                wall, cpu = _difference(self.clock(), start)
                name = type(transform).__name__
                totals[name][0] += wall / len(self.items)
                totals[name][1] += cpu / len(self.items)
        return {name: (wall, cpu) for name, (wall, cpu) in totals.items()}


def summarise(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of per-round figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def phase_table(rows: list[dict[str, tuple[float, float]]], phases: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Mean wall milliseconds per iteration (means, so that the phases add up to the total) and cores used
    (CPU seconds over wall seconds) per phase."""
    table = {}
    for phase in (*phases, "total"):
        walls = [row[phase][0] for row in rows if phase in row]
        cpus = [row[phase][1] for row in rows if phase in row]
        if walls:
            wall = statistics.fmean(walls)
            table[phase] = {"ms": round(1000 * wall, 2), "cores": round(sum(cpus) / max(sum(walls), 1e-9), 2)}
    return table


def ensure_data(work: Path, big_images: int) -> tuple[Path, Path]:
    """Training phantoms (320 px) and a folder of clinical-size DICOM phantoms; generated once per work folder."""
    train, big = work / "data", work / "dicom_2500"
    generator = [sys.executable, str(REPO_ROOT / "scripts" / "generate_phantoms.py")]
    if not (train / "datalist.json").is_file():
        print(f"[throughput] generating training phantoms into {train}", flush=True)
        subprocess.run([*generator, "--out", str(train), "--num-images", "160", "--size", "320", "--seed", "99",
                        "--workers", "2"], check=True)  # fmt: skip
    if not (big / "datalist.json").is_file():
        print(f"[throughput] generating {big_images} DICOM phantoms of 2,500 px into {big}", flush=True)
        subprocess.run([*generator, "--out", str(big), "--num-images", str(big_images), "--size", "2500",
                        "--format", "dicom", "--seed", "7", "--workers", "2"], check=True)  # fmt: skip
    return train, big / "images"


def benchmark_network(name: str, args: argparse.Namespace, amp: bool, train_data: Path, dicoms: Path) -> dict:
    """All measurements for one network preset (and AMP setting)."""
    preset = NETWORKS[name]
    device = torch.device(args.device)
    clock = Clock(device)
    work = args.work_dir / f"{name}{'_amp' if amp else ''}"
    work.mkdir(parents=True, exist_ok=True)
    iterations = args.iterations or preset["iterations"]
    common = {
        "device": f"$torch.device('{args.device}')",
        "amp": amp,
        "image_size": preset["image_size"],
        "batch_size": preset["batch_size"],
        "num_workers": args.num_workers,
    }
    training = {
        **common,
        "dataset_dir": str(train_data),
        "val_interval": 10**6,  # throughput only: no validation
        "train#samples_per_epoch": iterations * preset["batch_size"],
        "ckpt_dir": str(work / "models"),
        "output_dir": str(work / "runs"),
    }
    print(f"[throughput] {name}: building stage 1 and stage 2 from the bundle configs", flush=True)
    stage1 = TrainingSide(["train.json", *preset["configs"]], training, clock, stage2=False)
    checkpoint = work / "models" / "model.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": stage1.trainer.network.state_dict()}, checkpoint)
    stage2 = TrainingSide(["train.json", "distill.json", *preset["configs"]],
                          {**training, "stage1_checkpoint": str(checkpoint), "ckpt_dir": str(work / "distill"),
                           "output_dir": str(work / "runs_distill")}, clock, stage2=True)  # fmt: skip
    bare = BareStep(stage1, amp, clock)
    inference_overrides = {
        **common,
        "dataset_dir": str(dicoms),
        "ckpt_path": str(checkpoint),
        "output_dir": str(work / "inference"),
        "write_overlays": False,
    }
    inference = InferenceSide(["inference.json", *preset["configs"]], inference_overrides, clock)
    rounds: dict[str, list[float]] = defaultdict(list)
    rows: dict[str, list] = defaultdict(list)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for index in range(args.rounds):
        bare_rows = bare.times(iterations)
        rounds["bare_step"].append(preset["batch_size"] / statistics.median(row["total"][0] for row in bare_rows))
        for key, side in (("stage1", stage1), ("stage2", stage2)):
            phases = side.epoch()
            rows[key] += phases
            rounds[key].append(preset["batch_size"] / statistics.median(row["total"][0] for row in phases))
        forward_times = inference.bare_forward(max(3, len(inference.items)))
        rounds["bare_forward"].append(inference.batch_size / statistics.median(t[0] for t in forward_times))
        rate, overall, phases = inference.run()
        rows["inference"] += phases
        rounds["inference"].append(rate)
        rounds["inference_whole_run"].append(overall)
        rows["bare_step"] += bare_rows
        print(f"[throughput] {name} round {index + 1}/{args.rounds}: bare step {rounds['bare_step'][-1]:.1f}, "
              f"stage 1 {rounds['stage1'][-1]:.1f}, stage 2 {rounds['stage2'][-1]:.1f} samples/s; bare forward "
              f"{rounds['bare_forward'][-1]:.2f}, DICOM->JSON {rate:.2f} images/s", flush=True)  # fmt: skip
    ratios = {
        "stage1_over_bare_step": [s / b for s, b in zip(rounds["stage1"], rounds["bare_step"], strict=True)],
        "stage2_step_over_stage1_step": [a / b for a, b in zip(rounds["stage1"], rounds["stage2"], strict=True)],
        "inference_over_bare_forward": [i / f for i, f in zip(rounds["inference"], rounds["bare_forward"],
                                                               strict=True)],  # fmt: skip
    }
    stage1_phases, stage2_phases = phase_table(rows["stage1"], PHASES), phase_table(rows["stage2"], PHASES)
    teacher_ms = stage2_phases["transfer_and_teacher"]["ms"] - stage1_phases["transfer_and_teacher"]["ms"]
    ema_ms = stage2_phases["handlers"]["ms"] - stage1_phases["handlers"]["ms"]
    preprocessing = inference.preprocessing_breakdown()
    rss = inference_peak_rss(preset, common, dicoms, work, checkpoint)
    return {
        "network": name,
        "amp": amp,
        "image_size": preset["image_size"],
        "batch_size": preset["batch_size"],
        "inference_batch_size": inference.batch_size,
        "iterations_per_round": iterations,
        "rounds": args.rounds,
        "samples_per_s": {key: summarise(values) for key, values in rounds.items()},
        "ratios": {key: summarise(values) for key, values in ratios.items()},
        "stage2_teacher_ms": round(teacher_ms, 2),
        "stage2_ema_ms": round(ema_ms, 2),
        "stage2_teacher_share_of_student_step": round(teacher_ms / stage1_phases["total"]["ms"], 3),
        "phases": {"stage1": stage1_phases, "stage2": stage2_phases,
                   "bare_step": phase_table(rows["bare_step"], ("forward", "loss", "backward", "optimizer")),
                   "inference": phase_table(rows["inference"], ("data", "forward", "postprocessing", "handlers"))},
                   # fmt: skip
        "inference_preprocessing": {k: {"ms": round(1000 * w, 2), "cores": round(c / max(w, 1e-9), 2)}
                                    for k, (w, c) in preprocessing.items()},  # fmt: skip
        "inference_images": len(inference.items),
        "inference_image_size": "2430 x 2500, 12-bit DICOM",
        "inference_command": rss,
        "gpu_peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None,
    }


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


def model_card_table(runs: list[dict]) -> str:
    """Markdown table of the ratios and their targets, one row per network (and AMP)."""
    lines = [
        "| network | bare step (samples/s) | stage 1 / bare step (target >= 0.85) | stage-2 step cost over stage 1 "
        "(target <= 1.40) | bare forward (images/s) | DICOM->JSON / bare forward (target >= 0.70) | "
        "inference peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        rates, ratios = run["samples_per_s"], run["ratios"]

        def fmt(entry: dict) -> str:
            return f"{entry['median']:.2f} ({entry['min']:.2f}-{entry['max']:.2f})"

        label = run["network"] + (" + AMP" if run["amp"] else "")
        lines.append(
            f"| {label} ({run['image_size']} px, batch {run['batch_size']}) | {fmt(rates['bare_step'])} | "
            f"{fmt(ratios['stage1_over_bare_step'])} | {fmt(ratios['stage2_step_over_stage1_step'])} | "
            f"{fmt(rates['bare_forward'])} | {fmt(ratios['inference_over_bare_forward'])} | "
            f"{run['inference_command']['peak_rss_mb']:.0f} MB |"
        )
    return "\n".join(lines)


def write_model_card_table(
    table: str, machine: str, path: Path = MODEL_CARD, markers: tuple[str, str] = MARKERS["cpu"]
) -> None:
    """Replace the text between ``markers`` in the model card with ``table``."""
    start, end = markers
    text = path.read_text()
    if start not in text or end not in text:
        raise RuntimeError(f"{path} has no {start} ... {end} markers for the throughput table")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    body = f"{start}\nMeasured on {machine} (median and range over rounds).\n\n{table}\n{end}"
    path.write_text(head + body + tail)


def machine_description(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=["light", "default"])
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["true", "false", "both"], default=None, help="default: both on CUDA")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median and range reported)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="training iterations per side and round (default: 24 light, 3 default network)")
    parser.add_argument("--dicom-images", type=int, default=12, help="clinical-size DICOM phantoms for inference")
    parser.add_argument("--num-workers", type=int, default=2, help="the bundle's num_workers")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "runs" / "benchmark_throughput")
    parser.add_argument("--output", type=Path, default=None,
                        help="results JSON (default: bundle/docs/benchmark_throughput[_gpu].json)")
    parser.add_argument("--model-card", type=Path, default=MODEL_CARD, help="model card whose table is rewritten")
    parser.add_argument("--no-model-card", action="store_true", help="do not rewrite the model card's table")
    args = parser.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    device_type = torch.device(args.device).type
    if args.output is None:
        args.output = RESULTS if device_type == "cpu" else RESULTS.with_name("benchmark_throughput_gpu.json")
    amp_choice = args.amp or ("both" if args.device.startswith("cuda") else "false")
    amps = {"true": [True], "false": [False], "both": [False, True]}[amp_choice]
    started = time.time()
    train_data, dicoms = ensure_data(args.work_dir, args.dicom_images)
    runs = [benchmark_network(name, args, amp, train_data, dicoms) for name in args.networks for amp in amps]
    machine = machine_description(args.device)
    result = {
        "machine": machine,
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "command": "python scripts/benchmark_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "minutes": round((time.time() - started) / 60, 1),
        "benchmark_process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "runs": runs,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    table = model_card_table(runs)
    print(table)
    if not args.no_model_card:
        write_model_card_table(table, machine, args.model_card, MARKERS["cuda" if device_type == "cuda" else "cpu"])
    print(f"[throughput] results in {args.output} ({result['minutes']} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
