"""Generate the synthetic CXR fracture phantom data set (images, datalist.json, README.txt).

Example::

    python scripts/generate_phantoms.py --out data/phantom --num-images 200 --size 512 --seed 0 --workers 2

The images are synthetic chest radiographs rendered by the ``cxr_phantom`` package (CC0, no patient data).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import repo_paths

from cxr_phantom import IMAGE_FORMATS, MIN_SIZE, generate_dataset


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults match :func:`cxr_phantom.generate_dataset`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder (datalist.json, images/, README.txt)")
    parser.add_argument("--num-images", type=int, default=100, help="number of images (default: 100)")
    parser.add_argument("--size", type=int, default=512, help=f"image height (longer side), >= {MIN_SIZE}")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument(
        "--prevalence", type=float, default=0.3, help="fraction of images with >= 1 fracture (default: 0.3)"
    )
    parser.add_argument(
        "--r-fraction", type=float, default=0.1, help="fraction of training positives that keep boxes (default: 0.1)"
    )
    parser.add_argument("--val-fraction", type=float, default=0.15, help="validation fraction (default: 0.15)")
    parser.add_argument("--test-fraction", type=float, default=0.15, help="test fraction (default: 0.15)")
    parser.add_argument(
        "--difficulty", type=float, default=0.5, help="0 = obvious .. 1 = nearly invisible fractures (default: 0.5)"
    )
    parser.add_argument(
        "--format",
        dest="image_format",
        choices=IMAGE_FORMATS,
        default="mixed",
        help="file format; mixed = about 2/3 DICOM, 1/3 PNG (default: mixed)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument(
        "--zoom", type=float, default=1.0, help="magnification >= 1: 1 = whole chest, 2 = a quarter (default: 1)"
    )
    return parser.parse_args(argv)


def subset_counts(datalist: dict) -> dict[str, int]:
    """Number of items per training subset (R, P, N) and per split."""
    counts = Counter(f"training/{item['subset']}" for item in datalist["training"])
    for split in ("training", "validation", "test"):
        counts[split] = len(datalist[split])
        counts[f"{split}/positive"] = sum(any(item["labels"].values()) for item in datalist[split])
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    """Generate the data set and print the datalist path and subset counts."""
    args = parse_args(argv)
    try:
        path = generate_dataset(
            args.out,
            args.num_images,
            size=args.size,
            seed=args.seed,
            prevalence=args.prevalence,
            r_fraction=args.r_fraction,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            difficulty=args.difficulty,
            image_format=args.image_format,
            workers=args.workers,
            zoom=args.zoom,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"datalist: {path}")
    for name, count in subset_counts(json.loads(path.read_text())).items():
        print(f"  {name}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
