"""The throughput benchmark's settings: where things are, the network presets, and the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from repo_paths import BUNDLE_ROOT, REPO_ROOT

import torch

CONFIGS = BUNDLE_ROOT / "configs"
RESULTS = BUNDLE_ROOT / "docs" / "benchmark_throughput.json"
MODEL_CARD = BUNDLE_ROOT / "docs" / "README.md"
#: Network presets: extra config files, input size and training batch size (as in the demo and train.json), and
#: the training iterations per side and round that fit a 2-core CPU.
NETWORKS = {
    "light": {"configs": ["demo.json"], "image_size": 256, "batch_size": 16, "iterations": 24},
    "default": {"configs": [], "image_size": 512, "batch_size": 8, "iterations": 3},
}


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """The command line, with the defaults that depend on the device filled in: ``output`` (the CPU or GPU results
    file) and ``amps`` (the AMP settings to run: both on CUDA, off on a CPU, unless ``--amp`` says)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=["light", "default"])
    parser.add_argument("--device", default="cuda:0" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["true", "false", "both"], default=None, help="default: both on CUDA")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median and range reported)")
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="training iterations per side and round (default: 24 light, 3 default network)",
    )
    parser.add_argument("--dicom-images", type=int, default=12, help="clinical-size DICOM phantoms for inference")
    parser.add_argument("--num-workers", type=int, default=2, help="the bundle's num_workers")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "runs" / "benchmark_throughput")
    parser.add_argument(
        "--output", type=Path, default=None, help="results JSON (default: bundle/docs/benchmark_throughput[_gpu].json)"
    )
    parser.add_argument("--model-card", type=Path, default=MODEL_CARD, help="model card whose table is rewritten")
    parser.add_argument("--no-model-card", action="store_true", help="do not rewrite the model card's table")
    args = parser.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    args.device_type = torch.device(args.device).type
    if args.output is None:
        args.output = RESULTS if args.device_type == "cpu" else RESULTS.with_name("benchmark_throughput_gpu.json")
    amp_choice = args.amp or ("both" if args.device.startswith("cuda") else "false")
    args.amps = {"true": [True], "false": [False], "both": [False, True]}[amp_choice]
    return args
