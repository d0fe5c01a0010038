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

This file runs the rounds; its parts, one job each: ``throughput_settings.py`` (presets, paths, command line),
``throughput_timing.py`` (clock and phase stamps), ``throughput_sides.py`` (what is measured, built from the
bundle's configs), ``throughput_stats.py`` (medians, ratios, phase tables) and ``throughput_report.py`` (the
model card's table).

Examples::

    .venv/bin/python scripts/benchmark_throughput.py                        # light and default networks, CPU
    .venv/bin/python scripts/benchmark_throughput.py --networks light --rounds 3
    .venv/bin/python scripts/benchmark_throughput.py --device cuda:0 --amp both   # GPU: with and without AMP
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from repo_paths import REPO_ROOT

import torch
from throughput_report import MARKERS, machine_description, model_card_table, write_model_card_table
from throughput_settings import NETWORKS, parse_args
from throughput_sides import BareStep, InferenceSide, TrainingSide, inference_peak_rss
from throughput_stats import preprocessing_table, run_summary
from throughput_timing import Clock


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
        **run_summary(rounds, rows),
        "inference_preprocessing": preprocessing_table(preprocessing),
        "inference_images": len(inference.items),
        "inference_image_size": "2430 x 2500, 12-bit DICOM",
        "inference_command": rss,
        "gpu_peak_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__.split("\n\n")[0])
    started = time.time()
    train_data, dicoms = ensure_data(args.work_dir, args.dicom_images)
    runs = [benchmark_network(name, args, amp, train_data, dicoms) for name in args.networks for amp in args.amps]
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
        markers = MARKERS["cuda" if args.device_type == "cuda" else "cpu"]
        write_model_card_table(table, machine, args.model_card, markers)
    print(f"[throughput] results in {args.output} ({result['minutes']} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
