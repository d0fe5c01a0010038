"""Training throughput benchmark: stage 1 and stage 2 samples per second, with the bundle's own commands.

Generates a small phantom set, runs stage 1 (``train.json``) and stage 2 (``train.json`` + ``distill.json``) for a
few epochs without validation, and measures training samples per second from the per-iteration log lines of the
epochs after the first (the first epoch fills the cache and warms up). Results are merged into
``bundle/docs/benchmark_training.json``, keyed by device, network and AMP, so CPU and GPU runs sit side by side.

Examples::

    .venv/bin/python scripts/benchmark_training.py                       # light network, CPU or the first GPU
    .venv/bin/python scripts/benchmark_training.py --network default --samples-per-epoch 32 --epochs 2
    .venv/bin/python scripts/benchmark_training.py --network default --amp true   # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
from bundle_command import run_bundle

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
RESULTS = REPO / "bundle" / "docs" / "benchmark_training.json"
#: Network presets: extra config files and the input size.
NETWORKS = {
    "light": {"configs": ["demo.json"], "image_size": 256, "batch_size": 16},
    "default": {"configs": [], "image_size": 512, "batch_size": 8},
}
ITERATION_LINE = re.compile(r"^(\S+ \S+) - INFO - Epoch: (\d+)/\d+, Iter: (\d+)/(\d+) -- train_loss")


def device_name(device: str) -> str:
    """Human-readable name of the device the bundle will use."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def samples_per_second(log: str, batch_size: int) -> tuple[float, int]:
    """Training throughput from the StatsHandler iteration lines of every epoch after the first.

    Returns ``(samples per second, iterations measured)``; time runs from the last iteration of epoch 1 to the
    last logged iteration, so epoch boundaries (loader restart, checkpoint) are included, as in real training.
    """
    stamps = []
    for line in log.splitlines():
        match = ITERATION_LINE.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            stamps.append((int(match.group(2)), when))
    first_epoch = [when for epoch, when in stamps if epoch == 1]
    later = [when for epoch, when in stamps if epoch > 1]
    if not first_epoch or not later:
        raise RuntimeError("need at least two epochs of iteration log lines to measure throughput")
    seconds = (later[-1] - first_epoch[-1]).total_seconds()
    return len(later) * batch_size / seconds, len(later)


def merge_results(entry: dict, path: Path = RESULTS) -> list[dict]:
    """Add ``entry`` to the results file, replacing an earlier run of the same device, network and AMP."""
    runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    key = ("device", "network", "amp")
    runs = [run for run in runs if tuple(run[k] for k in key) != tuple(entry[k] for k in key)] + [entry]
    path.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", choices=sorted(NETWORKS), default="light")
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["true", "false"], default=None, help="default: true on CUDA")
    parser.add_argument("--epochs", type=int, default=3, help="per stage; the first is not measured")
    parser.add_argument("--samples-per-epoch", type=int, default=256)
    parser.add_argument("--num-images", type=int, default=160, help="phantoms generated (320 px)")
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "benchmark_training")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON (merged)")
    args = parser.parse_args(argv)
    amp = (args.amp or ("true" if args.device.startswith("cuda") else "false")) == "true"
    preset = NETWORKS[args.network]
    work = args.work_dir.resolve()
    data = work / "data"
    started = time.time()
    if not (data / "datalist.json").is_file():
        print(f"[benchmark] generating {args.num_images} phantoms into {data}", flush=True)
        subprocess.run(
            [
                sys.executable, str(REPO / "scripts" / "generate_phantoms.py"), "--out", str(data),
                "--num-images", str(args.num_images), "--size", "320", "--seed", "99", "--workers", "2",
            ],
            check=True,
        )  # fmt: skip
    common = {
        "dataset_dir": data,
        "device": f"$torch.device('{args.device}')",
        "amp": amp,
        "image_size": preset["image_size"],
        "batch_size": preset["batch_size"],
        "num_workers": args.num_workers,
        "val_interval": 10**6,  # no validation: training throughput only
        "train#trainer#max_epochs": args.epochs,
        "train#samples_per_epoch": args.samples_per_epoch,
    }
    entry: dict[str, object] = {
        "device": device_name(args.device),
        "network": args.network,
        "image_size": preset["image_size"],
        "batch_size": preset["batch_size"],
        "amp": amp,
        "epochs_measured": args.epochs - 1,
        "samples_per_epoch": args.samples_per_epoch,
    }
    for stage, configs, extra in [
        ("stage1", ["train.json"], {}),
        ("stage2", ["train.json", "distill.json"], {"stage1_checkpoint": work / "stage1" / "checkpoint_final.pt"}),
    ]:
        out = work / stage
        out.mkdir(parents=True, exist_ok=True)
        print(f"[benchmark {time.time() - started:5.0f}s] {stage}: {args.network} network on {args.device}", flush=True)
        overrides = {**common, **extra, "ckpt_dir": out, "output_dir": out / "runs"}
        log = run_bundle("training", [*configs, *preset["configs"]], overrides, out / "log.txt")
        rate, iterations = samples_per_second(log, preset["batch_size"])
        entry[f"{stage}_samples_per_s"] = round(rate, 2)
        entry[f"{stage}_iterations_measured"] = iterations
        print(f"[benchmark {time.time() - started:5.0f}s] {stage}: {rate:.2f} samples/s", flush=True)
    entry.update(
        torch=torch.__version__,
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d"),
        minutes=round((time.time() - started) / 60, 1),
    )
    runs = merge_results(entry, args.output)
    print(json.dumps(entry, indent=2))
    print(f"[benchmark] {len(runs)} run(s) in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
