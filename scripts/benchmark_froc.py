"""Benchmark ``scripts.evaluate.froc`` (O(n log n)) against a naive per-threshold FROC loop (O(T * n)).

Synthetic data: chest-X-ray-sized images (2048 x 2048 px), 20 candidate detections per image, about 30 % of the
images with 1-3 fracture boxes (20-120 px); most boxes get one higher-scoring detection inside them. Scores are
float32, as a model would output them.

Measured:

* ``froc_curve`` and ``froc_score`` on 10,000 images (best of ``--repeats``);
* the naive reference (for every distinct score: keep the scores ``>= t`` and recount TPs and FPs in every image)
  on small subsamples only, extrapolated to 10,000 images with the ``T * n ~ images^2`` model (also reported: the
  exponent fitted on the subsamples); the curves of both are checked to be identical on the subsamples;
* MONAI's ``compute_froc_curve_data`` (pooled scores, a vectorised pass per threshold, also O(T * n)) at full size,
  once, for reference (it also drops the lowest threshold, so only its time is compared);
* the scaling of ``froc_curve`` at 1k, 10k and 100k images.

Writes ``bundle/docs/benchmark_froc.json``. Usage: ``.venv/bin/python scripts/benchmark_froc.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from repo_paths import BUNDLE_ROOT

import numpy as np
from monai.metrics import compute_froc_curve_data

from scripts.evaluate.froc import DEFAULT_FP_RATES, froc_curve, froc_score, match_detections, sensitivity_at

IMAGE_SIZE = 2048
DETS_PER_IMAGE = 20
POSITIVE_FRACTION = 0.3
HIT_PROBABILITY = 0.7

Dataset = tuple[list[np.ndarray], list[np.ndarray]]


def make_dataset(num_images: int, seed: int = 0) -> Dataset:
    """Random detections ``(20, 3)`` per image and boxes ``(M_i, 4)`` per image (``M_i = 0`` for ~70 %)."""
    rng = np.random.default_rng(seed)
    num_boxes = np.where(rng.random(num_images) < POSITIVE_FRACTION, rng.integers(1, 4, num_images), 0)
    total = int(num_boxes.sum())
    size = rng.integers(20, 121, (total, 2))
    xy1 = rng.integers(0, IMAGE_SIZE - 120, (total, 2))
    flat_boxes = np.concatenate([xy1, xy1 + size], axis=1).astype(np.float64)
    box_image = np.repeat(np.arange(num_images), num_boxes)
    box_slot = np.arange(total) - np.repeat(np.cumsum(num_boxes) - num_boxes, num_boxes)  # index within the image

    dets = np.empty((num_images, DETS_PER_IMAGE, 3), dtype=np.float64)
    dets[..., :2] = rng.uniform(0, IMAGE_SIZE, (num_images, DETS_PER_IMAGE, 2))
    dets[..., 2] = rng.beta(2, 5, (num_images, DETS_PER_IMAGE)).astype(np.float32)
    hit = rng.random(total) < HIT_PROBABILITY  # put detection slot k of the image inside its k-th box
    frac = rng.random((total, 2))
    dets[box_image[hit], box_slot[hit], :2] = flat_boxes[hit, :2] + frac[hit] * size[hit]
    dets[box_image[hit], box_slot[hit], 2] = rng.beta(5, 2, int(hit.sum())).astype(np.float32)
    boxes = np.split(flat_boxes, np.cumsum(num_boxes)[:-1])
    return list(dets), boxes


def naive_froc_curve(detections: list[np.ndarray], boxes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Reference: for every distinct detection score ``t`` (and ``+inf``), recount TPs and FPs in every image."""
    thresholds = np.append(np.unique(np.concatenate([d[:, 2] for d in detections])), np.inf)
    num_targets = sum(len(b) for b in boxes)
    fps, sens = np.empty(thresholds.size), np.empty(thresholds.size)
    for k, t in enumerate(thresholds):
        fp_count = hit_count = 0
        for d, b in zip(detections, boxes, strict=True):
            kept = d[d[:, 2] >= t]
            x, y = kept[:, 0:1], kept[:, 1:2]
            inside = (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])
            fp_count += int((~inside.any(axis=1)).sum())
            hit_count += int(inside.any(axis=0).sum())
        fps[k], sens[k] = fp_count / len(detections), hit_count / num_targets
    return fps, sens


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Best wall-clock time of ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def check_same_curve(data: Dataset, naive_curve: tuple[np.ndarray, np.ndarray]) -> bool:
    """True when ``froc_curve`` on ``data`` and the naive loop's curve have the same points and FROC score."""
    fps, sens, _ = froc_curve(*data)
    n_fps, n_sens = naive_curve
    # the naive loop also has the scores of extra in-box points as thresholds: they repeat points, so compare sets
    same_points = np.array_equal(
        np.unique(np.column_stack([fps, sens]), axis=0), np.unique(np.column_stack([n_fps, n_sens]), axis=0)
    )
    rates = np.asarray(DEFAULT_FP_RATES)
    same_score = np.allclose(sensitivity_at(fps, sens, rates), np.interp(rates, n_fps[::-1], n_sens[::-1]))
    return bool(same_points and same_score)


