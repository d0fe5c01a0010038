"""Split one datalist into site datalists with different label regimes (federated benchmark and tests).

A consortium is simulated from one phantom pool: every training image goes to exactly one site, following which
subsets each site holds. For example ``{"site-a": ("R", "N"), "site-b": ("P", "N"), "site-c": ("P", "N")}``: the
``R`` images (boxed positives) all go to site A, the ``P`` images (image-level positives) are dealt equally to B and
C, the ``N`` images (negatives) to all three. Validation images are dealt equally to every site (each site selects
and calibrates on its own). The test split stays out of every site datalist: it is the benchmark's held-out set,
evaluated centrally.

Each site datalist is written beside the pool's ``datalist.json`` (``<pool>/<site>.json``), so the image paths,
relative to that folder, stay valid and no image is copied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["split_sites", "write_site_datalists", "SUBSETS"]

SUBSETS = ("R", "P", "N")


def split_sites(
    datalist: Mapping[str, Any], holdings: Mapping[str, Sequence[str]], seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Deal the training and validation images of ``datalist`` to sites.

    Args:
        datalist: a datalist (``training`` items with ``subset`` R/P/N, ``validation``, ``test``).
        holdings: site name -> the training subsets it holds, e.g. ``("R", "N")``. Each subset present in the
            data is dealt in equal shares (at random, sizes differing by at most one) to the sites that hold it.
        seed: seed of the random dealing.

    Returns:
        site name -> datalist with that site's ``training`` and ``validation`` items, an empty ``test`` split, the
        same ``classes`` and a ``"site"`` record (holdings, seed, counts).

    Raises:
        ValueError: no sites, a subset name other than R/P/N, a subset present in the data that no site holds, or a
            subset held by a site that has no image of it.
    """
    if not holdings:
        raise ValueError("split_sites needs at least one site.")
    for site, subsets in holdings.items():
        unknown = sorted(set(subsets) - set(SUBSETS))
        if unknown:
            raise ValueError(f"site {site!r}: unknown subsets {unknown}, expected some of {list(SUBSETS)}.")
    training = list(datalist["training"])
    present = {item["subset"] for item in training}
    orphans = sorted(present - {s for subsets in holdings.values() for s in subsets})
    if orphans:
        raise ValueError(f"subsets {orphans} are in the training split but no site holds them: {dict(holdings)}.")
    rng = np.random.default_rng(seed)
    sites = list(holdings)
    shares: dict[str, dict[str, list[dict[str, Any]]]] = {site: {"training": [], "validation": []} for site in sites}
    for subset in SUBSETS:
        owners = [site for site in sites if subset in holdings[site]]
        items = [item for item in training if item["subset"] == subset]
        if owners and not items:
            raise ValueError(f"sites {owners} hold subset {subset!r}, but the training split has no {subset} image.")
        _deal(items, owners, rng, shares, "training")
    _deal(list(datalist.get("validation", [])), sites, rng, shares, "validation")
    result = {}
    for site in sites:
        site_list = {key: value for key, value in datalist.items() if key not in ("training", "validation", "test")}
        site_list.update(training=shares[site]["training"], validation=shares[site]["validation"], test=[])
        counts = {subset: sum(item["subset"] == subset for item in shares[site]["training"]) for subset in SUBSETS}
        counts["validation"] = len(shares[site]["validation"])
        site_list["site"] = {"name": site, "holds": list(holdings[site]), "seed": int(seed), "counts": counts}
        result[site] = site_list
    return result


def _deal(items: list[dict[str, Any]], owners: list[str], rng: np.random.Generator, shares: dict, split: str) -> None:
    """Shuffle ``items`` and deal them round-robin to ``owners``; each share keeps the pool's order."""
    if not owners:
        return
    order = rng.permutation(len(items))
    for rank, owner in enumerate(owners):
        shares[owner][split].extend(items[index] for index in sorted(order[rank :: len(owners)].tolist()))


def write_site_datalists(pool: Path, sites: Mapping[str, Mapping[str, Any]]) -> dict[str, Path]:
    """Write each site datalist as ``<pool>/<site>.json`` (beside the pool's ``datalist.json``); returns the paths."""
    paths = {}
    for site, content in sites.items():
        path = Path(pool) / f"{site}.json"
        path.write_text(json.dumps(content, indent=1) + "\n")
        paths[site] = path
    return paths
