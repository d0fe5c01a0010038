"""Time the synthetic CXR phantom: render only, and render + write (DICOM/PNG files and datalist), one process.

Example::

    python scripts/benchmark_phantom.py --num-images 100 --size 512

Prints images/s and writes ``bundle/docs/benchmark_phantom.json`` with the machine description.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from repo_paths import BUNDLE_ROOT

import numpy as np

from cxr_phantom import GENERATOR_VERSION, generate_dataset, plan_dataset, render_phantom


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-images", type=int, default=100, help="images per timing (default: 100)")
    parser.add_argument("--size", type=int, default=512, help="image height in pixels (default: 512)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument("--difficulty", type=float, default=0.5, help="fracture difficulty (default: 0.5)")
    parser.add_argument(
        "--out",
        type=Path,
        default=BUNDLE_ROOT / "docs" / "benchmark_phantom.json",
        help="result JSON (default: bundle/docs/benchmark_phantom.json)",
    )
    return parser.parse_args(argv)


def time_render(num_images: int, size: int, seed: int, difficulty: float) -> float:
    """Seconds to render ``num_images`` phantoms in memory, with the fracture counts of a default dataset plan."""
    plans = plan_dataset(num_images, seed)
    start = time.perf_counter()
    for plan in plans:
        render_phantom(np.random.default_rng([seed, plan.index]), size, difficulty, plan.num_fractures)
    return time.perf_counter() - start


def time_render_write(num_images: int, size: int, seed: int, difficulty: float) -> float:
    """Seconds for :func:`generate_dataset` (render, write mixed DICOM/PNG files and the datalist), one worker."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        generate_dataset(folder, num_images, size=size, seed=seed, difficulty=difficulty, workers=1, progress=False)
        return time.perf_counter() - start


def machine_info() -> dict:
    """Description of the machine and software the timing ran on."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run both timings, print images/s and write the JSON result."""
    args = parse_args(argv)
    render_phantom(np.random.default_rng(0), args.size)  # warm-up: imports and first-call overheads
    render_s = time_render(args.num_images, args.size, args.seed, args.difficulty)
    write_s = time_render_write(args.num_images, args.size, args.seed, args.difficulty)
    result = {
        "benchmark": "synthetic CXR fracture phantom generation",
        "generator_version": GENERATOR_VERSION,
        "size": args.size,
        "num_images": args.num_images,
        "workers": 1,
        "difficulty": args.difficulty,
        "image_format": "mixed",
        "render_seconds": round(render_s, 3),
        "render_images_per_s": round(args.num_images / render_s, 2),
        "render_write_seconds": round(write_s, 3),
        "render_write_images_per_s": round(args.num_images / write_s, 2),
        "machine": machine_info(),
    }
    print(f"render only:    {result['render_images_per_s']:.2f} images/s ({args.size} px, {args.num_images} images)")
    print(f"render + write: {result['render_write_images_per_s']:.2f} images/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