def extrapolate(sizes: list[int], seconds: list[float], target: int) -> dict:
    """Quadratic (T * n ~ images^2) extrapolation from the largest measured size, plus the fitted exponent."""
    exponent = float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0]) if len(sizes) > 1 else float("nan")
    return {
        "measured_images": sizes,
        "measured_seconds": seconds,
        "fitted_exponent": exponent,
        "extrapolated_seconds": seconds[-1] * (target / sizes[-1]) ** 2,
        "model": f"seconds({target}) = seconds({sizes[-1]}) * ({target}/{sizes[-1]})^2",
    }


def time_monai(data: Dataset, repeats: int) -> float:
    """Time MONAI's ``compute_froc_curve_data`` on pooled per-image matches (matching not included)."""
    matches = [match_detections(d, b) for d, b in zip(*data, strict=True)]
    fp = np.concatenate([m[0] for m in matches])
    tp = np.concatenate([np.where(np.isfinite(m[1]), m[1], 0.0) for m in matches])  # MONAI: 0 = missed box
    return best_of(lambda: compute_froc_curve_data(fp, tp, tp.size, len(matches)), repeats)


def run_scaling(sizes: list[int], repeats: int) -> list[dict]:
    """Time ``froc_curve`` at several dataset sizes."""
    rows = []
    for n in sizes:
        data = make_dataset(n, seed=n)
        seconds = best_of(lambda data=data: froc_curve(*data), repeats if n < 100_000 else max(1, repeats - 1))
        n_dets = n * DETS_PER_IMAGE
        rows.append({"images": n, "detections": n_dets, "seconds": seconds, "us_per_detection": 1e6 * seconds / n_dets})
        print(f"  {n:>7} images ({n_dets:>8} detections): {seconds:8.3f} s  {1e6 * seconds / n_dets:6.2f} us/detection")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--out", type=Path, default=BUNDLE_ROOT / "docs" / "benchmark_froc.json")
    args = parser.parse_args()
    naive_sizes = [10, 20] if args.quick else [50, 100, 200, 400]
    scaling_sizes = [100, 1_000] if args.quick else [1_000, 10_000, 100_000]
    start_all = time.perf_counter()

    data = make_dataset(args.images)
    n_dets, n_boxes = args.images * DETS_PER_IMAGE, sum(len(b) for b in data[1])
    print(f"{args.images} images, {n_dets} detections, {n_boxes} boxes, {sum(len(b) > 0 for b in data[1])} positive")
    t_curve = best_of(lambda: froc_curve(*data), args.repeats)
    t_score = best_of(lambda: froc_score(*data), args.repeats)
    score = froc_score(*data)
    print(f"froc_curve: {t_curve:.3f} s  froc_score: {t_score:.3f} s  (best of {args.repeats}); FROC = {score:.4f}")

    print(f"naive per-threshold loop, on subsamples only (full size would take hours): {naive_sizes} images")
    naive_seconds, same = [], []
    for n in naive_sizes:
        sub = (data[0][:n], data[1][:n])
        start = time.perf_counter()
        naive_curve = naive_froc_curve(*sub)  # one run: it is the slow side, and its output is checked below
        naive_seconds.append(time.perf_counter() - start)
        same.append(check_same_curve(sub, naive_curve))
        print(f"  {n:>5} images: {naive_seconds[-1]:.3f} s, same curve as froc_curve: {same[-1]}")
    naive = extrapolate(naive_sizes, naive_seconds, args.images)
    ratio = naive["extrapolated_seconds"] / (t_curve + t_score)
    print(
        f"  EXTRAPOLATED (not measured) to {args.images} images: {naive['extrapolated_seconds']:.0f} s "
        f"[{naive['model']}; fitted exponent {naive['fitted_exponent']:.2f}]"
    )
    print(f"  ratio naive / (froc_curve + froc_score) = {ratio:.0f}x")

    monai_seconds = time_monai(data, 1)
    print(
        f"MONAI compute_froc_curve_data on all {args.images} images (measured, 1 run, curve building only, no "
        f"matching): {monai_seconds:.3f} s = {monai_seconds / t_curve:.0f}x froc_curve"
    )

    print("froc_curve scaling (best of repeats; 100k: one fewer repeat):")
    scaling = run_scaling(scaling_sizes, args.repeats)
    total = time.perf_counter() - start_all
    print(f"total benchmark time: {total:.1f} s")

    result = {
        "sizes": {
            "images": args.images,
            "detections_per_image": DETS_PER_IMAGE,
            "detections": n_dets,
            "boxes": n_boxes,
        },
        "froc_score_value": score,
        "seconds": {"froc_curve": t_curve, "froc_score": t_score, "froc_curve_plus_froc_score": t_curve + t_score},
        "repeats": args.repeats,
        "naive_reference": {**naive, "same_curve_on_subsamples": same, "note": "extrapolated, not measured"},
        "ratio_naive_over_froc_curve_plus_score": ratio,
        "monai_compute_froc_curve_data": {
            "seconds": monai_seconds,
            "ratio_over_froc_curve": monai_seconds / t_curve,
            "note": "measured once at full size; curve building from pooled matches only (matching not timed)",
        },
        "scaling_froc_curve": scaling,
        "total_benchmark_seconds": total,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
