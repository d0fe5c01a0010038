"""Hierarchical paired bootstrap for the federated benchmark: training seeds first, then test images.

The method benchmark's interval (:func:`ablation_stats.paired_interval`) resamples test images only and averages the
per-seed differences over the same seeds every time: it captures the test-set sampling error but not how much the
difference moves from one training seed to another. Here each resample first draws the training seeds with
replacement, then (as there) the test images with replacement; the statistic is the mean over the drawn seeds of the
per-seed difference on the drawn images. The image draws are those of :func:`ablation_stats.bootstrap_indices`, the
same for every arm and seed, so every difference stays paired.

Inputs are the per-seed metric arrays the method benchmark builds: ``(S, 1 + R)``, one row per training seed, column
0 on the full test set and columns ``1..R`` on the ``R`` image resamples.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hierarchical_interval", "seed_draws", "share_interval"]


def seed_draws(num_seeds: int, num_resamples: int, seed: int = 0) -> np.ndarray:
    """``(1 + num_resamples, num_seeds)`` seed indices drawn with replacement; row 0 is the identity (no resample)."""
    if num_seeds < 1:
        raise ValueError(f"need at least one training seed, got {num_seeds}.")
    rng = np.random.default_rng([seed, num_seeds])
    draws = rng.integers(0, num_seeds, size=(num_resamples, num_seeds))
    return np.concatenate([np.arange(num_seeds)[None], draws])


def _seed_mean(values: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """``(1 + R,)``: per resample ``r``, the mean over the drawn seeds ``seeds[r]`` of ``values[:, r]`` (NaN-aware)."""
    values = np.asarray(values, np.float64)
    if seeds.shape[0] != values.shape[1]:
        raise ValueError(f"{seeds.shape[0]} seed draws for {values.shape[1]} image resamples.")
    picked = values[seeds, np.arange(values.shape[1])[:, None]]  # (1 + R, S): drawn seeds' values per resample
    return np.nanmean(picked, axis=1)


def hierarchical_interval(
    values_a: np.ndarray, values_b: np.ndarray, seeds: np.ndarray, level: float = 0.95
) -> dict[str, float | list[float]]:
    """Difference ``a - b`` with its seeds-then-images bootstrap interval.

    Args:
        values_a, values_b: ``(S, 1 + R)`` metric per training seed on the full test set, then on ``R`` image
            resamples (the same resamples for both arms).
        seeds: ``(1 + R, S)`` seed draws from :func:`seed_draws` (row 0: every seed once).
        level: coverage of the percentile interval.

    Returns:
        ``{"difference", "lower", "upper", "per_seed"}``: mean over seeds of ``a - b`` on the full test set, the
        percentile interval over the resamples, and the per-seed differences on the full test set.
    """
    diff = np.asarray(values_a, np.float64) - np.asarray(values_b, np.float64)
    stat = _seed_mean(diff, seeds)
    tail = (1.0 - level) / 2 * 100
    lower, upper = np.nanpercentile(stat[1:], [tail, 100 - tail])
    return {
        "difference": float(stat[0]),
        "lower": float(lower),
        "upper": float(upper),
        "per_seed": [float(v) for v in diff[:, 0]],
    }


def share_interval(
    values_fed: np.ndarray, values_base: np.ndarray, values_central: np.ndarray, seeds: np.ndarray, level: float = 0.95
) -> dict[str, float]:
    """Share of the centralised gain kept: ``(fed - base) / (central - base)``, with its bootstrap interval.

    The ratio of the two seed-mean differences is formed on every resample (same seeds, same images), so the
    interval carries their correlation. Resamples whose denominator is not positive are left out and counted
    (``dropped``): the ratio is only read where ``central - base`` is resolved above 0.
    """
    gain = _seed_mean(np.asarray(values_fed, np.float64) - np.asarray(values_base, np.float64), seeds)
    ceiling = _seed_mean(np.asarray(values_central, np.float64) - np.asarray(values_base, np.float64), seeds)
    valid = ceiling[1:] > 0
    ratio = gain[1:][valid] / ceiling[1:][valid]
    tail = (1.0 - level) / 2 * 100
    lower, upper = np.nanpercentile(ratio, [tail, 100 - tail]) if ratio.size else (np.nan, np.nan)
    share = gain[0] / ceiling[0] if ceiling[0] > 0 else np.nan
    return {"share": float(share), "lower": float(lower), "upper": float(upper), "dropped": int((~valid).sum())}
